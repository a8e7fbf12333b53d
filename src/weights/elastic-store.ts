/**
 * ElasticWeightStore: a streaming weight store whose resident set can change while the model
 * runs, along a PlanLadder (nested plans). The elastic memory pool (engine/memory-pool.ts)
 * moves it down when the KV cache needs memory and up when memory frees again:
 *
 *   demoteTo(k)   between forward passes: the steps [k, level) leave the resident set, their
 *                 pages are given back at once (munlock + MADV_DONTNEED), the ring grows
 *   promoteTo(k)  starts reading steps [level, k) into their places in the background (one
 *                 I/O thread beside the streaming reads); until settle() sees them all read,
 *                 the forward passes keep streaming them
 *   settle()      between forward passes: a finished promotion becomes the resident set and
 *                 the ring shrinks
 *
 * Each level runs a StreamingWeightStore over the arena's memory (StreamingWeightStore.over):
 * a level change retires the current one (its reads in flight finish) and starts the next.
 * The forward pass sees one WeightStore throughout and cannot tell (the tokens and logits do
 * not depend on the level: engine/elastic.test.ts).
 */
import type { GgufFile } from '../gguf/reader.js';
import { WeightArena, type ArenaMemory } from './arena.js';
import { demotableFootprint, residentFootprint, type Plan, type PlanLadder } from './plan.js';
import type { LayerWeights, WeightStore, WeightTensor } from './store.js';
import type { OutputSlices } from './output-slices.js';
import { StreamingWeightStore, type StreamingOptions, type StreamingStats } from './streaming.js';
import { listTensors, type TensorEntry } from './tensors.js';

/** Level changes of an elastic store since it opened. */
export interface ElasticWeightEvents {
  demotions: number;
  promotions: number;
  /** Promotions given up before they finished (KV needed the memory first). */
  cancelledPromotions: number;
  demotedBytes: number;
  promotedBytes: number;
  /** Time level changes took between forward passes (the critical path), ms. */
  switchMs: number;
}

/** StreamingStats over every level the store ran, plus the elastic figures. */
export interface ElasticWeightStats extends StreamingStats {
  level: number;
  /** Level a background promotion is reading towards (= level when none runs). */
  targetLevel: number;
  numLevels: number;
  loadingBytes: number;
  /** Bytes a forward pass reads at the current level. */
  streamedBytesPerPass: number;
  events: ElasticWeightEvents;
}

/** The highest level in [min, max] whose bytes fit (the longest fitting prefix), or -1. */
export function levelFor(bytesAt: readonly number[], min: number, max: number, bytes: number): number {
  for (let k = max; k >= min; k--) if (bytesAt[k]! <= bytes) return k;
  return -1;
}

/** Tensors resident at every level (norms; the output matrix unless it is a step: the ladder's level-0 resident set). */
function fixedTensors(entries: readonly TensorEntry[], ladder: PlanLadder): TensorEntry[] {
  const bottom = ladder.planAt(0);
  return entries.filter((_, i) => bottom.tensors[i]!.placement === 'resident');
}

const COUNTERS = ['tokens', 'bytesRead', 'ioWaitSec', 'directBytes', 'bufferedBytes'] as const;

/** See the file comment. */
export class ElasticWeightStore implements WeightStore {
  readonly numLayers: number;
  readonly ladder: PlanLadder;
  /** Weight memory of each level as the arena holds it (resident pages + ring), bytes. */
  readonly bytesAt: readonly number[];
  /** Ring bytes and resident bytes (pages) of each level: bytesAt = residentAt + ringAt. */
  readonly ringAt: readonly number[];
  readonly residentAt: readonly number[];
  /** The minimum resident set's level. */
  readonly minLevel: number;
  /** Highest level the arena has room for. */
  readonly maxLevel: number;
  readonly #file: GgufFile;
  readonly #entries: TensorEntry[];
  readonly #arena: WeightArena;
  readonly #options: StreamingOptions;
  #inner: StreamingWeightStore;
  #level: number;
  #target: number;
  #held = 0;
  /** Counters of retired levels' stores. */
  readonly #retired: Record<(typeof COUNTERS)[number], number> = { tokens: 0, bytesRead: 0, ioWaitSec: 0, directBytes: 0, bufferedBytes: 0 };
  readonly #events: ElasticWeightEvents = { demotions: 0, promotions: 0, cancelledPromotions: 0, demotedBytes: 0, promotedBytes: 0, switchMs: 0 };
  #disposed = false;

  private constructor(file: GgufFile, ladder: PlanLadder, entries: TensorEntry[], arena: WeightArena, level: number, minLevel: number, maxLevel: number, bytesAt: number[], ringAt: number[], options: StreamingOptions) {
    this.#file = file;
    this.maxLevel = maxLevel;
    this.ladder = ladder;
    this.#entries = entries;
    this.#arena = arena;
    this.#options = options;
    this.bytesAt = bytesAt;
    this.ringAt = ringAt;
    this.residentAt = bytesAt.map((b, k) => b - ringAt[k]!);
    this.minLevel = minLevel;
    this.#level = this.#target = level;
    this.#inner = this.#storeAt(level);
    this.numLayers = this.#inner.numLayers;
  }

