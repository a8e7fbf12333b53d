/**
 * Synthetic GGUF writer: random weights in the shapes, metadata and tokenizer of a public model
 * (see presets.ts, plan.ts). Tensors are generated one at a time inside writeGguf's data
 * callbacks, a bounded chunk of f32 values at a time, so memory stays at one tensor's
 * quantized bytes plus a 4 MiB scratch, whatever the model size.
 */
import { availableParallelism } from 'node:os';
import { quantizeInto } from '../gguf/quant.js';
import { writeGguf } from '../gguf/writer.js';
import { planSynth, type SynthPlan, type SynthTensor, type SynthType } from './plan.js';
import { Xoshiro128, fnv1a32 } from './rng.js';
import { SynthPool } from './pool.js';
import type { SynthPreset } from './presets.js';

export interface SynthOptions {
  /** PRNG seed (default 1): same seed, same bytes. */
  seed?: number;
  /** Tensor data alignment in the file (default 4096). */
  alignment?: number;
  /**
   * Quantize K-types with llama.cpp's reference scale search (bit-exact quantize_row_*_ref).
   * Default false: the search-free fit (QuantizeOptions.fast), ~3-6x faster, same layout;
   * random weights gain nothing from the search.
   */
  referenceQuant?: boolean;
  /**
   * Worker threads generating tensors (default: available cores, at most 4; 1 = generate on
   * this thread). The bytes are the same for any value.
   */
  threads?: number;
  /** File bytes written so far / total. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  signal?: AbortSignal;
}

export interface SynthResult {
  path: string;
  plan: SynthPlan;
  seconds: number;
}

/** f32 values generated per step (4 MiB of scratch). */
const CHUNK_ELEMENTS = 1 << 20;

/**
 * The bytes of one planned tensor for `seed`: values from the tensor's own PRNG stream
 * (seed, name), quantized row chunk by row chunk into the tensor's ggml type.
 */
export function synthTensorData(t: SynthTensor, seed: number, scratch?: Float32Array, referenceQuant = false): Uint8Array {
  const opts = { fast: !referenceQuant };
  const out = new Uint8Array(t.byteSize);
  if (t.init.kind === 'values') {
    quantizeInto(t.type, t.init.values, out, opts);
    return out;
  }
  const rowLen = t.dims[0]!;
  const rows = t.numElements / rowLen;
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / rowLen));
  const buf = scratch && scratch.length >= rowsPerChunk * rowLen ? scratch : new Float32Array(rowsPerChunk * rowLen);
  const rowBytes = t.byteSize / rows;
  const rng = new Xoshiro128(seed, fnv1a32(t.name));
  const rowScale = t.init.rowScale;
  for (let r = 0; r < rows; r += rowsPerChunk) {
    const n = Math.min(rowsPerChunk, rows - r) * rowLen;
    const x = buf.subarray(0, n);
    rng.fillNormal(x, t.init.mean, t.init.std);
    if (rowScale) for (let i = 0; i < n; i++) x[i] = x[i]! * rowScale[(r + Math.floor(i / rowLen)) % rowScale.length]!;
    quantizeInto(t.type, x, out.subarray(r * rowBytes), opts);
  }
  return out;
}

/** Writes a synthetic model to `path` (atomically: a temporary name renamed at the end). */
export async function synthesize(
  path: string,
  preset: SynthPreset | string,
  type: SynthType | string,
  options: SynthOptions = {},
): Promise<SynthResult> {
  const seed = options.seed ?? 1;
  const plan = planSynth(preset, type, options.alignment ?? 4096);
  const threads = options.threads ?? Math.min(4, availableParallelism());
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  const t0 = performance.now();
  let data: (i: number) => Uint8Array | Promise<Uint8Array>;
  let pool: SynthPool | undefined;
  if (threads === 1) {
    const scratch = new Float32Array(CHUNK_ELEMENTS + 65536);
    data = (i) => synthTensorData(plan.tensors[i]!, seed, scratch, options.referenceQuant);
  } else {
    // Keep `threads` tensors ahead of the writer in flight; the writer consumes them in order.
    const p = (pool = new SynthPool(threads));
    const jobs = new Map<number, Promise<Uint8Array>>();
    let submitted = 0;
    data = (i) => {
      while (submitted < plan.tensors.length && submitted <= i + threads) {
        const job = p.generate(plan.tensors[submitted]!, seed, options.referenceQuant === true);
        job.catch(() => {}); // observed when awaited; avoid unhandled rejections on abort
        jobs.set(submitted++, job);
      }
      const job = jobs.get(i)!;
      jobs.delete(i);
      return job;
    };
  }
  try {
    await writeGguf(
      path,
      plan.metadata,
      plan.tensors.map((t, i) => ({ name: t.name, type: t.type, dims: t.dims, data: () => data(i) })),
      { alignment: plan.alignment, onProgress: options.onProgress, signal: options.signal },
    );
  } finally {
    await pool?.close();
  }
  return { path, plan, seconds: (performance.now() - t0) / 1000 };
}
