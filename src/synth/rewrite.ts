/**
 * Rewrites some tensors of an existing synthetic file in place with the current generator:
 * when the generator changes for a few tensors (e.g. the MoE token embeddings, or the routers),
 * an 18.6 GB Qwen3-30B-A3B synth (an hour to write) is brought up to date in seconds.
 *
 * Each listed tensor must be in the file with the name, type and shape planSynth(preset, type)
 * gives it; it then gets exactly the bytes a fresh synth with `seed` writes (each tensor has its
 * own PRNG stream, seed + name). The result says whether the whole header also equals a fresh
 * synth's (`identical`: then the file equals a fresh synth whenever the listed tensors are all
 * the generator changed); a file written before a change of the quant mixes keeps its other
 * tensors' types and places.
 *
 * With `output`, `path` is left alone: the copy gets the plan's header (e.g. the
 * flexinfer.synth.router_skew label of a --router-skew preset, which changes the header), the
 * source's tensor data byte for byte, and the listed tensors regenerated. So a 6 GB Qwen3-MoE
 * synth gets skewed routers in the time of one file copy instead of a 20-minute synth.
 */
import { open, rename, rm } from 'node:fs/promises';
import { InvalidOptionError } from '../errors.js';
import { readGgufSync } from '../gguf/reader.js';
import { layoutGguf } from '../gguf/writer.js';
import { planSynth, type SynthType } from './plan.js';
import type { SynthPreset } from './presets.js';
import { synthTensorData } from './synth.js';

export interface RewriteOptions {
  /** The seed the file was written with (default 1, synth's default). */
  seed?: number;
  referenceQuant?: boolean;
  /**
   * Write a copy here instead of rewriting `path` in place: the plan's header, `path`'s tensor
   * data, the listed tensors regenerated (written under a temporary name, renamed at the end).
   * Every tensor of `path` must have the plan's name, type, shape and place.
   */
  output?: string;
  /** Bytes rewritten so far / to rewrite. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface RewriteResult {
  /** The file written: `path`, or `output` when given. */
  path: string;
  /** Names of the tensors rewritten, in file order. */
  tensors: string[];
  bytes: number;
  seconds: number;
  /** The file's header (metadata, tensor types and offsets) is the one a fresh synth writes. */
  identical: boolean;
}

/**
 * Regenerates the tensors of `path` named in `names` (a full name, or a suffix after a dot:
 * `ffn_gate_inp.weight` selects every layer's router). InvalidOptionError when the file is not
 * this preset and type's synth, or a name selects nothing.
 */
export async function rewriteSynthTensors(path: string, preset: SynthPreset | string, type: SynthType | string, names: string[], options: RewriteOptions = {}): Promise<RewriteResult> {
  const t0 = performance.now();
  const file = readGgufSync(path);
  const plan = planSynth(preset, type, file.alignment);
  const layout = layoutGguf(plan.metadata, plan.tensors, { alignment: plan.alignment });
  if (options.output !== undefined) return rewriteToCopy(path, options.output, plan, layout, file, names, options, t0);
  const fh = await open(path, 'r+');
  try {
    const header = new Uint8Array(layout.dataOffset);
    const { bytesRead } = await fh.read(header, 0, header.length, 0);
    const identical = bytesRead === header.length && file.fileSize === layout.fileSize && header.every((b, i) => b === layout.header[i]);
    const selected = selectTensors(plan, names);
    const targets = selected.map((t) => ({ t, offset: sameTensor(file, t, plan).fileOffset }));
    const total = selected.reduce((s, t) => s + t.byteSize, 0);
    let done = 0;
    for (const { t, offset } of targets) {
      const data = synthTensorData(t, options.seed ?? 1, undefined, options.referenceQuant);
      await fh.write(data, 0, data.length, offset);
      done += data.length;
      options.onProgress?.(done, total);
    }
    await fh.sync();
    return { path, tensors: selected.map((t) => t.name), bytes: total, seconds: (performance.now() - t0) / 1000, identical };
  } finally {
    await fh.close();
  }
}

type Plan = ReturnType<typeof planSynth>;
type PlanTensor = Plan['tensors'][number];
type File = ReturnType<typeof readGgufSync>;

