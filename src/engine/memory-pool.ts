/**
 * The elastic memory pool: one budget whose memory follows the load. Few conversations, more
 * resident weights; many, more KV and more streaming.
 *
 *   budget = scratch + KV floor + pool
 *   pool   = weights (resident pages + ring, at the weight store's ladder level)
 *          + KV above the floor (the KV grant minus the floor, when positive)
 *          + other tenants (e.g. an expert cache's slots: addTenant)
 *          + free
 *
 * The runtime reserve is memory the process itself uses besides what the pool and scratch
 * account (the JS heaps of the main thread and the engine worker, the HTTP server's buffers,
 * native allocations; engine/memory.ts says how it was measured). It lives in the part of the
 * floor KV does not use, and beyond that in the pool: KV + runtime above the floor counts as
 * KV above the floor. So at low load the weights keep the whole pool, and when KV fills the
 * floor the weights make room for the runtime too (the process then stays within the budget
 * plus a small margin).
 *
 * The read cache is page cache the buffered streaming reads need (weights/read-cache.ts: in a
 * memory cgroup, every resident byte beyond what leaves it costs more read time than it
 * saves). The weights leave it free: a promotion stops where free memory would fall below it.
 * KV above the floor takes it first (the kernel reclaims clean page cache), so it also serves
 * as KV's room to grow before a demotion.
 *
 * The KV floor is KV memory no weight may take (default: one full-context sequence). The KV
 * layout holds a grant (kv/grant.ts) this pool raises on request and lowers between forward
 * passes as chunks come back.
 *
 * NOTE (policy; every figure below is a default of Hysteresis):
 * - KV must grow (request(), called by the layout between forward passes, after it evicted
 *   what cached prefixes it could): from free memory if there is enough; else cancel a
 *   promotion still reading; else demote the weights to the highest ladder level that leaves
 *   the new grant plus `headroom` free (or, failing that, the minimum resident set, so that
 *   growth close to the limit does not demote one step at a time); else refuse, and the scheduler preempts a sequence.
 * - Headroom: what the next `horizonSteps` forward passes are expected to add to KV (the
 *   measured growth rate), at least `minHeadroomSlots` slots of every layer's K and V, doubled
 *   for every demotion in the last `cooldownSteps` steps (a burst of growth then demotes in
 *   fewer, larger moves). So steady growth demotes about once per horizon, not every step.
 * - Weights come back (betweenPasses()): never within `cooldownSteps` forward passes of a
 *   demotion or of the last promotion (an idle engine: or after cooldownMs), never while a
 *   promotion reads; then to the highest level whose memory, with
 *   the ring of the current level still in use while it reads, leaves `headroom` free. The
 *   reads run in the background; the store applies them between passes when they are done.
 * - Cached prefixes compete with weights by expected value (valueOfWeights / valueOfPrefixes):
 *   seconds saved per second per byte. A resident tensor saves its share of a forward pass's
 *   read time on every pass; a cached chunk saves recomputing its tokens each time a prompt
 *   hits it. When a promotion is short of memory that only the prefix cache holds, cached
 *   chunks are evicted for it if the weights are worth EVICTION_MARGIN (2) times more per byte. The hit rate is the
 *   prompt tokens the cache served over the last `hitWindowMs` of wall time, and a token's
 *   recompute cost is what a row of a prompt-sized pass costs: hits come in bursts (a wave
 *   of requests at admission) and the passes between them decode, so a per-pass average fell
 *   to ~0 within a few passes of a burst and the promotion after it evicted the prefixes the
 *   next wave asked for (serve bench, tinyllama Q4_0 at 50%, 1024-token prompts: 880-1540
 *   chunks per run, the 16-stream phase starting with 4-5 cached prompts against the static
 *   split's 7).
 * - Hence thrash is bounded: a promotion needs cooldownSteps passes since the last demotion
 *   and since the last promotion, so at most ceil(100 / cooldownSteps) promotions start per
 *   100 passes, and each demotion leaves twice the headroom of one less than cooldownSteps
 *   earlier (memory-pool.test.ts checks both over random traces).
 */
