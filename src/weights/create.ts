/**
 * Building a weight store from a file and a memory budget: what the engine calls.
 *
 *   const { store, plan } = await createWeightStore(path, { memoryBudget: '2GiB', kvBytes, scratchBytes });
 *
 * Without a budget every tensor is resident (ResidentWeightStore); with one, planResidency
 * splits the budget and a StreamingWeightStore streams what does not fit. Mixture-of-Experts
 * files go to create-moe.ts: the same for the dense tensors, an expert cache for the experts.
 */
import { switchFromEnv } from './env-switch.js';
import { InsufficientMemoryError, InvalidOptionError } from '../errors.js';
import { readGgufSync, type GgufFile } from '../gguf/reader.js';
import { parseMemoryBudget } from './budget.js';
import { calibrateStorage, calibrationIsStale, readCachedCalibration, refreshCalibration, saveCalibration, type Calibration } from './calibrate.js';
import { bestProbe, type ProbeResult, type ReadPath } from './probe.js';
import { embeddingLayout } from './embed.js';
import { planLadder, planWithWindow, type HardwareFigures, type Plan, type PlanLadder, type PlanOptions, type PlanTensorInput } from './plan.js';
import { readCacheAtLoad, type ReadCachePolicy } from './read-cache.js';
import { ElasticWeightStore } from './elastic-store.js';

export { planWithWindow } from './plan.js';
import { ResidentWeightStore } from './resident.js';
import type { WeightStore } from './store.js';
import { DEFAULT_READ_PATHS, MAX_READ_DEPTH, StreamingWeightStore, type MeasuredRates, type StreamingOptions } from './streaming.js';
import { listTensors } from './tensors.js';
import { createMoeWeightStore, moeShape, type ExpertStoreOptions } from './create-moe.js';

/**
 * The planner's view of a GGUF file's tensors. The output matrix's row size lets the planner
 * stream it in slices (output-slices.ts); FLEXINFER_OUTPUT_SLICES=0 keeps it resident, for
 * comparisons.
 */
export function planInputs(file: GgufFile, outputSlices = outputSlicesFromEnv()): PlanTensorInput[] {
  return listTensors(file).map((t) => ({
    name: t.name,
    layer: t.layer,
    kind: t.kind,
    bytes: t.bytes,
    ...(t.kind === 'token_embd' || (t.kind === 'output' && outputSlices) ? { rowBytes: embeddingLayout(t.info).rowBytes } : {}),
  }));
}

/** FLEXINFER_OUTPUT_SLICES=0: the output matrix is never sliced (default 1: the planner may slice it). */
export function outputSlicesFromEnv(value = process.env.FLEXINFER_OUTPUT_SLICES): boolean {
  return switchFromEnv('FLEXINFER_OUTPUT_SLICES', value, true);
}

/** Options of createWeightStore. */
export interface CreateWeightStoreOptions extends StreamingOptions, ExpertStoreOptions {
  /** "2GiB", "75%", bytes; undefined = no budget (everything resident). */
  memoryBudget?: string | number;
  /** KV pool bytes (counted against the budget). */
  kvBytes?: number;
  /** Activation scratch bytes (counted against the budget). */
  scratchBytes?: number;
  /** Prefetch window in layers. Default: 3, or 2 or 1 when the budget cannot hold 4 slots. */
  window?: number;
  /** Storage and compute speeds; default: the calibration cache, else conservative figures. */
  hardware?: HardwareFigures;
  /**
   * Measure the storage when the cache has no figures for this device: 'auto' (default) does
   * so for files of AUTO_CALIBRATE_MIN_BYTES or more (a few seconds once per device).
   */
  calibrate?: boolean | 'auto';
  /**
   * With a budget: an ElasticWeightStore on the ladder through the plan for `kvBytes` (the KV
   * floor), starting with every byte the budget leaves to the weights, so the elastic memory
   * pool (engine/memory-pool.ts) can demote and promote along it.
   */
  elastic?: boolean;
  /**
   * Bytes of the budget kept from the weights for the process's own memory (the JS runtime,
   * the server; engine/memory.ts runtimeReserveFor), elastic or static. Only as far as the
   * budget has room above the weights' minimum: it never makes a budget too small.
   */
  runtimeReserveBytes?: number;
  /**
   * Elastic: how much of the budget the weights leave free for the page cache of buffered
   * reads (weights/read-cache.ts readCacheAtLoad), on top of the runtime reserve and with the
   * same limit. The size it gave is returned as readCacheBytes.
   */
  readCache?: ReadCachePolicy;
}