  /**
   * Weight memory of every level of `ladder` as the arena holds it (exactly what the planner
   * accounts): the fixed tensors and the level's steps (residentAt), plus the ring (ringAt);
   * and the file bytes a forward pass streams at each level (streamedAt).
   */
  static levels(file: GgufFile, ladder: PlanLadder): { residentAt: number[]; ringAt: number[]; bytesAt: number[]; streamedAt: number[] } {
    const entries = listTensors(file);
    let resident = fixedTensors(entries, ladder).reduce((a, t) => a + residentFootprint(t.bytes), 0);
    let streamed = ladder.steps.reduce((a, i) => a + entries[i]!.bytes, 0);
    const residentAt: number[] = [];
    const streamedAt: number[] = [];
    for (let k = 0; k <= ladder.steps.length; k++) {
      residentAt.push(resident);
      streamedAt.push(streamed);
      if (k < ladder.steps.length) {
        resident += demotableFootprint(entries[ladder.steps[k]!]!.bytes);
        streamed -= entries[ladder.steps[k]!]!.bytes;
      }
    }
    const bytesAt = ladder.weightBytes.slice();
    return { residentAt, ringAt: bytesAt.map((b, k) => b - residentAt[k]!), bytesAt, streamedAt };
  }

  /**
   * Opens `file` on `ladder`: at the highest level whose memory fits `weightBytes` (the
   * planner's rule: longest fitting prefix), or at `level`; the arena has room up to
   * `maxLevel` (default: that level). Loads the fixed tensors and the level's steps, and
   * starts streaming.
   */
  static async open(file: GgufFile, ladder: PlanLadder, options: StreamingOptions & { weightBytes?: number; level?: number; maxLevel?: number }): Promise<ElasticWeightStore> {
    const entries = listTensors(file);
    const { ringAt, bytesAt } = ElasticWeightStore.levels(file, ladder);
    const fit = options.weightBytes !== undefined ? levelFor(bytesAt, 0, ladder.steps.length, options.weightBytes) : ladder.steps.length;
    const level = options.level ?? fit;
    const maxLevel = options.maxLevel ?? level;
    if (!(Number.isInteger(level) && level >= 0 && level <= maxLevel && maxLevel <= ladder.steps.length)) {
      throw new RangeError(`elastic store: level ${level} outside [0, ${maxLevel}] (weight memory ${options.weightBytes} fits level ${fit})`);
    }
    const fixed = fixedTensors(entries, ladder);
    const demotable = ladder.steps.slice(0, maxLevel).map((i) => entries[i]!);
    // The minimum resident set: least memory as the arena counts it (smallest such level).
    let minLevel = 0;
    for (let k = 1; k <= maxLevel; k++) if (bytesAt[k]! < bytesAt[minLevel]!) minLevel = k;
    if (level < minLevel) throw new RangeError(`elastic store: level ${level} is below the minimum resident set (${minLevel})`);
    const maxRing = Math.max(0, ...ringAt.slice(minLevel, maxLevel + 1));
    const arena = new WeightArena(file, fixed, demotable, maxRing, options);
    try {
      await arena.load([...fixed, ...demotable.slice(0, level)], options);
      return new ElasticWeightStore(file, ladder, entries, arena, level, minLevel, maxLevel, bytesAt, ringAt, options);
    } catch (err) {
      arena.dispose();
      throw err;
    }
  }

  /** The level whose resident set the forward passes use. */
  get level(): number {
    return this.#level;
  }

  /** Where a background promotion is heading (= level when none runs). */
  get targetLevel(): number {
    return this.#target;
  }

  /** Predicted seconds of a forward pass at level k (the planner's cost model). */
  secPerPassAt(k: number): number {
    return this.ladder.planAt(k).predictedSecPerToken;
  }

  /** Whether the arena holds tensor `name` resident now (tests: never both resident and streamed). @internal */
  isResident(name: string): boolean {
    return this.#arena.isResident(name);
  }

