/**
 * The engine's memory: the weight store and the KV layout under one budget, either as a
 * static split (the KV pool reserved for `parallel` full-context sequences, the rest planned
 * for the weights) or as the elastic pool (engine/memory-pool.ts: a KV floor, and one pool
 * that resident weights and KV chunks share while the model runs).
 *
 * Elastic is the default with a budget and the vTensor layout; the contiguous layout
 * preallocates its KV, so it stays static.
 */
import type { GgufFile } from '../gguf/reader.js';
import type { ModelConfig } from '../models/config.js';
import { Transformer } from '../models/transformer.js';
import { createKvManager, type KvManager, type KvShape } from '../kv/index.js';
import { kvFloorBytes, kvPoolSize } from '../kv/pool-size.js';
import type { VTensorKvManager } from '../kv/vtensor-manager.js';
import { appliedReserve, createWeightStore, readPathFromEnv } from '../weights/create.js';
import { moeShape } from '../weights/create-moe.js';
import { parseMemoryBudget } from '../weights/budget.js';
import { readCacheCap, readCachePolicy } from '../weights/read-cache.js';
import type { ElasticWeightStore } from '../weights/elastic-store.js';
import type { Plan } from '../weights/plan.js';
import type { WeightStore } from '../weights/store.js';
import { InsufficientMemoryError } from '../errors.js';
import { MemoryPool, type StepMeasure } from './memory-pool.js';
import type { WorkerInit } from './protocol.js';

const MiB = 1024 * 1024;

/** Bytes of the process's own memory per GGUF header byte beyond the first MiB (runtimeReserveFor). */
export const HEADER_RESERVE_FACTOR = 8;

/**
 * Bytes of a budget kept from the weights for the process's own memory: 8 MiB plus 1 MiB per
 * sequence served at once (24 MiB at --parallel 16), plus 8 bytes per byte of the GGUF header
 * beyond its first MiB (`headerBytes`: the file's dataOffset).
 *
 * Measured (tinyllama-1.1b Q4_0, budget 50% = 295.6 MiB, --parallel 16 --ctx-size 4096, the
 * HTTP server with 1..16 streams of 128 + 32 tokens; /proc/self/smaps and the cgroup's
 * memory.stat every 50 ms): besides the pool's weights, ring, KV chunks and scratch, the
 * process holds 48 MiB of anonymous memory at 1 stream (the V8 heaps of the main thread and
 * the engine worker, 16-25 and 12-14 MiB; malloc arenas; thread stacks) and 53 MiB at 16
 * streams, plus 5 MiB of brk heap, ~4.5 MiB of shared memory and ~7 MiB the kernel charges to
 * the cgroup (page tables, sockets): ~70 MiB at 16 streams. With the pool filling the budget
 * and reads on O_DIRECT (no page cache left to reclaim), that is more than the 64 MiB a cgroup
 * of budget + 64 MiB leaves, and the run was OOM-killed in one of two sweeps. The reserve keeps
 * the process ~18 MiB under that limit at 16 streams (elastic.test.ts serves 16 streams in
 * such a cgroup). It lives in the part of the KV floor that KV does not use (MemoryPool): a
 * server with few streams keeps the whole pool for weights.
 *
 * The header term: the main thread and the engine worker each parse the whole header into JS
 * objects and build a tokenizer from it (token strings, a token -> id Map, scores; merges for
 * BPE), so the process's own memory grows with the vocabulary. Measured with `run` (1701-token
 * prompt, -c 2048; /proc/PID/smaps and both threads' V8 heap statistics every 40-100 ms):
 * Gemma 3 1B (262,144 tokens, 6.23 MiB header) at 22% held 44.5 MiB more than tinyllama
 * (32,000 tokens, 0.70 MiB header) at 50%: V8 heaps 82.8 vs 42.7 MiB (main thread 43.5 vs
 * 23.4, worker 39.3 vs 19.3), brk heap 8.4 vs 3.8 MiB: 8.0 bytes per header byte. One isolate
 * parsing a header and building its tokenizer grows by 5.9-6.5 bytes per header byte for
 * Gemma 3 (SPM), Qwen 2.5 (151,936 tokens, 151,387 merges, 5.66 MiB) and Llama 3 (128,256
 * tokens, 280,147 merges, 7.46 MiB) alike: header bytes predict it across tokenizer types,
 * the vocabulary size does not (Qwen 2.5's 152k tokens cost what Gemma 3's 262k do). The
 * first MiB is inside the 8 MiB above (measured with tinyllama's header: a 32k vocabulary
 * keeps its reserve). Gemma 3 1B at 22% in a budget + 64 MiB cgroup, its KV floor counted by
 * sliding windows (kv/pool-size.ts): OOM-killed with the 9 MiB reserve (the unused floor that
 * had hidden the difference was gone); with this one (50.9 MiB, 25.9 of it above the weights'
 * minimum and applied) it peaks at 215 MiB of rss + shmem + kernel under the 233 MiB limit.
 */