/** Files from this size up are calibrated automatically (smaller ones are tests and toys). */
export const AUTO_CALIBRATE_MIN_BYTES = 256 * 1024 * 1024;

/** The ggml type holding most bytes of the layer matrices. @internal */
export function dominantType(file: GgufFile): number {
  const bytes = new Map<number, number>();
  for (const t of file.tensors) if (t.name.startsWith('blk.') && t.dims.length >= 2) bytes.set(t.type, (bytes.get(t.type) ?? 0) + t.byteSize);
  let best = 0;
  let most = -1;
  for (const [type, b] of bytes) if (b > most) [best, most] = [type, b];
  return best;
}

/** Conservative figures when nothing was measured (DESIGN.md: 1.2-3.6 GB/s on our disks). */
export const DEFAULT_HARDWARE: HardwareFigures = { readBytesPerSec: 1.5e9, computeBytesPerSec: 8e9 };

/** A store for the file under the budget, and the plan it follows (all-resident without one). */
export async function createWeightStore(
  source: string | GgufFile,
  options: CreateWeightStoreOptions = {},
): Promise<{ store: WeightStore & { dispose(): void }; plan: Plan; file: GgufFile; readCacheBytes?: number }> {
  const file = typeof source === 'string' ? readGgufSync(source) : source;
  const budgeted = options.memoryBudget !== undefined;
  const wantCal = options.calibrate ?? 'auto';
  let cal = options.hardware || !budgeted ? undefined : readCachedCalibration(file.path);
  // Measured again when missing or a day old (the disk changes from day to day).
  const stale = !cal || calibrationIsStale(cal);
  if (!options.hardware && budgeted && stale && (wantCal === true || (wantCal === 'auto' && file.fileSize >= AUTO_CALIBRATE_MIN_BYTES))) {
    cal = calibrateStorage(file.path, { computeType: dominantType(file) });
  }
  const hardware = options.hardware ?? (cal ? { readBytesPerSec: cal.readBytesPerSec, computeBytesPerSec: cal.computeBytesPerSec ?? DEFAULT_HARDWARE.computeBytesPerSec! } : DEFAULT_HARDWARE);
  const budget = options.memoryBudget === undefined ? Infinity : parseMemoryBudget(options.memoryBudget, file.fileSize);
  const forced = readPathFromEnv();
  const readPaths = options.readPaths ?? (forced ? [forced] : cal ? readPathsFrom(cal) : undefined);
  // The run's own reads correct a calibration that no longer holds (a busy moment, a slower day).
  const onMeasuredRate = cal && options.calibrate !== false ? refreshOnDrift(cal) : undefined;
  const streaming = { ...options, ...(readPaths ? { readPaths } : {}), ...(onMeasuredRate ? { onMeasuredRate } : {}) };
  const moe = moeShape(file);
  if (moe) {
    const { store, plan } = await createMoeWeightStore(file, moe, {
      ...streaming,
      budget,
      kvBytes: options.kvBytes ?? 0,
      scratchBytes: options.scratchBytes ?? 0,
      hardware,
    });
    return { store, plan, file };
  }
  const planOptions = { budget, kvBytes: options.kvBytes ?? 0, scratchBytes: options.scratchBytes ?? 0, hardware };
  const window = options.window ?? windowFromEnv();
  if (budget === Infinity) {
    const store = await ResidentWeightStore.load(file, options);
    return { store, plan: planWithWindow(planInputs(file), planOptions, window), file };
  }
  if (options.elastic) {
    const s = elasticLadder(file, planOptions, window, options.runtimeReserveBytes ?? 0, options.readCache);
    const store = await ElasticWeightStore.open(file, s.ladder, { ...streaming, weightBytes: s.weightBytes });
    return { store, plan: store.plan, file, readCacheBytes: s.readCacheBytes };
  }
  const plan = planWithReserve(planInputs(file), planOptions, window, options.runtimeReserveBytes ?? 0);
  const store = await StreamingWeightStore.open(file, plan, streaming);
  return { store, plan, file };
}

