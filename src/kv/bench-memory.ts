/**
 * KV memory benchmark without a model: peak KV bytes for N concurrent sequences, vTensor vs
 * paged vs contiguous, by really creating the sequences in the managers (real chunk mappings
 * for vTensor, real 16-token blocks of one pool for paged, real max-context slots for
 * contiguous). Lengths follow a lognormal prompt length
 * plus a lognormal output length, capped at maxContext, the shape of chat traffic.
 * Wired into `flexinfer bench --kv-sweep` by the CLI.
 *
 * Sequences grow as in decoding: ensure() for the prompt, then one ensure() per generated
 * token, so the critical-path mapping time is the one a real run would see without prepare();
 * commit() is timed too (the paged layout hashes every block that fills there, for its prefix
 * cache: part of its block-table upkeep).
 */
import type { KvShape } from './cache.js';
import type { KvManager } from './manager.js';
import { ContiguousKvManager } from './contiguous.js';
import { VTensorKvManager } from './vtensor-manager.js';
import { PagedKvManager } from './paged-manager.js';
import { kvPoolSize } from './pool-size.js';
import { chooseChunkBytes } from './chunk-size.js';
import { mulberry32 } from './random.js';
import { bytesPerToken } from './shape.js';

/** TinyLlama-1.1B: 22 layers, 4 KV heads * 64 = kvDim 256, context 4096 here. */
export const TINYLLAMA_KV_SHAPE: KvShape = { numLayers: 22, kvDim: 256, maxContext: 4096 };

/** Options of the KV memory sweep. */
export interface KvMemoryBenchOptions {
  shape?: KvShape;
  /** Concurrent sequence counts (default 1, 4, 16, 64). */
  concurrency?: number[];
  /** vTensor chunk size (default: what the engine picks for the pool, chooseChunkBytes). */
  chunkBytes?: number;
  /** Paged: elements per kv head (default kvDim). */
  headDim?: number;
  /** Median prompt / output lengths in tokens (defaults 512 / 256), lognormal sigma (default 1). */
  medianPromptTokens?: number;
  medianOutputTokens?: number;
  sigma?: number;
  seed?: number;
  /** Sequence lengths for N (default: sampleLengths). */
  lengths?: (n: number) => { prompt: number; total: number }[];
}

/** One (layout, N) measurement. */
export interface KvMemoryBenchRow {
  layout: string;
  numSequences: number;
  /** Sum of final sequence lengths. */
  totalTokens: number;
  /** KV bytes backing the N sequences at their peak (all alive, full length). */
  peakMappedBytes: number;
  /** Bytes the tokens themselves need. */
  liveBytes: number;
  fragmentationPercent: number;
  /** Wall time of all ensure() calls, milliseconds. */
  ensureMs: number;
  /** Wall time of all commit() calls, milliseconds. */
  commitMs: number;
  mapMsOnCriticalPath: number;
  /** vTensor rows: the chunk size used. */
  chunkBytes?: number;
}

/** A lognormal sample with the given median (Box-Muller on a seeded PRNG). */
function lognormal(rand: () => number, median: number, sigma: number): number {
  const u = Math.max(rand(), 1e-12);
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  return median * Math.exp(sigma * z);
}

/** Sequence lengths (prompt + output, capped at maxContext) for one N. */
export function sampleLengths(n: number, opts: KvMemoryBenchOptions, maxContext: number): { prompt: number; total: number }[] {
  const rand = mulberry32((opts.seed ?? 1234) + n);
  const sigma = opts.sigma ?? 1;
  return Array.from({ length: n }, () => {
    const prompt = Math.min(maxContext - 1, Math.max(1, Math.round(lognormal(rand, opts.medianPromptTokens ?? 512, sigma))));
    const output = Math.max(1, Math.round(lognormal(rand, opts.medianOutputTokens ?? 256, sigma)));
    return { prompt, total: Math.min(maxContext, prompt + output) };
  });
}

