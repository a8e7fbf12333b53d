/**
 * Contiguous KV layout, the llama.cpp way: every sequence owns a slot preallocated for
 * maxContext tokens in every layer, whatever its real length. It is the baseline the vTensor
 * layout is measured against, and the layout that works everywhere (plain JS memory).
 *
 *   slot s (one ArrayBuffer, allocated on first use and kept, like llama.cpp's KV buffer):
 *   +-----------+-----------+-----------+-----------+-----+
 *   | L0 K      | L0 V      | L1 K      | L1 V      | ... |   each [maxContext, kvDim] f16
 *   +-----------+-----------+-----------+-----------+-----+
 *
 * Number of slots = maxSequences, or capacityBytes / slotBytes. ensure() never allocates.
 *
 * Prefix cache (minimal, by copying): release(seq, true) parks the slot with its tokens;
 * matchPrefix() copies the longest matching parked prefix into a fresh slot (or hands the
 * parked slot itself over when no slot is free). Parked slots are evicted LRU when a new
 * sequence needs a slot.
 */
import type { KvShape, SeqId } from './cache.js';
import type { KvManager, KvStats, PrefixMatch } from './manager.js';
import {
  F16_BYTES,
  UnknownSequenceError,
  bytesPerToken,
  checkTokenCount,
  commonPrefixLength,
  validateShape,
} from './shape.js';

/** Options of the contiguous layout. */
export interface ContiguousKvOptions {
  shape: KvShape;
  /** KV share of the memory budget; decides the number of slots unless maxSequences is given. */
  capacityBytes: number;
  /** Number of slots (concurrent sequences + parked prefixes). Default: capacity / slot bytes. */
  maxSequences?: number;
}

interface Slot {
  buffer: ArrayBuffer | null;
  keys: Uint16Array[]; // per layer, [maxContext, kvDim]
  values: Uint16Array[]; // per layer, [maxContext, kvDim]
}

interface Sequence {
  slot: number;
  tokens: Uint32Array; // committed tokens
  ensured: number; // positions the owner made room for
}

interface Parked {
  slot: number;
  tokens: Uint32Array;
  lastUse: number;
}

/** Max-context preallocation per sequence (see file comment). */
export class ContiguousKvManager implements KvManager {
  readonly layout = 'contiguous';
  readonly shape: KvShape;
  readonly slotBytes: number;
  readonly numSlots: number;
  private readonly slots: Slot[] = [];
  private readonly freeSlots: number[] = [];
  private readonly seqs = new Map<SeqId, Sequence>();
  private parked: Parked[] = [];
  private nextSeq = 1;
  private clock = 0;
  private prefixHits = 0;
  private prefixMisses = 0;
  private prefixTokensReused = 0;
  private disposed = false;