export function runtimeReserveFor(parallel: number, headerBytes = 0): number {
  return 8 * MiB + Math.max(1, parallel) * MiB + HEADER_RESERVE_FACTOR * Math.max(0, headerBytes - MiB);
}

/** The engine's weights and KV, and the pool between them (elastic) or none (static). */
export interface EngineMemory {
  readonly store: WeightStore & { dispose(): void };
  readonly kv: KvManager;
  /** The plan the weights follow now (changes with the level when elastic). */
  plan(): Plan;
  /** Called before every scheduler step with the last step's measurements. */
  betweenPasses(m?: StepMeasure): void;
  /** While the engine is idle; true when it wants to be called again soon. */
  idle(): boolean;
  /** The split now (and over time, with history), for stats(), run --json and /metrics. */
  stats(history?: boolean): Record<string, unknown>;
  dispose(): void;
}

/**
 * The logits buffer's room for rows beyond one per sequence: evaluate with allLogits is
 * chunked by the rows it holds (64 at most). Large vocabularies get fewer rows: 64 rows of
 * Gemma 3's 262,144 logits were 64 MiB of scratch, a third of a 25% budget of its 1B model;
 * 16 MiB holds 64 rows of a 32k vocabulary, 32 of Llama 3's, 16 of Gemma 3's.
 */
export const LOGITS_EXTRA_BYTES = 16 * MiB;

/**
 * Logit rows of a forward pass: one per sequence, and up to 64 (as LOGITS_EXTRA_BYTES holds
 * for this vocabulary) for evaluate with allLogits, which is chunked by it; at most a batch.
 */
export function maxLogitRowsFor(parallel: number, maxBatchRows: number, vocabSize: number): number {
  const extra = Math.min(64, Math.floor(LOGITS_EXTRA_BYTES / (Math.max(1, vocabSize) * 4)));
  return Math.min(maxBatchRows, Math.max(parallel, extra, 1));
}

/** Scratch memory of the engine's forward pass for `parallel` sequences, as the worker allocates it. */
export function engineScratchBytes(config: ModelConfig, parallel: number, maxBatchRows: number): number {
  return Transformer.scratchBytes(config, maxBatchRows, maxLogitRowsFor(parallel, maxBatchRows, config.vocabSize));
}

/** The KV cache's shape of a model at `contextSize` tokens (sliding windows of local layers included). */
export function kvShapeFor(config: ModelConfig, contextSize: number): KvShape {
  return {
    numLayers: config.numLayers,
    kvDim: config.numKvHeads * config.headDim,
    maxContext: contextSize,
    ...(config.layerWindows?.some((w) => w > 0) ? { layerWindows: config.layerWindows } : {}),
  };
}

