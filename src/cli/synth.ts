/**
 * `flexinfer synth`: writes a random-weight GGUF with the shapes and tokenizer of a public model.
 *
 *   flexinfer synth --preset tinyllama-1.1b --type q4_0 -o tinyllama-synth.gguf
 */
import { parseArgs } from 'node:util';
import { FlexinferError, InvalidOptionError } from '../errors.js';
import { SYNTH_PRESETS, SYNTH_PRESET_NAMES } from '../synth/presets.js';
import { SYNTH_TYPES, synthPreset, synthType } from '../synth/plan.js';
import { synthesize } from '../synth/synth.js';
import { rewriteSynthTensors } from '../synth/rewrite.js';
import { createProgress } from './progress.js';

const HELP = `Usage: flexinfer synth --preset NAME --type TYPE -o FILE [options]

Writes a GGUF file with random weights in the exact shapes, metadata and tokenizer of a
public model (for measuring memory, streaming and speed without downloading it).

Options:
  --preset NAME   ${SYNTH_PRESET_NAMES.join(', ')}
  --type TYPE     a llama.cpp file type: ${SYNTH_TYPES.join(', ')}.
                  Each tensor gets the type llama-quantize gives it (its Q4_K_M, Q3_K_M,
                  IQ4_XS... mixes, fallbacks included: rows that are not whole 256-blocks
                  become Q5_0 / Q5_1 / Q8_0 / Q4_0 / IQ4_NL); q4_k: --pure Q4_K
  -o, --output F  file to write (written under a temporary name, renamed when complete)
  --seed N        PRNG seed (default 1; same seed, same bytes)
  --align N       tensor data alignment in bytes, a power of two (default 4096)
  --threads N     worker threads generating tensors (default: cores, at most 4)
  --layers N      keep N blocks of the preset (each with its real shapes): a smaller file
                  that behaves per layer as the full model does (general.name says so)
  --router-skew S MoE presets: skew the routers (expert popularity ~ Zipf-like, exponent S;
                  default 0 = random routers, near-uniform routing); results on such files
                  are synthetic skew, written as flexinfer.synth.router_skew
  --rewrite T,..  rewrite only these tensors of the existing FILE in place (a name, or a
                  suffix such as ffn_gate_inp.weight for every layer's router), after a
                  generator change; they must have this preset/type/--layers' types and
                  shapes in FILE, and --seed must be the one it was written with
  --from SRC      with --rewrite: leave SRC alone and write FILE as a copy of it with this
                  preset's header and the listed tensors regenerated; e.g. skewed routers
                  for an existing MoE synth in the time of a file copy:
                  --rewrite ffn_gate_inp.weight --router-skew 1 --from uniform.gguf -o skewed.gguf
  --ref-quant     K-quants and IQ4_XS with llama.cpp's reference scale search (bit-exact
                  with quantize_row_*_ref, 3-6x slower); default: search-free fit, same layout
  --json          print a JSON summary on stdout
  -h, --help      this help

Presets:
${SYNTH_PRESET_NAMES.map((n) => {
  const p = SYNTH_PRESETS[n]!;
  return `  ${n.padEnd(15)} ${p.arch}, dim ${p.dim}, ${p.nLayers} layers, ${p.nHeads}/${p.nKvHeads} heads, ffn ${p.ffn}, vocab ${p.nVocab}`;
}).join('\n')}
`;