function measure(m: KvManager, lengths: { prompt: number; total: number }[]): KvMemoryBenchRow {
  const seqs = lengths.map(() => {
    const s = m.createSequence();
    if (s === null) throw new Error(`${m.layout}: could not create ${lengths.length} sequences`);
    return s;
  });
  let totalTokens = 0;
  let ensureMs = 0;
  let commitMs = 0;
  // Distinct token ids per sequence (a prefix cache must not find one sequence in another).
  const tokens = lengths.map((l, i) => Uint32Array.from({ length: l.total }, (_, p) => 1 + ((p * 31 + i * 7919) % 32000)));
  const grow = (i: number, n: number, what: string) => {
    const t0 = performance.now();
    if (!m.ensure(seqs[i]!, n)) throw new Error(`${m.layout}: pool short ${what}`);
    const t1 = performance.now();
    m.commit(seqs[i]!, tokens[i]!.subarray(0, n));
    commitMs += performance.now() - t1;
    ensureMs += t1 - t0;
  };
  // Prefill every prompt, then decode round-robin one token per sequence per step.
  lengths.forEach((l, i) => {
    grow(i, l.prompt, 'at prefill');
    totalTokens += l.total;
  });
  for (let step = 1; ; step++) {
    let active = 0;
    lengths.forEach((l, i) => {
      const n = l.prompt + step;
      if (n > l.total) return;
      active++;
      grow(i, n, 'while decoding');
    });
    if (active === 0) break;
  }
  const st = m.stats();
  for (const s of seqs) m.release(s);
  return {
    layout: m.layout,
    numSequences: lengths.length,
    totalTokens,
    peakMappedBytes: st.mappedBytes,
    liveBytes: st.liveBytes,
    fragmentationPercent: st.fragmentationPercent,
    ensureMs,
    commitMs,
    mapMsOnCriticalPath: st.mapMsOnCriticalPath,
  };
}

const hasWindows = (shape: KvShape) => shape.layerWindows?.some((w) => w > 0) === true;

/**
 * Runs the sweep: for every N, the three layouts over the same sampled lengths (and, for a
 * model with sliding-window layers, vTensor without window unmapping: layout 'vtensor-nowindow').
 * `lengths` replaces the sampled lengths (e.g. one conversation at the full context).
 */
export function runKvMemoryBench(opts: KvMemoryBenchOptions = {}): KvMemoryBenchRow[] {
  const shape = opts.shape ?? TINYLLAMA_KV_SHAPE;
  const rows: KvMemoryBenchRow[] = [];
  for (const n of opts.concurrency ?? [1, 4, 16, 64]) {
    const lengths = opts.lengths?.(n) ?? sampleLengths(n, opts, shape.maxContext);
    // Both pools can hold the worst case (every sequence at max context).
    const capacityBytes = n * shape.maxContext * bytesPerToken(shape);
    const c = new ContiguousKvManager({ shape, capacityBytes, maxSequences: n });
    rows.push(measure(c, lengths));
    c.dispose();
    // The chunk size the engine picks for this pool (kvPoolSize): 64 KiB, or lcm(64 KiB, token
    // row), doubled while the full pool would need more than half of vm.max_map_count
    // mappings (64 sequences of a 4096-token context get larger chunks).
    const chunkBytes = opts.chunkBytes ?? chooseChunkBytes(shape, capacityBytes);
    const vtensorCapacity = capacityBytes + n * 2 * shape.numLayers * chunkBytes;
    const v = new VTensorKvManager({ shape, capacityBytes: vtensorCapacity, chunkBytes });
    rows.push({ ...measure(v, lengths), chunkBytes });
    v.dispose();
    if (hasWindows(shape)) {
      // The same layout with sliding-window unmapping off: what the window alone saves.
      const full = new VTensorKvManager({ shape, capacityBytes: vtensorCapacity, chunkBytes, windowUnmap: false });
      rows.push({ ...measure(full, lengths), layout: 'vtensor-nowindow', chunkBytes });
      full.dispose();
    }
    const p = new PagedKvManager({ shape, capacityBytes: kvPoolSize(shape, n, 'paged').kvBytes, ...(opts.headDim ? { headDim: opts.headDim } : {}) });
    rows.push(measure(p, lengths));
    p.dispose();
  }
  return rows;
}

const MiB = 1 << 20;

/** The sweep as a plain-text table. */
export function formatKvMemoryBench(rows: KvMemoryBenchRow[]): string {
  const lines = ['layout       N   tokens   peak MiB   live MiB   frag %   ensure ms   commit ms'];
  for (const r of rows) {
    lines.push(
      `${r.layout.padEnd(10)} ${String(r.numSequences).padStart(3)} ${String(r.totalTokens).padStart(8)} ` +
        `${(r.peakMappedBytes / MiB).toFixed(1).padStart(10)} ${(r.liveBytes / MiB).toFixed(1).padStart(10)} ` +
        `${r.fragmentationPercent.toFixed(1).padStart(8)} ${r.ensureMs.toFixed(1).padStart(11)} ${r.commitMs.toFixed(1).padStart(11)}`,
    );
  }
  return lines.join('\n');
}
