/**
 * The expert cache's bookkeeping for Mixture-of-Experts models (pure policy: no memory, no
 * I/O). An expert is the unit of streaming: expert e of layer l is one contiguous byte range in
 * each of blk.l.ffn_{gate,up,down}_exps, and it lives in one slot of the cache or on disk. This
 * file decides which (layer, expert) sits in which slot, which slots are pinned (computing, or
 * being read), and which unpinned slot a missing expert takes.
 *
 *   global:     one pool of slots for every layer; a layer takes what its experts need.
 *   per-layer:  layer l owns slots [start_l, start_l + slots_l); its experts never leave it.
 *
 * NOTE: eviction policies (measured in bench/expert-policies; the planner picks global vs
 * per-layer, the policy is an option):
 *  - 'lru': the least recently used expert (mixtral-offloading, arXiv 2312.17238).
 *  - 'lfu': the expert routed to least often, counts aged (halved every `halfLifeSteps` layer
 *    steps), ties by LRU; keeps skewed-popular experts (arXiv 2505.16056).
 *  - 'least-stale' (after SpecMD's Least-Stale, arXiv 2602.03921): a forward pass walks the
 *    layers in order, so in a global cache an expert's next use is at best when its layer comes
 *    round again. The victim is the expert whose next use is expected farthest away:
 *        layers ahead of the current one (l + 1, l + 2, ...) are needed soonest; the layers just
 *        computed (l, l - 1, ...) are needed last; within that, rarely routed experts later.
 *    expected distance = ((expertLayer - currentLayer - 1) mod L) + L * (1 / p - 1), with p the
 *    chance it is routed to at its layer's next step: its aged routing frequency (prior k / E),
 *    or for a "fresh" expert (its layer's last step used it) at least the measured rate at which
 *    fresh experts are routed to again. LRU in a global cache evicts the next layers' experts
 *    just before they are needed ("collision misses"); LFU keeps once-popular experts that went
 *    stale. scripts/expert-policies.js, Qwen3-30B-A3B shapes, global cache holding 25% / 12.5%
 *    of the experts, hit rates LRU / LFU / least-stale: uniform routing 22.7 / 24.0 / 24.7% and
 *    12.1 / 11.7 / 12.3%; Zipf(1) popularity 56.9 / 67.0 / 66.6% and 36.2 / 53.2 / 50.4%; sticky
 *    (30% reuse of the last token's experts) 44.3 / 30.9 / 46.2% and 35.8 / 16.5 / 37.3%. Per
 *    layer, uniform routing hits slots / E under every policy.
 * Slots holding an expert the current step still needs are never victims (`protect`), nor are
 * pinned slots (in use, or with a read in flight).
 */

/** Eviction policy names. */
export type ExpertPolicyName = 'lru' | 'lfu' | 'least-stale';
export const EXPERT_POLICIES: readonly ExpertPolicyName[] = ['lru', 'lfu', 'least-stale'];

/** Options of an ExpertCache. */
export interface ExpertCacheOptions {
  numLayers: number;
  numExperts: number;
  /** Experts each row is routed to (k); the prior of least-stale's frequency estimate. */
  numExpertsUsed: number;
  /** A number: one global pool of that many slots. An array: slots[l] slots owned by layer l. */
  slots: number | readonly number[];
  policy?: ExpertPolicyName;
  /** Routing counts halve every this many layer steps (default 64 passes over all layers). */
  halfLifeSteps?: number;
}

/** A (layer, expert) pair. */
export interface ExpertKey {
  layer: number;
  expert: number;
}

/** Which expert slots one layer step must not evict (experts the step still needs). */
export type ProtectFn = (layer: number, expert: number) => boolean;

export class ExpertCache {
  readonly numLayers: number;
  readonly numExperts: number;
  readonly numSlots: number;
  readonly mode: 'global' | 'per-layer';
  readonly policy: ExpertPolicyName;
  /** First slot of each layer's partition (per-layer), [numLayers + 1]; global: [0, numSlots]. */
  readonly #start: Int32Array;
  /** Key (layer * numExperts + expert) held by each slot, -1 = free. [numSlots] */
  readonly #slotKey: Int32Array;
  /** Slot holding each key, -1 = not cached. [numLayers * numExperts] */
  readonly #keySlot: Int32Array;
  /** Pin count of each slot. [numSlots] */
  readonly #pins: Int32Array;
  /** Clock value of each slot's last use. [numSlots] */
  readonly #lastUse: Float64Array;
  /** Aged routing count of each key, and of each layer's steps. */
  readonly #uses: Float64Array;
  readonly #layerSteps: Float64Array;
  readonly #prior: number;
  /** Steps each layer has run, and the step of each key's last routing use (-1 never). */
  readonly #stepOf: Int32Array;
  readonly #lastStep: Int32Array;
  /** Aged counts: experts of a layer's step that its next step routed to again, of all. */
  #reused = 0;
  #reuseChances = 0;
  readonly #halfLife: number;
  #clock = 0;
  #currentLayer = 0;
  #sinceAging = 0;