  /** The plan of the current level. */
  get plan(): Plan {
    return this.ladder.planAt(this.#level);
  }

  acquire(layer: number): LayerWeights {
    const l = this.#inner.acquire(layer);
    this.#held++;
    return l;
  }

  release(layer: number): void {
    this.#inner.release(layer);
    this.#held--;
  }

  global(name: string): WeightTensor | undefined {
    return this.#inner.global(name);
  }

  get outputSlices(): OutputSlices | undefined {
    return this.#inner.outputSlices;
  }

  embed(tokens: Int32Array, out: Float32Array): void {
    this.#inner.embed(tokens, out);
  }

  /** Weight memory now: resident pages (those being read in included) and the ring. */
  memory(): ArenaMemory {
    return this.#arena.memory();
  }

  /**
   * Demotes to level `k` (< level) now, between forward passes: cancels a promotion in
   * flight, gives the demoted tensors' pages back and restarts streaming with the larger ring.
   */
  demoteTo(k: number): void {
    this.#checkBetweenPasses('demoteTo');
    if (!(Number.isInteger(k) && k >= this.minLevel && k <= this.#level)) throw new RangeError(`demoteTo(${k}): level must be in [${this.minLevel}, ${this.#level}]`);
    const t0 = performance.now();
    this.cancelPromotion();
    if (k === this.#level) return;
    const demoted = this.#stepsIn(k, this.#level);
    this.#retire();
    this.#arena.discard(demoted);
    this.#level = this.#target = k;
    this.#inner = this.#storeAt(k);
    this.#events.demotions++;
    this.#events.demotedBytes += demoted.reduce((a, t) => a + demotableFootprint(t.bytes), 0);
    this.#events.switchMs += performance.now() - t0;
  }

  /** Starts reading the steps up to level `k` (> level) in the background; settle() applies them. */
  promoteTo(k: number): void {
    if (this.#disposed) throw new Error('promoteTo: the weight store is disposed');
    if (this.#target !== this.#level) throw new Error('promoteTo: a promotion is already running (bug)');
    const max = this.maxLevel;
    if (!(Number.isInteger(k) && k > this.#level && k <= max)) throw new RangeError(`promoteTo(${k}): level must be in (${this.#level}, ${max}]`);
    this.#arena.startLoad(this.#stepsIn(this.#level, k));
    this.#target = k;
  }

  /** Gives up a promotion in flight (its reads finish, its pages are given back). */
  cancelPromotion(): void {
    if (this.#target === this.#level) return;
    this.#arena.cancelLoad();
    this.#target = this.#level;
    this.#events.cancelledPromotions++;
  }

  /**
   * Between forward passes: if the promotion's reads are done, its tensors join the resident
   * set, the ring shrinks and streaming restarts without them. Returns whether the level changed.
   */
  settle(): boolean {
    if (this.#target === this.#level || this.#held > 0) return false;
    const loaded = this.#arena.pollLoad();
    if (loaded.length === 0) return false;
    const t0 = performance.now();
    this.#retire();
    const k = this.#target;
    this.#level = k;
    this.#inner = this.#storeAt(k);
    this.#events.promotions++;
    this.#events.promotedBytes += loaded.reduce((a, t) => a + demotableFootprint(t.bytes), 0);
    this.#events.switchMs += performance.now() - t0;
    return true;
  }

  /** Memory the arena's regions really hold now (mincore). @internal */
  physicalBytes(): { region: number; ring: number } {
    return this.#arena.physicalBytes();
  }

  stats(): ElasticWeightStats {
    const s = this.#inner.stats();
    for (const k of COUNTERS) s[k] += this.#retired[k];
    s.bytesReadPerToken = s.tokens > 0 ? s.bytesRead / s.tokens : 0;
    s.ioWaitSecPerToken = s.tokens > 0 ? s.ioWaitSec / s.tokens : 0;
    const m = this.#arena.memory();
    s.residentBytes = m.residentBytes;
    s.ringBytes = m.ringBytes;
    s.lockedBytes = m.lockedBytes;
    if (m.lockError) s.lockError = m.lockError;
    return {
      ...s,
      level: this.#level,
      targetLevel: this.#target,
      numLevels: this.bytesAt.length,
      loadingBytes: m.loadingBytes,
      streamedBytesPerPass: this.plan.streamedBytesPerToken,
      events: { ...this.#events },
    };
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#inner.dispose();
    this.#arena.dispose();
  }

  // --- internals ---

  #checkBetweenPasses(what: string): void {
    if (this.#disposed) throw new Error(`${what}: the weight store is disposed`);
    if (this.#held > 0) throw new Error(`${what}: ${this.#held} layers are acquired; level changes happen between forward passes (bug)`);
  }

  /** Tensors of ladder steps [from, to). */
  #stepsIn(from: number, to: number): TensorEntry[] {
    return this.ladder.steps.slice(from, to).map((i) => this.#entries[i]!);
  }

  /** A streaming store for level k over the arena (the ring sized for k). */
  #storeAt(k: number): StreamingWeightStore {
    this.#arena.setRingBytes(this.ringAt[k]!);
    return StreamingWeightStore.over(this.#file, this.ladder.planAt(k), { residentView: (t) => this.#arena.view(t), ring: this.#arena.ring }, { ...this.#options, lock: false });
  }

  /** Ends the current level's store, keeping its counters. */
  #retire(): void {
    const s = this.#inner.stats();
    for (const k of COUNTERS) this.#retired[k] += s[k];
    this.#inner.dispose();
  }
}