/** Loads the weights and creates the KV layout under init's budget (see the file comment). */
export async function createEngineMemory(file: GgufFile, config: ModelConfig, init: WorkerInit, onProgress: (done: number, total: number) => void): Promise<EngineMemory> {
  const shape = kvShapeFor(config, init.contextSize);
  const { kvBytes, chunkBytes } = kvPoolSize(shape, init.parallel, init.kv, init.maxBatchRows);
  const scratchBytes = engineScratchBytes(config, init.parallel, init.maxBatchRows);
  const budget = init.memoryBudget !== null ? parseMemoryBudget(init.memoryBudget, file.fileSize, 'memoryBudget') : Infinity;
  const runtimeReserve = runtimeReserveFor(init.parallel, file.dataOffset);
  // Mixture-of-Experts files keep a static split: their expert cache is the policy that moves
  // weights (weights/create-moe.ts), and the elastic ladder knows only dense tensors.
  const elastic = budget !== Infinity && init.kv === 'vtensor' && init.memoryPool !== 'static' && moeShape(file) === undefined;
  const floorBytes = elastic ? (init.kvFloor !== null ? parseMemoryBudget(init.kvFloor, file.fileSize, 'kvFloor') : kvFloorBytes(shape, chunkBytes, init.maxBatchRows)) : 0;
  // Buffered reads need page cache unless the run is forced onto O_DIRECT (FLEXINFER_READ_PATH);
  // how much follows the load under a memory limit (read-cache.ts readCacheAtLoad).
  // It never keeps the weights below the static split's (readCacheCap).
  const readCache = elastic ? { ...readCachePolicy(file.path, file.fileSize, budget, readPathFromEnv()?.direct !== true), maxBytes: readCacheCap(kvBytes, floorBytes, runtimeReserve) } : undefined;
  const explain = { budget, shape, parallel: init.parallel, scratchBytes, kvBytes: elastic ? floorBytes : kvBytes, elastic, kvFloorGiven: init.kvFloor !== null };

  let created;
  try {
    created = await createWeightStore(file, {
      ...(budget !== Infinity ? { memoryBudget: budget } : {}),
      kvBytes: elastic ? floorBytes : kvBytes,
      scratchBytes,
      elastic,
      // Elastic: the reserve lives in the unused floor first, the weights give up only what
      // exceeds it; the read cache does not (the unused floor is already page cache). Static:
      // its KV reservation fills up at full load, so the weights give up the whole reserve.
      runtimeReserveBytes: elastic ? Math.max(0, runtimeReserve - floorBytes) : budget !== Infinity ? runtimeReserve : 0,
      ...(readCache ? { readCache } : {}),
      ...(init.experts?.cache ? { expertCache: init.experts.cache } : {}),
      ...(init.experts?.policy ? { expertPolicy: init.experts.policy } : {}),
      ...(init.experts?.prefetch !== undefined ? { expertPrefetch: init.experts.prefetch } : {}),
      ...(init.experts?.lookahead !== undefined ? { expertLookahead: init.experts.lookahead } : {}),
      expertRows: init.parallel,
      onProgress,
    });
  } catch (err) {
    throw err instanceof InsufficientMemoryError ? explainShortBudget(err, explain) : err;
  }
  const { store, plan } = created;
  if (!elastic) {
    const kv = createKvManager({ layout: init.kv, shape, capacityBytes: kvBytes, ...(init.kv === 'contiguous' ? { maxSequences: init.parallel } : init.kv === 'paged' ? { headDim: config.headDim } : { chunkBytes, maxRowsPerPass: init.maxBatchRows }) });
    return staticMemory(store, kv, plan, { budget, scratchBytes, kvBytes });
  }
  const es = store as ElasticWeightStore;
  const poolBytes = budget - scratchBytes - floorBytes;
  // The reserve sits in the unused floor when it can, but KV filling the floor must be able to
  // push it into the pool (demoting weights): only what the pool holds above the weights'
  // minimum applies (none at the minimum budget, where KV keeps the whole floor).
  const runtimeBytes = appliedReserve(poolBytes, es.bytesAt, runtimeReserve);
  // The read cache, as far as the pool holds it above the weights at the ladder's cacheFloor
  // with the reserve.
  const readCacheBytes = appliedReserve(poolBytes - runtimeBytes, es.bytesAt.slice(es.ladder.cacheFloor), created.readCacheBytes ?? 0);
  // Address space for KV: what parallel full-context sequences need, or what the pool can give.
  const maxKvChunks = Math.max(1, Math.floor(Math.min(kvBytes, floorBytes + poolBytes - runtimeBytes - es.bytesAt[es.minLevel]!) / chunkBytes));
  const pool = new MemoryPool({ budget, scratchBytes, runtimeBytes, readCacheBytes, floorBytes, chunkBytes, slotBytes: chunkBytes * 2 * shape.numLayers, maxKvChunks });
  pool.attachWeights(es);
  const kv = createKvManager({ layout: 'vtensor', shape, capacityBytes: maxKvChunks * chunkBytes, chunkBytes, grant: pool, maxRowsPerPass: init.maxBatchRows }) as VTensorKvManager;
  pool.attachKv({
    get numUsedChunks() {
      return kv.numUsedChunks;
    },
    get numCachedChunks() {
      return (kv.stats().cachedBytes ?? 0) / chunkBytes;
    },
    evictCachedChunks: (n: number) => kv.evictCachedChunks(n),
  });
  pool.sampleWeights = () => {
    const m = es.memory();
    return { residentBytes: m.residentBytes, ringBytes: m.ringBytes, loadingBytes: m.loadingBytes, streamedBytesPerPass: es.plan.streamedBytesPerToken };
  };
  pool.sampleKv = () => {
    const s = kv.stats();
    return { liveBytes: s.activeBytes, cachedBytes: s.cachedBytes ?? 0 };
  };
  return {
    store: es,
    kv,
    plan: () => es.plan,
    betweenPasses: (m) => pool.betweenPasses(m),
    idle: () => pool.idle(),
    stats: (history = false) => ({
      mode: 'elastic',
      budget,
      scratchBytes,
      runtimeBytes,
      readCacheBytes,
      floorBytes,
      poolBytes,
      level: es.level,
      targetLevel: es.targetLevel,
      minLevel: es.minLevel,
      maxLevel: es.maxLevel,
      headroomBytes: pool.headroomBytes,
      now: pool.snapshot(),
      events: { ...pool.events, ...prefixed('weights', es.stats().events) },
      ...(history ? { history: pool.history() } : {}),
    }),
    dispose: () => {
      kv.dispose();
      es.dispose();
    },
  };
}