  constructor(o: ExpertCacheOptions) {
    const { numLayers, numExperts } = o;
    if (!(Number.isInteger(numLayers) && numLayers > 0 && Number.isInteger(numExperts) && numExperts > 0)) {
      throw new RangeError(`ExpertCache: numLayers and numExperts must be positive integers, got ${numLayers}, ${numExperts}`);
    }
    this.numLayers = numLayers;
    this.numExperts = numExperts;
    this.policy = o.policy ?? 'least-stale';
    if (!EXPERT_POLICIES.includes(this.policy)) throw new RangeError(`ExpertCache: unknown policy '${String(this.policy)}'`);
    if (typeof o.slots === 'number') {
      if (!(Number.isInteger(o.slots) && o.slots >= 1)) throw new RangeError(`ExpertCache: slots must be a positive integer, got ${o.slots}`);
      this.mode = 'global';
      this.numSlots = o.slots;
      this.#start = Int32Array.of(0, o.slots);
    } else {
      if (o.slots.length !== numLayers) throw new RangeError(`ExpertCache: ${o.slots.length} per-layer slot counts for ${numLayers} layers`);
      this.mode = 'per-layer';
      this.#start = new Int32Array(numLayers + 1);
      o.slots.forEach((n, l) => {
        if (!(Number.isInteger(n) && n >= 1 && n <= numExperts)) throw new RangeError(`ExpertCache: layer ${l} slots must be in [1, ${numExperts}], got ${n}`);
        this.#start[l + 1] = this.#start[l]! + n;
      });
      this.numSlots = this.#start[numLayers]!;
    }
    this.#slotKey = new Int32Array(this.numSlots).fill(-1);
    this.#keySlot = new Int32Array(numLayers * numExperts).fill(-1);
    this.#pins = new Int32Array(this.numSlots);
    this.#lastUse = new Float64Array(this.numSlots);
    this.#uses = new Float64Array(numLayers * numExperts);
    this.#layerSteps = new Float64Array(numLayers);
    this.#prior = Math.min(1, Math.max(1, o.numExpertsUsed) / numExperts);
    this.#halfLife = o.halfLifeSteps ?? 64 * numLayers;
    this.#stepOf = new Int32Array(numLayers);
    this.#lastStep = new Int32Array(numLayers * numExperts).fill(-1);
  }

