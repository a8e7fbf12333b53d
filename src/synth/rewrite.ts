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
 */
import { open } from 'node:fs/promises';
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
  /** Bytes rewritten so far / to rewrite. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface RewriteResult {
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
  const fh = await open(path, 'r+');
  try {
    const header = new Uint8Array(layout.dataOffset);
    const { bytesRead } = await fh.read(header, 0, header.length, 0);
    const identical = bytesRead === header.length && file.fileSize === layout.fileSize && header.every((b, i) => b === layout.header[i]);
    const selected = plan.tensors.filter((t) => names.some((n) => t.name === n || t.name.endsWith(`.${n}`)));
    for (const n of names) {
      if (!selected.some((t) => t.name === n || t.name.endsWith(`.${n}`))) throw new InvalidOptionError('--rewrite', `no tensor of ${plan.preset.name} is named '${n}' (or ends in '.${n}')`);
    }
    const targets = selected.map((t) => {
      const have = file.tensor(t.name);
      if (!have || have.type !== t.type || have.byteSize !== t.byteSize || have.dims.join('x') !== t.dims.join('x')) {
        const got = have ? `type ${have.type}, dims ${have.dims.join('x')}` : 'missing';
        throw new InvalidOptionError('--rewrite', `${path} is not a 'synth --preset ${plan.preset.name} --type ${plan.type}' file: ${t.name} is ${got}, the plan has type ${t.type}, dims ${t.dims.join('x')}; synthesize it anew instead`);
      }
      return { t, offset: have.fileOffset };
    });
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