/**
 * The ladder an elastic store loads on, the read cache (readCacheAtLoad) and the weight memory
 * it loads with: the budget less KV floor and scratch, less the runtime reserve and the read
 * cache as far as they fit above the weights' minimum. The store never rises above the level
 * it loads at, so the ladder (its window, hence its ring) is planned for the memory the weights
 * get, not the whole room: a read cache that keeps the weights at their minimum would otherwise
 * sit beside a ring sized for the top level (tinyllama Q8_0 at 50% in a budget + 64 MiB cgroup:
 * a 187 MiB ring, window 3, where the static split's plan had 94 MiB).
 */
export function elasticLadder(file: GgufFile, planOptions: Required<Omit<PlanOptions, 'window'>>, window: number | undefined, runtimeReserveBytes: number, readCache?: ReadCachePolicy): { ladder: PlanLadder; readCacheBytes: number; weightBytes: number } {
  const inputs = planInputs(file);
  const room = planOptions.budget - planOptions.kvBytes - planOptions.scratchBytes;
  const sized = (ladder: PlanLadder) => {
    const levels = ElasticWeightStore.levels(file, ladder);
    const runtime = appliedReserve(room, levels.bytesAt, runtimeReserveBytes);
    // The read cache never holds the weights below the ladder's cacheFloor (a sliced output
    // matrix is for KV's sake only); the runtime reserve is the process's own memory and may.
    const cached = { bytesAt: levels.bytesAt.slice(ladder.cacheFloor), streamedAt: levels.streamedAt.slice(ladder.cacheFloor) };
    const readCacheBytes = readCache ? appliedReserve(room - runtime, cached.bytesAt, readCacheAtLoad(readCache, cached, room - runtime)) : 0;
    return { ladder, readCacheBytes, weightBytes: room - runtime - readCacheBytes, least: Math.min(...levels.bytesAt) };
  };
  const whole = sized(planLadder(inputs, planOptions, window));
  if (whole.weightBytes >= room) return whole;
  let fitted;
  try {
    // At the minimum already (the read cache wants more than the room has above it): the
    // ladder of the smallest ring (window 1), unless a window was asked for; else the ladder
    // the planner picks for the weights' share.
    fitted = sized(
      whole.weightBytes <= whole.least && window === undefined
        ? planLadder(inputs, planOptions, 1)
        : planLadder(inputs, { ...planOptions, scratchBytes: planOptions.budget - planOptions.kvBytes - whole.weightBytes }, window),
    );
  } catch (err) {
    if (err instanceof InsufficientMemoryError) return whole;
    throw err;
  }
  // Only a ladder whose minimum is no larger: KV's room at full load is what is above it (the
  // planner may pick a deeper window, a larger ring, for the smaller room).
  return fitted.least <= whole.least ? fitted : whole;
}

/**
 * A static split's plan with `reserve` bytes kept from the weights for the process's own memory
 * (as scratch the planner leaves alone), as far as the budget holds it above the weights'
 * minimum: at the smallest budget that loads without it, none.
 */
export function planWithReserve(tensors: readonly PlanTensorInput[], options: Omit<PlanOptions, 'window'>, window: number | undefined, reserve: number): Plan {
  const withReserve = (r: number) => planWithWindow(tensors, { ...options, scratchBytes: (options.scratchBytes ?? 0) + r }, window);
  if (reserve <= 0) return withReserve(0);
  try {
    return withReserve(reserve);
  } catch (err) {
    if (!(err instanceof InsufficientMemoryError)) throw err;
    // err.minimum counts the reserve: what the budget holds above the minimum without it.
    const applied = Math.max(0, Math.min(reserve, options.budget - (err.minimum - reserve)));
    try {
      return withReserve(applied);
    } catch (again) {
      if (applied > 0 && again instanceof InsufficientMemoryError) return withReserve(0);
      throw again;
    }
  }
}