import type { KvChunkGrant } from '../kv/grant.js';

/** What the pool needs of the weight store (ElasticWeightStore). */
export interface WeightTenant {
  readonly level: number;
  /** Level a background promotion reads towards (= level when none runs). */
  readonly targetLevel: number;
  /** Resident bytes (pages) and ring bytes of each ladder level. */
  readonly residentAt: readonly number[];
  readonly ringAt: readonly number[];
  /** Lowest level (the minimum resident set) and highest (room in the arena). */
  readonly minLevel: number;
  readonly maxLevel: number;
  /** Predicted seconds of a forward pass at a level (the planner's cost model). */
  secPerPassAt(level: number): number;
  demoteTo(level: number): void;
  promoteTo(level: number): void;
  cancelPromotion(): void;
  /** Applies a finished promotion; true if the level changed. */
  settle(): boolean;
}

/** What the pool needs of the KV layout (VTensorKvManager). */
export interface KvTenant {
  /** Chunks held: mapped into sequences or kept by the prefix cache. */
  readonly numUsedChunks: number;
  /** Chunks the prefix cache alone holds (evictable). */
  readonly numCachedChunks: number;
  evictCachedChunks(numChunks: number): number;
}

/** Another tenant of the pool (for example the slots of an MoE expert cache). */
export interface PoolTenant {
  readonly name: string;
  /** Bytes it holds now. */
  readonly bytes: number;
}

/** Knobs of the anti-thrash policy (see the NOTE). */
export interface Hysteresis {
  cooldownSteps: number;
  /** An idle engine (no passes, so no steps) ends a cooldown after this long. */
  cooldownMs: number;
  horizonSteps: number;
  minHeadroomSlots: number;
  /** Largest headroom multiplier (2^backoff). */
  maxBackoff: number;
  /** Wall time over which prefix-cache hits are counted for the cache's value. */
  hitWindowMs: number;
}

export const DEFAULT_HYSTERESIS: Hysteresis = { cooldownSteps: 32, cooldownMs: 2000, horizonSteps: 32, minHeadroomSlots: 2, maxBackoff: 5, hitWindowMs: 60_000 };

/**
 * Cached prefixes go for weights only when the weights are worth this many times more per byte.
 * The two mistakes cost differently: evicting a prompt that is asked for again costs its whole
 * recompute, while a promotion held back costs the weights' share of each pass only until the
 * next pass asks again (the hit rate falls as hits age out of the window). Measured (serve
 * bench, tinyllama Q4_0 at 50%, 1024-token prompts, 2026-12-07): of the evictions at the end
 * of five runs, three were decided at 1.002-1.08x, near parity, where the passes per second
 * measured at that moment (2.2-4.0) decides (the other two at 2.4x and with no hits left in
 * the window); one such eviction between two phases of another run cost 5 prompt passes
 * (~15 s) of recompute for a promotion that lasted ~20 passes (~0.25 s saved) and the run's
 * 16-stream phase came out at 0.83x of the static split.
 */
export const EVICTION_MARGIN = 2;

/** A pass of at least this many rows is prompt processing: its time per row is a prompt token's cost. */
const PROMPT_PASS_ROWS = 32;

/** Options of a MemoryPool. */
export interface MemoryPoolOptions {
  budget: number;
  scratchBytes: number;
  floorBytes: number;
  chunkBytes: number;
  /** Bytes of one chunk slot of every layer's K and V (the unit one sequence grows by). */
  slotBytes: number;
  /** Most chunks the KV layout's chunk pool has (address space). */
  maxKvChunks: number;
  /** Bytes of the budget kept for the process's own memory (see the file comment); default 0. */
  runtimeBytes?: number;
  /** Bytes of the pool the weights leave free for the page cache (see the file comment); default 0. */
  readCacheBytes?: number;
  hysteresis?: Partial<Hysteresis>;
  /** Milliseconds clock (default performance.now). */
  now?: () => number;
}