/** The plan's tensors `names` selects (a full name or a suffix after a dot), in file order. */
function selectTensors(plan: Plan, names: string[]): PlanTensor[] {
  const selected = plan.tensors.filter((t) => names.some((n) => t.name === n || t.name.endsWith(`.${n}`)));
  for (const n of names) {
    if (!selected.some((t) => t.name === n || t.name.endsWith(`.${n}`))) throw new InvalidOptionError('--rewrite', `no tensor of ${plan.preset.name} is named '${n}' (or ends in '.${n}')`);
  }
  return selected;
}

/** `file`'s tensor named as the planned `t`, or InvalidOptionError when it differs in type or shape. */
function sameTensor(file: File, t: PlanTensor, plan: Plan): File['tensors'][number] {
  const have = file.tensor(t.name);
  if (!have || have.type !== t.type || have.byteSize !== t.byteSize || have.dims.join('x') !== t.dims.join('x')) {
    const got = have ? `type ${have.type}, dims ${have.dims.join('x')}` : 'missing';
    throw new InvalidOptionError('--rewrite', `${file.path} is not a 'synth --preset ${plan.preset.name} --type ${plan.type}' file: ${t.name} is ${got}, the plan has type ${t.type}, dims ${t.dims.join('x')}; synthesize it anew instead`);
  }
  return have;
}

const COPY_CHUNK = 64 * 1024 * 1024;

async function rewriteToCopy(path: string, output: string, plan: Plan, layout: ReturnType<typeof layoutGguf>, file: File, names: string[], options: RewriteOptions, t0: number): Promise<RewriteResult> {
  const selected = selectTensors(plan, names);
  // Every tensor in the plan's place within the data section: the data section copies as one run.
  if (file.tensors.length !== plan.tensors.length) throw new InvalidOptionError('--rewrite', `${path} has ${file.tensors.length} tensors, a 'synth --preset ${plan.preset.name} --type ${plan.type}' file has ${plan.tensors.length}; synthesize it anew instead`);
  plan.tensors.forEach((t, i) => {
    const have = sameTensor(file, t, plan);
    if (have.offset !== layout.offsets[i]) throw new InvalidOptionError('--rewrite', `${path}: ${t.name} is at data offset ${have.offset}, the plan puts it at ${layout.offsets[i]}; synthesize it anew instead`);
  });
  const dataBytes = layout.fileSize - layout.dataOffset;
  if (file.fileSize - file.dataOffset !== dataBytes) throw new InvalidOptionError('--rewrite', `${path} has ${file.fileSize - file.dataOffset} bytes of tensor data, the plan ${dataBytes}; synthesize it anew instead`);
  const regenerated = selected.reduce((s, t) => s + t.byteSize, 0);
  const total = dataBytes + regenerated;
  const tmp = `${output}.partial-${process.pid}`;
  const src = await open(path, 'r');
  let done = 0;
  try {
    const dst = await open(tmp, 'w');
    try {
      await dst.write(layout.header, 0, layout.header.length, 0);
      const buf = new Uint8Array(Math.min(COPY_CHUNK, Math.max(1, dataBytes)));
      for (let at = 0; at < dataBytes; ) {
        const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, dataBytes - at), file.dataOffset + at);
        if (bytesRead <= 0) throw new InvalidOptionError('--rewrite', `${path} ended at ${file.dataOffset + at} bytes while copying it`);
        await dst.write(buf, 0, bytesRead, layout.dataOffset + at);
        at += bytesRead;
        done += bytesRead;
        options.onProgress?.(done, total);
      }
      for (const t of selected) {
        const data = synthTensorData(t, options.seed ?? 1, undefined, options.referenceQuant);
        await dst.write(data, 0, data.length, layout.dataOffset + layout.offsets[plan.tensors.indexOf(t)]!);
        done += data.length;
        options.onProgress?.(done, total);
      }
      await dst.sync();
    } finally {
      await dst.close();
    }
    await rename(tmp, output);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    await src.close();
  }
  return { path: output, tensors: selected.map((t) => t.name), bytes: regenerated, seconds: (performance.now() - t0) / 1000, identical: true };
}