/**
 * The part of `reserve` that `room` (what the budget leaves to the weights and the KV above
 * the floor) can give up and still hold the weights' minimum resident set (the smallest level
 * of `bytesAt`).
 */
export function appliedReserve(room: number, bytesAt: readonly number[], reserve: number): number {
  return Math.max(0, Math.min(reserve, room - Math.min(...bytesAt)));
}

/**
 * FLEXINFER_READ_PATH=direct@8 | buffered@4 (path@depth): one fixed read path instead of the
 * measured choice (for comparing paths; the streamer then never switches). Undefined when unset.
 */
export function readPathFromEnv(value = process.env.FLEXINFER_READ_PATH): ReadPath | undefined {
  if (!value) return undefined;
  const m = /^(direct|buffered)@(\d+)$/.exec(value.trim());
  if (!m || Number(m[2]) < 1 || Number(m[2]) > MAX_READ_DEPTH) throw new InvalidOptionError('FLEXINFER_READ_PATH', `expected direct@N or buffered@N with N in [1, ${MAX_READ_DEPTH}], got '${value}'`);
  return { direct: m[1] === 'direct', depth: Number(m[2]) };
}

/**
 * FLEXINFER_WINDOW=N (1..8): the prefetch window in layers instead of the planner's choice (for
 * comparing windows in benchmarks). Undefined when unset.
 */
export function windowFromEnv(value = process.env.FLEXINFER_WINDOW): number | undefined {
  if (!value) return undefined;
  const n = Number(value.trim());
  if (!(Number.isInteger(n) && n >= 1 && n <= 8)) throw new InvalidOptionError('FLEXINFER_WINDOW', `expected an integer in [1, 8], got '${value}'`);
  return n;
}

/**
 * The streamer's candidate paths from a calibration: where it starts, the best path of the
 * other kind (O_DIRECT vs buffered) and the start's kind at twice (or, at the deepest, half)
 * its depth; between tokens it moves to whichever its own reads say is fastest.
 *
 * NOTE: a budgeted run starts on O_DIRECT (the deepest probe near the best, at least
 * MIN_DIRECT_START_DEPTH deep: directStart),
 * even when a buffered probe was faster. The probes run outside any memory limit; buffered reads go through the page cache,
 * which a memory cgroup charges to the run, so at the limit every buffered read waits for
 * reclaim. tinyllama-1.1b Q8_0 at 50% in a cgroup of budget + 64 MiB (18:21-18:27 UTC, one
 * run per path, quiet machine; diag3.sh in the issue-9 notes): buffered@4 2.60 / 1.59 GB/s,
 * buffered@8 2.43, buffered@16 1.49, O_DIRECT@16 2.69 / 3.91, O_DIRECT@32 3.67 / 2.77 /
 * 3.71 GB/s, while the probes beside them had buffered@8 at 3.6 GB/s and O_DIRECT@16 at
 * 1.8; without the cgroup buffered@4 read 4.36 GB/s. At 75%: O_DIRECT@16 2.41 GB/s,
 * buffered@4 1.00. The deeper path gets no probe prior: the probes read sequentially, a run
 * reads tensors with resident ones between them, so it is tried at the selector's usual cadence.
 */
export function readPathsFrom(cal: Pick<Calibration, 'path' | 'probes' | 'readBytesPerSec'>): Array<ReadPath & { prior?: number }> {
  const direct = directStart(cal.probes.filter((p) => p.direct));
  const start = direct ? { direct: true, depth: direct.depth, prior: direct.bytesPerSec } : { ...cal.path, prior: cal.readBytesPerSec };
  const other = bestProbe(cal.probes, (p) => p.direct !== start.direct);
  const fallback = DEFAULT_READ_PATHS.find((p) => p.direct !== start.direct)!;
  // See NOTE on SHALLOW_SIBLING: only a deeper sibling, unless FLEXINFER_SHALLOW_SIBLING=1 (for comparisons).
  const deeper = start.depth * 2 <= MAX_READ_DEPTH;
  const sibling = { direct: start.direct, depth: deeper ? start.depth * 2 : Math.max(1, start.depth / 2) };
  return [
    start,
    other ? { direct: other.direct, depth: other.depth, prior: other.bytesPerSec } : fallback,
    ...(sibling.depth !== start.depth && (deeper || switchFromEnv('FLEXINFER_SHALLOW_SIBLING', process.env.FLEXINFER_SHALLOW_SIBLING, false)) ? [sibling] : []),
  ];
}