  constructor(options: ContiguousKvOptions) {
    validateShape(options.shape);
    this.shape = { ...options.shape };
    this.slotBytes = this.shape.maxContext * bytesPerToken(this.shape);
    const n = options.maxSequences ?? Math.floor(options.capacityBytes / this.slotBytes);
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`number of KV slots must be >= 0, got ${n}`);
    this.numSlots = n;
    for (let i = 0; i < n; i++) {
      this.slots.push({ buffer: null, keys: [], values: [] });
      this.freeSlots.push(n - 1 - i); // pop() hands out slot 0 first
    }
  }

  keys(seq: SeqId, layer: number): Uint16Array {
    return this.slotOf(seq, layer).keys[layer]!;
  }

  values(seq: SeqId, layer: number): Uint16Array {
    return this.slotOf(seq, layer).values[layer]!;
  }

  createSequence(): SeqId | null {
    const slot = this.acquireSlot(null);
    if (slot < 0) return null;
    return this.addSequence(slot, new Uint32Array(0));
  }

  ensure(seq: SeqId, numTokens: number): boolean {
    const s = this.get(seq);
    checkTokenCount('ensure: numTokens', numTokens, this.shape.maxContext);
    if (numTokens > s.ensured) s.ensured = numTokens; // preallocated: always room
    return true;
  }

  prepare(seq: SeqId, numTokens: number): boolean {
    return this.ensure(seq, numTokens);
  }

  length(seq: SeqId): number {
    return this.get(seq).tokens.length;
  }

  commit(seq: SeqId, tokens: Uint32Array): void {
    const s = this.get(seq);
    checkTokenCount('commit: tokens.length', tokens.length, s.ensured);
    s.tokens = tokens.slice();
  }

  truncate(seq: SeqId, numTokens: number): void {
    const s = this.get(seq);
    checkTokenCount('truncate: numTokens', numTokens, this.shape.maxContext);
    if (numTokens < s.tokens.length) s.tokens = s.tokens.slice(0, numTokens);
  }

  fork(parent: SeqId, numTokens: number): SeqId | null {
    const p = this.get(parent);
    checkTokenCount('fork: numTokens', numTokens, p.tokens.length);
    const slot = this.acquireSlot(null);
    if (slot < 0) return null;
    this.copyPositions(p.slot, slot, numTokens);
    return this.addSequence(slot, p.tokens.slice(0, numTokens));
  }

  release(seq: SeqId, cachePrefix = false): void {
    const s = this.get(seq);
    this.seqs.delete(seq);
    if (!cachePrefix || s.tokens.length === 0) {
      this.freeSlots.push(s.slot);
      return;
    }
    // Keep one parked slot per prefix chain: a parked prefix of the new tokens is redundant.
    for (const p of this.parked) {
      if (commonPrefixLength(p.tokens, s.tokens) === s.tokens.length) {
        p.lastUse = ++this.clock; // already covered by a longer (or equal) parked prefix
        this.freeSlots.push(s.slot);
        return;
      }
    }
    this.parked = this.parked.filter((p) => {
      const redundant = commonPrefixLength(p.tokens, s.tokens) === p.tokens.length;
      if (redundant) this.freeSlots.push(p.slot);
      return !redundant;
    });
    this.parked.push({ slot: s.slot, tokens: s.tokens, lastUse: ++this.clock });
  }

  matchPrefix(tokens: Uint32Array): PrefixMatch | null {
    let best: Parked | null = null;
    let bestLen = 0;
    for (const p of this.parked) {
      const n = Math.min(commonPrefixLength(p.tokens, tokens), tokens.length - 1);
      if (n > bestLen) {
        best = p;
        bestLen = n;
      }
    }
    if (best === null) {
      this.prefixMisses++;
      return null;
    }
    best.lastUse = ++this.clock;
    let slot = this.acquireSlot(best);
    if (slot >= 0) {
      this.copyPositions(best.slot, slot, bestLen);
    } else {
      // No other slot: the new sequence takes the parked slot itself (the prefix leaves the cache).
      slot = best.slot;
      this.parked = this.parked.filter((p) => p !== best);
    }
    this.prefixHits++;
    this.prefixTokensReused += bestLen;
    const seq = this.addSequence(slot, tokens.slice(0, bestLen));
    return { seq, numTokens: bestLen };
  }

  clearPrefixCache(): void {
    for (const p of this.parked) this.freeSlots.push(p.slot);
    this.parked = [];
  }

  /** Slots neither held by a sequence nor by a parked prefix (for leak checks). */
  numFreeSlots(): number {
    return this.freeSlots.length;
  }

  stats(): KvStats {
    let allocated = 0;
    for (const slot of this.slots) if (slot.buffer !== null) allocated++;
    let liveTokens = 0;
    for (const s of this.seqs.values()) liveTokens += s.tokens.length;
    const mappedBytes = allocated * this.slotBytes;
    const liveBytes = liveTokens * bytesPerToken(this.shape);
    return {
      layout: this.layout,
      mappedBytes,
      liveBytes,
      sharedBytes: 0,
      capacityBytes: this.numSlots * this.slotBytes,
      fragmentationPercent: mappedBytes === 0 ? 0 : ((mappedBytes - liveBytes) / mappedBytes) * 100,
      numSequences: this.seqs.size,
      numMappings: allocated,
      mapMsOnCriticalPath: 0,
      mapMsAhead: 0,
      prefixHits: this.prefixHits,
      prefixMisses: this.prefixMisses,
      prefixTokensReused: this.prefixTokensReused,
      activeBytes: this.seqs.size * this.slotBytes,
      blockTokens: this.shape.maxContext,
      numBlocks: this.numSlots,
    };
  }

  dispose(): void {
    this.disposed = true;
    this.seqs.clear();
    this.parked = [];
    for (const slot of this.slots) {
      slot.buffer = null;
      slot.keys = [];
      slot.values = [];
    }
  }

  /** A free slot, evicting the least recently used parked prefix (other than `keep`) if needed; -1 if none. */
  private acquireSlot(keep: Parked | null): number {
    if (this.disposed) throw new Error('ContiguousKvManager used after dispose()');
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      let victim: Parked | null = null;
      for (const p of this.parked) if (p !== keep && (victim === null || p.lastUse < victim.lastUse)) victim = p;
      if (victim === null) return -1;
      this.parked = this.parked.filter((p) => p !== victim);
      slot = victim.slot;
    }
    this.materialize(slot);
    return slot;
  }

  private materialize(index: number): void {
    const slot = this.slots[index]!;
    if (slot.buffer !== null) return;
    const { numLayers, kvDim, maxContext } = this.shape;
    const tensorElems = maxContext * kvDim;
    slot.buffer = new ArrayBuffer(this.slotBytes);
    for (let l = 0; l < numLayers; l++) {
      slot.keys.push(new Uint16Array(slot.buffer, (2 * l) * tensorElems * F16_BYTES, tensorElems));
      slot.values.push(new Uint16Array(slot.buffer, (2 * l + 1) * tensorElems * F16_BYTES, tensorElems));
    }
  }

  private copyPositions(from: number, to: number, numTokens: number): void {
    const n = numTokens * this.shape.kvDim;
    const a = this.slots[from]!;
    const b = this.slots[to]!;
    for (let l = 0; l < this.shape.numLayers; l++) {
      b.keys[l]!.set(a.keys[l]!.subarray(0, n));
      b.values[l]!.set(a.values[l]!.subarray(0, n));
    }
  }

  private addSequence(slot: number, tokens: Uint32Array): SeqId {
    const id = this.nextSeq++;
    this.seqs.set(id, { slot, tokens, ensured: tokens.length });
    return id;
  }

  private get(seq: SeqId): Sequence {
    const s = this.seqs.get(seq);
    if (s === undefined) throw new UnknownSequenceError(seq);
    return s;
  }

  private slotOf(seq: SeqId, layer: number): Slot {
    const s = this.get(seq);
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.shape.numLayers) {
      throw new RangeError(`layer must be in [0, ${this.shape.numLayers}), got ${layer}`);
    }
    return this.slots[s.slot]!;
  }
}