function intOption(name: string, v: string | undefined, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v)) throw new InvalidOptionError(name, `'${v}' is not a non-negative integer`);
  const n = Number(v);
  if (n < min || n > max) throw new InvalidOptionError(name, `${n} is outside ${min}..${max}`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: 'string' },
      type: { type: 'string' },
      output: { type: 'string', short: 'o' },
      seed: { type: 'string' },
      align: { type: 'string' },
      threads: { type: 'string' },
      'ref-quant': { type: 'boolean', default: false },
      'router-skew': { type: 'string' },
      layers: { type: 'string' },
      rewrite: { type: 'string' },
      from: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values.preset) throw new InvalidOptionError('--preset', `required; one of ${SYNTH_PRESET_NAMES.join(', ')}`);
  if (!values.type) throw new InvalidOptionError('--type', `required; one of ${SYNTH_TYPES.join(', ')}`);
  if (!values.output) throw new InvalidOptionError('--output', 'required: the file to write (-o FILE)');
  let preset = synthPreset(values.preset);
  if (values['router-skew'] !== undefined) {
    const s = Number(values['router-skew']);
    if (!preset.moe) throw new InvalidOptionError('--router-skew', `preset '${preset.name}' has no experts`);
    if (!(Number.isFinite(s) && s >= 0 && s <= 4)) throw new InvalidOptionError('--router-skew', `must be a number in [0, 4], got '${values['router-skew']}'`);
    preset = { ...preset, moe: { ...preset.moe, routerSkew: s } };
  }
  if (values.layers !== undefined) {
    const n = intOption('--layers', values.layers, preset.nLayers, 1, preset.nLayers);
    if (n !== preset.nLayers) preset = { ...preset, nLayers: n, modelName: `${preset.modelName.replace(/ \(synthetic\)$/, '')} (synthetic, ${n} of ${preset.nLayers} layers)` };
  }
  const type = synthType(values.type);
  const seed = intOption('--seed', values.seed, 1, 0, 0xffffffff);
  const alignment = intOption('--align', values.align, 4096, 1, 1 << 30);
  if ((alignment & (alignment - 1)) !== 0) throw new InvalidOptionError('--align', `${alignment} is not a power of two`);
  const threads = values.threads === undefined ? undefined : intOption('--threads', values.threads, 1, 1, 64);

  const ac = new AbortController();
  const onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  let progress: ReturnType<typeof createProgress> | undefined;
  try {
    if (values.from !== undefined && values.rewrite === undefined) throw new InvalidOptionError('--from', 'only with --rewrite (the tensors to regenerate in the copy)');
    if (values.rewrite !== undefined) {
      const names = values.rewrite.split(',').map((n) => n.trim()).filter((n) => n.length > 0);
      if (names.length === 0) throw new InvalidOptionError('--rewrite', 'give one or more tensor names, comma-separated');
      // The skew label is in the header, which an in-place rewrite keeps: skewed routers under a
      // uniform file's header would be results nobody can tell from uniform ones.
      if (preset.moe?.routerSkew && values.from === undefined) throw new InvalidOptionError('--router-skew', 'with --rewrite it changes the header (the skew label): give --from SRC to write a copy');
      const r = await rewriteSynthTensors(values.from ?? values.output, preset, type, names, {
        seed,
        ...(values.from !== undefined ? { output: values.output } : {}),
        referenceQuant: values['ref-quant'],
        onProgress: (done, total) => {
          progress ??= createProgress(`rewrite ${preset.name} ${type}`, total);
          progress.update(done);
        },
      });
      progress?.done();
      if (values.json) process.stdout.write(`${JSON.stringify({ path: r.path, ...(values.from !== undefined ? { from: values.from } : {}), preset: preset.name, type, seed, ...(preset.moe?.routerSkew ? { routerSkew: preset.moe.routerSkew } : {}), rewritten: r.tensors, bytes: r.bytes, identical: r.identical, seconds: Number(r.seconds.toFixed(3)) })}\n`);
      else process.stdout.write(`${values.from !== undefined ? `copied ${values.from} to ${r.path}, regenerated` : 'rewrote'} ${r.tensors.length} tensors of ${r.path} (${(r.bytes / 2 ** 20).toFixed(1)} MiB) in ${r.seconds.toFixed(1)} s${r.identical ? '' : '; the rest of the file differs from a fresh synth (written by an older generator)'}\n`);
      return 0;
    }
    const result = await synthesize(values.output, preset, type, {
      seed,
      alignment,
      threads,
      referenceQuant: values['ref-quant'],
      signal: ac.signal,
      onProgress: (done, total) => {
        progress ??= createProgress(`synth ${preset.name} ${type}`, total);
        progress.update(done);
      },
    });
    progress?.done();
    const { plan } = result;
    const summary = {
      path: result.path,
      preset: preset.name,
      arch: preset.arch,
      layers: preset.nLayers,
      type,
      seed,
      alignment,
      referenceQuant: values['ref-quant'],
      ...(preset.moe?.routerSkew ? { routerSkew: preset.moe.routerSkew } : {}),
      tensors: plan.tensors.length,
      params: plan.numParams,
      bytes: plan.fileSize,
      seconds: Number(result.seconds.toFixed(3)),
    };
    if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else {
      process.stdout.write(
        `wrote ${result.path}: ${preset.name} ${type}, ${plan.tensors.length} tensors, ` +
          `${(plan.numParams / 1e6).toFixed(1)}M params, ${(plan.fileSize / 2 ** 20).toFixed(1)} MiB in ${result.seconds.toFixed(1)} s\n`,
      );
    }
    return 0;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e?.code === 'string' && /^E[A-Z]+$/.test(e.code) && e.syscall) {
      // ENOENT (no such directory), EACCES, ENOSPC...: the user's file system, not a bug
      throw new FlexinferError(`cannot write ${values.output}: ${e.message}`, { cause: err });
    }
    throw err;
  } finally {
    progress?.done();
    process.off('SIGINT', onSigint);
  }
}