/** A static split: KV reserved up front, the weights' plan fixed at load. */
function staticMemory(store: WeightStore & { dispose(): void }, kv: KvManager, plan: Plan, s: { budget: number; scratchBytes: number; kvBytes: number }): EngineMemory {
  const t0 = performance.now();
  let steps = 0;
  const sample = () => {
    const k = kv.stats();
    return {
      t: performance.now() - t0,
      step: steps,
      level: -1,
      residentBytes: plan.split.weights,
      ringBytes: plan.split.buffers,
      loadingBytes: 0,
      kvLiveBytes: k.activeBytes,
      kvCachedBytes: k.cachedBytes ?? 0,
      otherBytes: 0,
      // KV reserved and not holding anything is what the static split leaves unused.
      freeBytes: Number.isFinite(s.budget) ? s.budget - s.scratchBytes - plan.split.weights - plan.split.buffers - k.activeBytes - (k.cachedBytes ?? 0) : 0,
      streamedBytesPerPass: plan.streamedBytesPerToken,
    };
  };
  const history: ReturnType<typeof sample>[] = [];
  let last = -Infinity;
  return {
    store,
    kv,
    plan: () => plan,
    betweenPasses: () => {
      steps++;
      if (performance.now() - last >= 100 && history.length < 2048) {
        last = performance.now();
        history.push(sample());
      }
    },
    idle: () => false,
    stats: (withHistory = false) => ({
      mode: 'static',
      budget: Number.isFinite(s.budget) ? s.budget : null,
      scratchBytes: s.scratchBytes,
      kvBytes: s.kvBytes,
      now: sample(),
      ...(withHistory ? { history } : {}),
    }),
    dispose: () => {
      kv.dispose();
      store.dispose();
    },
  };
}

function prefixed(prefix: string, o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [`${prefix}${k[0]!.toUpperCase()}${k.slice(1)}`, v]));
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/**
 * The planner's InsufficientMemoryError, explained in the caller's language: what the budget
 * must hold (weights' minimum, KV, scratch) and which options change it. The message names the
 * API's options; cliMessage the command line's flags.
 */
export function explainShortBudget(
  err: InsufficientMemoryError,
  c: { budget: number; shape: KvShape; parallel: number; scratchBytes: number; kvBytes: number; elastic: boolean; kvFloorGiven: boolean },
): InsufficientMemoryError {
  const weights = Math.max(0, err.minimum - c.kvBytes - c.scratchBytes);
  const kvWhat = c.elastic
    ? `the KV floor (${mib(c.kvBytes)}: ${c.kvFloorGiven ? 'as set' : `one sequence of ${c.shape.maxContext} tokens`})`
    : `the KV cache (${mib(c.kvBytes)}: ${c.parallel} sequence${c.parallel === 1 ? '' : 's'} of ${c.shape.maxContext} tokens)`;
  const needs = `it must hold the weights' minimum (norms, the output matrix or its slice buffers, and stream buffers: ${mib(weights)}), ${kvWhat} and scratch (${mib(c.scratchBytes)})`;
  const say = (n: { budget: string; ctx: string; parallel: string; floor: string }) => {
    const lower = c.elastic
      ? c.kvFloorGiven
        ? `lower ${n.ctx} or ${n.floor}`
        : `lower ${n.ctx} (the KV floor holds one full-context sequence) or set a smaller ${n.floor}`
      : `lower ${n.ctx} or ${n.parallel}`;
    return `${needs}; raise ${n.budget} to at least ${mib(err.minimum)}, or ${lower}`;
  };
  return new InsufficientMemoryError(
    err.budget,
    err.minimum,
    say({ budget: 'memoryBudget', ctx: 'contextSize', parallel: 'parallel', floor: 'kvFloor' }),
    say({ budget: '--memory-budget', ctx: '--ctx-size', parallel: '--parallel', floor: '--kv-floor' }),
  );
}