/**
 * NOTE (SHALLOW_SIBLING): a run that starts at MAX_READ_DEPTH gets no shallower sibling to try.
 * Measured (issue-9 notes, 2026-12-06 13:20-13:23 UTC, tinyllama-1.1b Q8_0 at 25%, 16 tokens,
 * cgroup of budget + 64 MiB, quiet, fio 1.4-1.9 GB/s): of 11 runs that started on direct@32
 * with direct@16 as the sibling, the 6 that stayed on 32 (~30 reads in flight) streamed
 * 4.96-6.06 GB/s (median 5.27), the 5 whose one-token turn on 16 won by noise and stayed there
 * (~20 in flight) 4.25-5.13 (median 4.74). One token is too short to tell two depths of the
 * same kind apart on this disk, and deeper costs only ring space the store holds anyway.
 */

/** Probes within this fraction of the best one count as ties, won by the deeper path. */
export const DEPTH_TIE = 0.15;

/**
 * The deepest probe within DEPTH_TIE of the fastest. The 256 MiB sequential probes rarely tell
 * O_DIRECT depths from 2 up apart (1.4-1.8 GB/s at every depth in one 25% sweep point), while a
 * run's reads, tensors with resident ones between them, kept more of the device busy deeper:
 * at 25% of tinyllama Q8_0 the run on direct@4 (the best probe by 3%) read 1.39 GB/s with
 * 3.9 reads in flight, at 50% direct@16-32 read 2.7-3.9 GB/s against direct@8's 2.55.
 * Reads in flight cost the engine nothing but ring space it already has.
 */
export function deepestNearBest(probes: readonly ProbeResult[]): ProbeResult | undefined {
  const best = bestProbe(probes);
  if (!best) return undefined;
  return probes.filter((p) => p.bytesPerSec >= (1 - DEPTH_TIE) * best.bytesPerSec).reduce((a, b) => (b.depth > a.depth ? b : a));
}

/**
 * O_DIRECT runs start at least this deep. The probes' ranking of depths did not carry over to
 * the runs' reads (tinyllama-1.1b Q8_0 budget sweeps, 2026-12-05, quiet runs): runs that
 * started shallow because a noisy probe series put depth 2 or 4 first streamed 1.41 GB/s at
 * depth 4 (25%, 3.9 reads in flight) and 2.53 GB/s busy at depth 2 (75%, 2.0 in flight,
 * 94 ms I/O wait per token), while every run at depth 16-32 streamed 2.8-3.9 GB/s busy.
 * Deeper costs only reads in flight, which the ring already holds memory for.
 */
export const MIN_DIRECT_START_DEPTH = 8;

/** Where O_DIRECT reads start: deepestNearBest, but no shallower than MIN_DIRECT_START_DEPTH (that depth's probe). */
export function directStart(probes: readonly ProbeResult[]): ProbeResult | undefined {
  const near = deepestNearBest(probes);
  if (!near || near.depth >= MIN_DIRECT_START_DEPTH) return near;
  const deep = probes.filter((p) => p.depth >= MIN_DIRECT_START_DEPTH).sort((a, b) => a.depth - b.depth)[0];
  return deep ?? near;
}

/** An onMeasuredRate that saves a refreshed calibration when the run disagrees with it. */
function refreshOnDrift(cal: Calibration): (m: MeasuredRates) => void {
  let current = cal;
  return (m) => {
    const next = refreshCalibration(current, m);
    if (!next) return;
    current = next;
    try {
      saveCalibration(next);
    } catch {
      // A read-only cache directory: the run goes on with its own measurements.
    }
  };
}