  /** Slots of `layer`'s partition: [start, end). */
  partition(layer: number): [number, number] {
    return this.mode === 'global' ? [0, this.numSlots] : [this.#start[layer]!, this.#start[layer + 1]!];
  }

  /** The slot holding (layer, expert), or -1. */
  find(layer: number, expert: number): number {
    return this.#keySlot[layer * this.numExperts + expert]!;
  }

  /** The expert held by `slot`, or null for a free slot. */
  keyOf(slot: number): ExpertKey | null {
    const k = this.#slotKey[slot]!;
    return k < 0 ? null : { layer: Math.floor(k / this.numExperts), expert: k % this.numExperts };
  }

  /** Experts of `layer` in the cache now. */
  countLayer(layer: number): number {
    let n = 0;
    const base = layer * this.numExperts;
    for (let e = 0; e < this.numExperts; e++) if (this.#keySlot[base + e]! >= 0) n++;
    return n;
  }

  /**
   * Starts `layer`'s step: advances the clock, records which experts the step routes to (the
   * frequency statistics of 'lfu' and 'least-stale'), and ages the counts.
   */
  beginLayer(layer: number, routed: ArrayLike<number>): void {
    this.#currentLayer = layer;
    this.#clock++;
    this.#layerSteps[layer]! += 1;
    const base = layer * this.numExperts;
    // How often an expert of a layer's last step is routed to again at its next step (temporal
    // locality; k / E for uniform routing, more for real models' consecutive tokens).
    const prev = this.#stepOf[layer]!;
    let prevCount = 0;
    for (let e = 0; e < this.numExperts; e++) if (prev > 0 && this.#lastStep[base + e] === prev) prevCount++;
    const step = ++this.#stepOf[layer]!;
    for (let i = 0; i < routed.length; i++) {
      const key = base + routed[i]!;
      this.#uses[key]! += 1;
      if (prev > 0 && this.#lastStep[key] === prev) this.#reused++;
      this.#lastStep[key] = step;
    }
    this.#reuseChances += prevCount;
    if (++this.#sinceAging >= this.#halfLife) {
      this.#sinceAging = 0;
      for (let i = 0; i < this.#uses.length; i++) this.#uses[i]! *= 0.5;
      for (let i = 0; i < this.#layerSteps.length; i++) this.#layerSteps[i]! *= 0.5;
      this.#reused *= 0.5;
      this.#reuseChances *= 0.5;
    }
  }

  /** Marks the expert in `slot` used now (recency). */
  touch(slot: number): void {
    this.#lastUse[slot] = this.#clock;
  }

  pin(slot: number): void {
    this.#pins[slot]!++;
  }

  unpin(slot: number): void {
    if (this.#pins[slot]! <= 0) throw new Error(`ExpertCache: slot ${slot} is not pinned`);
    this.#pins[slot]!--;
  }

  pinned(slot: number): boolean {
    return this.#pins[slot]! > 0;
  }

  /**
   * A slot for (layer, expert), which must not be cached yet: a free slot of its partition,
   * else the policy's victim among unpinned slots whose expert `protect` does not claim. The
   * victim is forgotten, the slot now holds (layer, expert) and is pinned once (the caller
   * reads the expert in and unpins). Returns -1 when every candidate is pinned or protected.
   */
  assign(layer: number, expert: number, protect?: ProtectFn): number {
    const key = layer * this.numExperts + expert;
    if (this.#keySlot[key]! >= 0) throw new Error(`ExpertCache: expert ${expert} of layer ${layer} is already in slot ${this.#keySlot[key]}`);
    const [start, end] = this.partition(layer);
    let best = -1;
    let bestScore = -Infinity;
    for (let s = start; s < end; s++) {
      const k = this.#slotKey[s]!;
      if (k < 0) {
        best = s;
        break;
      }
      if (this.#pins[s]! > 0) continue;
      const l = Math.floor(k / this.numExperts);
      if (protect?.(l, k % this.numExperts)) continue;
      const score = this.#evictionScore(s, k, l);
      if (score > bestScore) {
        bestScore = score;
        best = s;
      }
    }
    if (best < 0) return -1;
    const old = this.#slotKey[best]!;
    if (old >= 0) this.#keySlot[old] = -1;
    this.#slotKey[best] = key;
    this.#keySlot[key] = best;
    this.#pins[best] = 1;
    this.#lastUse[best] = this.#clock;
    return best;
  }

  /** Forgets the expert in `slot` (a failed read); the slot must be pinned once, by the caller. */
  drop(slot: number): void {
    const k = this.#slotKey[slot]!;
    if (k >= 0) this.#keySlot[k] = -1;
    this.#slotKey[slot] = -1;
  }

  /** Higher = better victim. */
  #evictionScore(slot: number, key: number, layer: number): number {
    // Recency as a tie-breaker everywhere: older is a better victim (scaled below 1).
    const age = (this.#clock - this.#lastUse[slot]!) / (this.#clock + 1);
    if (this.policy === 'lru') return age;
    const steps = this.#layerSteps[layer]!;
    if (this.policy === 'lfu') return -this.#uses[key]! + age * 1e-3;
    // least-stale: expected layer steps until the next use. p = the chance it is routed to at
    // its layer's next step: its aged routing frequency, or, when its layer's last step used
    // it (fresh), at least the measured reuse rate of such experts.
    const L = this.numLayers;
    let p = (this.#uses[key]! + this.#prior) / (steps + 1);
    if (this.#lastStep[key] === this.#stepOf[layer] && this.#reuseChances > 0) p = Math.max(p, (this.#reused + this.#prior) / (this.#reuseChances + 1));
    const ahead = (((layer - this.#currentLayer - 1) % L) + L) % L;
    return ahead + L * (1 / Math.min(1, p) - 1) + age * 1e-3;
  }
}