/** What happened in the pool since it was created. */
export interface PoolEvents {
  demotions: number;
  promotions: number;
  cancelledPromotions: number;
  /** KV requests granted / refused (a refusal means the scheduler preempts). */
  kvGrants: number;
  kvRefusals: number;
  /** Cached prefix chunks evicted to make room for weights (value comparison). */
  prefixChunksEvictedForWeights: number;
  steps: number;
  /**
   * The last eviction of cached prefixes for the weights and the figures it was decided on
   * (values in seconds saved per second per byte), for finding out afterwards why a trade went
   * the way it did (a serve bench run whose next phase repeated the evicted prompts).
   */
  lastEvictionForWeights?: EvictionForWeights;
}

/** PoolEvents.lastEvictionForWeights. */
export interface EvictionForWeights {
  step: number;
  fromLevel: number;
  toLevel: number;
  weightsValue: number;
  prefixesValue: number;
  passesPerSec: number;
  hitTokensPerSec: number;
  secPerPromptToken: number;
  cachedBytes: number;
  evictedChunks: number;
}

/** One sample of the split, for statistics over time. */
export interface PoolSample {
  /** Milliseconds since the pool was created. */
  t: number;
  step: number;
  level: number;
  residentBytes: number;
  ringBytes: number;
  loadingBytes: number;
  kvLiveBytes: number;
  kvCachedBytes: number;
  otherBytes: number;
  freeBytes: number;
  streamedBytesPerPass: number;
}

/** Measurements of the last forward pass, for the value estimates. */
export interface StepMeasure {
  ms: number;
  rows: number;
  /** Prompt tokens served from the prefix cache since the last step. */
  prefixHitTokens: number;
}

const MAX_SAMPLES = 2048;

/** See the file comment. */
export class MemoryPool implements KvChunkGrant {
  readonly budget: number;
  readonly scratchBytes: number;
  readonly floorBytes: number;
  readonly chunkBytes: number;
  readonly slotBytes: number;
  /** The runtime reserve (see the file comment). */
  readonly runtimeBytes: number;
  /** The read cache (see the file comment). */
  readonly readCacheBytes: number;
  /** budget - scratch - floor: what weights and KV (+ runtime) above the floor share. */
  readonly poolBytes: number;
  readonly hysteresis: Hysteresis;
  /** KV chunks the grant holds without asking: what the runtime leaves of the floor. */
  readonly #floorChunks: number;
  /** floor - runtime reserve (negative when the reserve is larger than the floor). */
  readonly #freeFloor: number;
  readonly #maxKvChunks: number;
  readonly #now: () => number;
  readonly #t0: number;
  #weights: WeightTenant | undefined;
  #kv: KvTenant | undefined;
  readonly #tenants: PoolTenant[] = [];
  #grant: number;
  #step = 0;
  #lastDemotion = { step: -Infinity, ms: -Infinity };
  #lastPromotion = { step: -Infinity, ms: -Infinity };
  #recentDemotions: number[] = [];
  /** EWMA of KV growth (chunks per step, >= 0), pass time per row (ms), pass time (ms). */
  #growth = 0;
  #lastUsed = 0;
  #msPerRow = 0;
  #msPerPass = 0;
  /** EWMA of the time per row of prompt-sized passes (ms); 0 until one ran. */
  #msPerPromptRow = 0;
  /** Prefix-cache hits within the hit window, oldest first, and their sum. */
  #hits: Array<{ ms: number; tokens: number }> = [];
  #hitTokens = 0;
  readonly #events: PoolEvents = { demotions: 0, promotions: 0, cancelledPromotions: 0, kvGrants: 0, kvRefusals: 0, prefixChunksEvictedForWeights: 0, steps: 0 };
  #samples: PoolSample[] = [];
  #lastSampleMs = -Infinity;
  #sampleEvery = 1;
  #sampleCount = 0;
  /** Weight figures a sample shows (set by the glue: the store's own measurements). */
  sampleWeights: (() => { residentBytes: number; ringBytes: number; loadingBytes: number; streamedBytesPerPass: number }) | undefined;
  /** KV figures a sample shows (live and cached bytes). */
  sampleKv: (() => { liveBytes: number; cachedBytes: number }) | undefined;

  constructor(o: MemoryPoolOptions) {
    for (const [k, v] of Object.entries({ budget: o.budget, scratchBytes: o.scratchBytes, runtimeBytes: o.runtimeBytes ?? 0, readCacheBytes: o.readCacheBytes ?? 0, floorBytes: o.floorBytes, chunkBytes: o.chunkBytes, slotBytes: o.slotBytes, maxKvChunks: o.maxKvChunks })) {
      if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`memory pool: ${k} must be a finite number >= 0, got ${v}`);
    }
    if (!(o.chunkBytes > 0)) throw new RangeError('memory pool: chunkBytes must be > 0');
    this.budget = o.budget;
    this.scratchBytes = o.scratchBytes;
    this.floorBytes = o.floorBytes;
    this.chunkBytes = o.chunkBytes;
    this.slotBytes = o.slotBytes;
    this.runtimeBytes = o.runtimeBytes ?? 0;
    this.readCacheBytes = o.readCacheBytes ?? 0;
    this.poolBytes = o.budget - o.scratchBytes - o.floorBytes;
    this.#freeFloor = o.floorBytes - this.runtimeBytes;
    this.hysteresis = { ...DEFAULT_HYSTERESIS, ...o.hysteresis };
    this.#floorChunks = Math.max(0, Math.floor(this.#freeFloor / o.chunkBytes));
    this.#maxKvChunks = o.maxKvChunks;
    this.#now = o.now ?? (() => performance.now());
    this.#t0 = this.#now();
    this.#grant = this.#floorChunks;
  }

  /** The weights' memory at (level, target): a promotion in flight still uses the level's ring. */
  static weightBytes(w: Pick<WeightTenant, 'residentAt' | 'ringAt'>, level: number, target = level): number {
    return w.residentAt[Math.max(level, target)]! + Math.max(w.ringAt[level]!, w.ringAt[target]!);
  }

  /** The highest level whose memory fits `bytes` (the longest fitting prefix), or -1. */
  static levelFor(w: Pick<WeightTenant, 'residentAt' | 'ringAt' | 'minLevel' | 'maxLevel'>, bytes: number): number {
    for (let k = w.maxLevel; k >= w.minLevel; k--) if (MemoryPool.weightBytes(w, k) <= bytes) return k;
    return -1;
  }

  /** Attaches the weight store (before the KV layout asks for anything). */
  attachWeights(w: WeightTenant): void {
    this.#weights = w;
    if (this.#freeBytes() < 0) throw new RangeError(`memory pool: the weights at level ${w.level} need more than the pool (${this.poolBytes} bytes) (bug)`);
  }

  attachKv(kv: KvTenant): void {
    this.#kv = kv;
    this.#lastUsed = kv.numUsedChunks;
  }

  /** Adds another tenant whose bytes come out of the pool (see PoolTenant). */
  addTenant(t: PoolTenant): void {
    this.#tenants.push(t);
  }

  // --- KvChunkGrant ---

  get limitChunks(): number {
    return this.#grant;
  }

  /** The most chunks KV could get: everything above the minimum resident set. */
  get maxChunks(): number {
    const w = this.#weightsOrThrow();
    const most = Math.floor((this.poolBytes - MemoryPool.weightBytes(w, w.minLevel) - this.#otherBytes() + this.#freeFloor) / this.chunkBytes);
    return Math.max(0, Math.min(this.#maxKvChunks, most));
  }

  request(numChunks: number, mayDemote = true): boolean {
    const w = this.#weightsOrThrow();
    const want = this.#grant + numChunks;
    if (want > this.#maxKvChunks) return this.#refuse(mayDemote);
    if (this.#fits(w.level, w.targetLevel, want)) return this.#grantTo(want);
    if (!mayDemote) return false;
    if (w.targetLevel !== w.level) {
      w.cancelPromotion();
      this.#events.cancelledPromotions++;
      if (this.#fits(w.level, w.level, want)) return this.#grantTo(want);
    }
    // Demote: the highest level leaving the new grant plus headroom free, else just the grant.
    const room = this.poolBytes - this.#kvExcess(want) - this.#otherBytes();
    // When the headroom cannot be had, straight to the minimum resident set: growth that
    // close to the limit would otherwise demote a step at a time.
    const below = { ...w, maxLevel: w.level - 1 };
    let k = MemoryPool.levelFor(below, room - this.#headroomBytes());
    if (k < 0 && MemoryPool.weightBytes(w, w.minLevel) <= room && w.minLevel < w.level) k = w.minLevel;
    if (k < 0) return this.#refuse(true);
    w.demoteTo(k);
    this.#events.demotions++;
    this.#lastDemotion = { step: this.#step, ms: this.#now() };
    this.#recentDemotions.push(this.#step);
    this.#sample(true);
    return this.#grantTo(want);
  }

  // --- between forward passes ---

  /**
   * Called once per scheduler step, before admission: applies a finished promotion, gives KV
   * chunks that came back to the pool, updates the measurements and may start a promotion.
   */
  betweenPasses(m?: StepMeasure): void {
    const w = this.#weightsOrThrow();
    this.#step++;
    this.#events.steps = this.#step;
    if (m) this.#measure(m);
    if (w.settle()) this.#sample(true);
    this.#shrinkGrant();
    this.#maybePromote();
    this.#sample(false);
  }

  /** Idle engine: settle and promote on wall time; true while there is still work to do. */
  idle(): boolean {
    const w = this.#weightsOrThrow();
    if (w.settle()) this.#sample(true);
    this.#shrinkGrant();
    this.#maybePromote(true);
    this.#sample(false);
    // A promotion reading, or a cooldown to wait out: come back later.
    return w.targetLevel !== w.level || (w.level < w.maxLevel && this.#coolingDown(true));
  }

  // --- values (seconds saved per second, per byte) ---

  /**
   * Value per byte of moving the weights from level a up to level b: the forward pass time
   * the extra resident tensors save (cost model), times passes per second, per byte.
   */
  valueOfWeights(a: number, b: number, passesPerSec: number): number {
    const w = this.#weightsOrThrow();
    const bytes = MemoryPool.weightBytes(w, b) - MemoryPool.weightBytes(w, a);
    if (bytes <= 0) return Infinity;
    return (Math.max(0, w.secPerPassAt(a) - w.secPerPassAt(b)) * passesPerSec) / bytes;
  }

  /**
   * Value per byte of the cached prefixes: prompt tokens reused per second times the compute
   * time a token costs (measured per row), over the bytes the cache alone holds.
   */
  valueOfPrefixes(hitTokensPerSec: number, secPerToken: number, cachedBytes: number): number {
    if (cachedBytes <= 0) return 0;
    return (hitTokensPerSec * secPerToken) / cachedBytes;
  }

  // --- statistics ---

  get events(): PoolEvents {
    const e = this.#events.lastEvictionForWeights;
    return { ...this.#events, ...(e ? { lastEvictionForWeights: { ...e } } : {}) };
  }

  get step(): number {
    return this.#step;
  }

  /** Free bytes of the pool now (negative would be a bug). */
  get freeBytes(): number {
    return this.#freeBytes();
  }

  /** Current headroom a demotion leaves (bytes). */
  get headroomBytes(): number {
    return this.#headroomBytes();
  }

  /** The split over time (at most MAX_SAMPLES, evenly thinned for long runs). */
  history(): PoolSample[] {
    return this.#samples.slice();
  }

  /** The split now. */
  snapshot(): PoolSample {
    return this.#makeSample();
  }

  // --- internals ---

  #weightsOrThrow(): WeightTenant {
    if (!this.#weights) throw new Error('memory pool: no weight store attached (bug)');
    return this.#weights;
  }

  #otherBytes(): number {
    return this.#tenants.reduce((a, t) => a + t.bytes, 0);
  }

  /** Bytes of the pool that KV (plus the runtime reserve beyond what KV leaves of the floor) takes. */
  #kvExcess(grantChunks: number): number {
    return Math.max(0, grantChunks * this.chunkBytes - this.#freeFloor);
  }

  #freeBytes(): number {
    const w = this.#weightsOrThrow();
    return this.poolBytes - MemoryPool.weightBytes(w, w.level, w.targetLevel) - this.#kvExcess(this.#grant) - this.#otherBytes();
  }

  #fits(level: number, target: number, grant: number): boolean {
    return MemoryPool.weightBytes(this.#weightsOrThrow(), level, target) + this.#kvExcess(grant) + this.#otherBytes() <= this.poolBytes;
  }

  #grantTo(chunks: number): boolean {
    this.#grant = chunks;
    this.#events.kvGrants++;
    return true;
  }

  #refuse(counted: boolean): boolean {
    if (counted) this.#events.kvRefusals++;
    return false;
  }

  #headroomBytes(): number {
    const h = this.hysteresis;
    this.#recentDemotions = this.#recentDemotions.filter((s) => this.#step - s < h.cooldownSteps);
    const base = Math.max(h.minHeadroomSlots * this.slotBytes, this.#growth * this.chunkBytes * h.horizonSteps);
    return base * 2 ** Math.min(h.maxBackoff, this.#recentDemotions.length);
  }

  /** Chunks that came back (released sequences, evicted prefixes) leave the grant. */
  #shrinkGrant(): void {
    const used = this.#kv?.numUsedChunks ?? 0;
    this.#grant = Math.max(this.#floorChunks, Math.min(this.#grant, used));
  }

  #measure(m: StepMeasure): void {
    const a = 0.2; // EWMA weight of the newest pass
    const used = this.#kv?.numUsedChunks ?? 0;
    this.#growth = (1 - a) * this.#growth + a * Math.max(0, used - this.#lastUsed);
    this.#lastUsed = used;
    if (m.rows > 0) {
      this.#msPerRow = this.#msPerRow === 0 ? m.ms / m.rows : (1 - a) * this.#msPerRow + (a * m.ms) / m.rows;
      this.#msPerPass = this.#msPerPass === 0 ? m.ms : (1 - a) * this.#msPerPass + a * m.ms;
    }
    if (m.rows >= PROMPT_PASS_ROWS) this.#msPerPromptRow = this.#msPerPromptRow === 0 ? m.ms / m.rows : (1 - a) * this.#msPerPromptRow + (a * m.ms) / m.rows;
    const now = this.#now();
    if (m.prefixHitTokens > 0) {
      this.#hits.push({ ms: now, tokens: m.prefixHitTokens });
      this.#hitTokens += m.prefixHitTokens;
    }
    this.#forgetOldHits(now); // (a server that never promotes keeps the list short too)
  }

  #forgetOldHits(now: number): void {
    while (this.#hits.length > 0 && now - this.#hits[0]!.ms > this.hysteresis.hitWindowMs) this.#hitTokens -= this.#hits.shift()!.tokens;
  }

  /** Prompt tokens the prefix cache served per second over the hit window (or since the pool began, if shorter). */
  get prefixHitTokensPerSec(): number {
    const now = this.#now();
    this.#forgetOldHits(now);
    return (this.#hitTokens * 1000) / Math.max(1000, Math.min(this.hysteresis.hitWindowMs, now - this.#t0));
  }

  /**
   * Within the cooldown of the last demotion or the last promotion: cooldownSteps forward
   * passes; an idle engine (no passes) also ends it after cooldownMs.
   */
  #coolingDown(idle: boolean): boolean {
    const h = this.hysteresis;
    const now = this.#now();
    const since = (e: { step: number; ms: number }) => this.#step - e.step < h.cooldownSteps && (!idle || now - e.ms < h.cooldownMs);
    return since(this.#lastDemotion) || since(this.#lastPromotion);
  }

  /**
   * What a promotion may leave the weights with `grant` KV chunks: the pool minus other tenants
   * and whichever is larger, KV above the floor plus the headroom, or the read cache (KV grows
   * into the read cache first).
   */
  #weightRoom(grant: number): number {
    return this.poolBytes - this.#otherBytes() - Math.max(this.readCacheBytes, this.#kvExcess(grant) + this.#headroomBytes());
  }

  /** The highest level a promotion may go to with `avail` bytes for the weights (= level when none). */
  #promotionTarget(w: WeightTenant, avail = this.#weightRoom(this.#grant)): number {
    let k = w.level;
    for (let j = w.maxLevel; j > w.level; j--) {
      if (MemoryPool.weightBytes(w, w.level, j) <= avail) {
        k = j;
        break;
      }
    }
    return k;
  }

  #maybePromote(idle = false): void {
    const w = this.#weightsOrThrow();
    if (w.targetLevel !== w.level || w.level >= w.maxLevel || this.#coolingDown(idle)) return;
    let k = this.#promotionTarget(w);
    const kv = this.#kv;
    if (k === w.level && kv && kv.numCachedChunks > 0) {
      // Short of memory the prefix cache holds: evict it for the weights if they are worth more.
      const cachedBytes = kv.numCachedChunks * this.chunkBytes;
      const avail = this.#weightRoom(this.#grant - kv.numCachedChunks);
      const j = this.#promotionTarget(w, avail);
      if (j > w.level) {
        const passesPerSec = this.#msPerPass > 0 ? 1000 / this.#msPerPass : 1 / w.secPerPassAt(w.level);
        const hitTokensPerSec = this.prefixHitTokensPerSec;
        const secPerPromptToken = (this.#msPerPromptRow || this.#msPerRow) / 1000;
        const weights = this.valueOfWeights(w.level, j, passesPerSec);
        const prefixes = this.valueOfPrefixes(hitTokensPerSec, secPerPromptToken, cachedBytes);
        if (weights > EVICTION_MARGIN * prefixes) {
          const need = MemoryPool.weightBytes(w, w.level, j) + this.#kvExcess(this.#grant) + this.#otherBytes() + this.#headroomBytes() - this.poolBytes;
          const freed = kv.evictCachedChunks(Math.ceil(need / this.chunkBytes));
          this.#events.prefixChunksEvictedForWeights += freed;
          this.#events.lastEvictionForWeights = { step: this.#step, fromLevel: w.level, toLevel: j, weightsValue: weights, prefixesValue: prefixes, passesPerSec, hitTokensPerSec, secPerPromptToken, cachedBytes, evictedChunks: freed };
          this.#shrinkGrant();
          k = this.#promotionTarget(w);
        }
      }
    }
    if (k > w.level) {
      w.promoteTo(k);
      this.#events.promotions++;
      this.#lastPromotion = { step: this.#step, ms: this.#now() };
      this.#sample(true);
    }
  }

  #makeSample(): PoolSample {
    const w = this.#weightsOrThrow();
    const sw = this.sampleWeights?.() ?? { residentBytes: w.residentAt[w.level]!, ringBytes: w.ringAt[w.level]!, loadingBytes: 0, streamedBytesPerPass: 0 };
    const skv = this.sampleKv?.() ?? { liveBytes: 0, cachedBytes: 0 };
    return {
      t: this.#now() - this.#t0,
      step: this.#step,
      level: w.level,
      residentBytes: sw.residentBytes,
      ringBytes: sw.ringBytes,
      loadingBytes: sw.loadingBytes,
      kvLiveBytes: skv.liveBytes,
      kvCachedBytes: skv.cachedBytes,
      otherBytes: this.#otherBytes(),
      freeBytes: this.#freeBytes(),
      streamedBytesPerPass: sw.streamedBytesPerPass,
    };
  }

  /** Records a sample: always on an event, else at most every 100 ms (thinned when full). */
  #sample(event: boolean): void {
    const now = this.#now();
    if (!event && now - this.#lastSampleMs < 100) return;
    this.#lastSampleMs = now;
    if (!event && this.#sampleCount++ % this.#sampleEvery !== 0) return;
    this.#samples.push(this.#makeSample());
    if (this.#samples.length >= MAX_SAMPLES) {
      this.#samples = this.#samples.filter((_, i) => i % 2 === 0);
      this.#sampleEvery *= 2;
    }
  }
}
