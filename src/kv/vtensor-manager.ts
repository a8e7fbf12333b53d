/**
 * VTensorKvManager: the vTensor KV layout. Each sequence is a VTensor (one reservation, every
 * layer's K and V virtually contiguous); physical chunks come from one ChunkPool sized from the
 * byte budget and are mapped as sequences grow.
 *
 * NOTE (ownership and copy-on-write):
 * - Every chunk has a reference count: one per sequence slot it is mapped in, one per prefix
 *   cache block holding it. It goes back to the pool (pages discarded) at zero.
 * - A sequence only ever writes positions [length, ensured). ensure()/prepare() make the slots
 *   covering that range PRIVATE (refcount 1): unmapped slots get fresh chunks, shared ones are
 *   copied first (this only happens after truncate() cut into a shared block). So a child
 *   never changes its parent, nor a sequence the prefix cache, and vice versa.
 * - fork() and matchPrefix() share the full chunks of the prefix and copy the partial tail.
 *   matchPrefix() on a short pool (no free chunks for the copy, even after evicting other
 *   cached prefixes) HANDS the tail block over when the cache is its only holder: the block
 *   (and what is cached below it) leaves the cache and its chunks become the sequence's,
 *   private, so the sequence may write past the match. Keeping the block in the cache
 *   copy-on-write would not help: the sequence writes into that chunk at once (its next token
 *   sits there), so the copy would be due in the very next ensure(). This is what the
 *   contiguous layout does with a parked slot; releasing the sequence with cachePrefix puts
 *   the (longer) prefix back.
 * - Running short: evict LRU prefix-cache blocks, then report false / null. Never throws.
 *   Eviction happens only when it makes enough room: a request that fails anyway leaves the
 *   cache as it was. The blocks that waiting requests will hit (as the last keepCached() was
 *   told) are evicted last, after every other evictable block.
 *
 * Timing: ensure() is on the critical path (the forward pass waits for it); prepare() is the
 * "background" extension of vTensor: the scheduler calls it for the next step right after
 * issuing the current step's forward pass, so the mmap work overlaps compute. stats() reports
 * both times; mapMsOnCriticalPath is what prepare() did not hide.
 */
import type { KvShape, SeqId } from './cache.js';
import type { KvManager, KvStats, PrefixMatch, RoomCount, SequenceEnd } from './manager.js';
import type { KvChunkGrant } from './grant.js';
import { ChunkPool } from '../native/vmem.js';
import { ChunkRadixCache, type RadixNode } from './radix.js';
import { chooseChunkBytes } from './chunk-size.js';
import { layerChunks } from './pool-size.js';
import { VTensor, vtensorGeometry, type VTensorGeometry } from './vtensor.js';
import { UnknownSequenceError, bytesPerToken, checkLayer, checkTokenCount, rowBytes, validateShape } from './shape.js';

/** Options of the vTensor layout. */
export interface VTensorKvOptions {
  shape: KvShape;
  /** KV share of the memory budget: the pool holds floor(capacityBytes / chunkBytes) chunks. */
  capacityBytes: number;
  /**
   * Chunk size, a multiple of 4096 and of kvDim * 2. Default: chooseChunkBytes() (64 KiB, or
   * larger when the pool would need more mappings than vm.max_map_count allows); 2 MiB with hugePages.
   */
  chunkBytes?: number;
  /** Back the pool with huge pages when available (see ChunkPool.hugePages for the outcome). */
  hugePages?: boolean;
  /** Maximum number of live sequences (address space only; default unlimited). */
  maxSequences?: number;
  /** Extra slots ensure() maps beyond need when chunks are free (best effort; default 0). */
  lookaheadChunks?: number;
  /**
   * prepare() hands its new mappings to the native background mapper thread, so the mmap work
   * (page zeroing, page tables) overlaps whatever the JS thread does next, e.g. a synchronous
   * forward pass. Default true. The next ensure() (or any other call) waits for them.
   */
  backgroundMapping?: boolean;
  /**
   * Elastic capacity: the chunks this layout may hold come from a memory pool shared with the
   * weights (see grant.ts); capacityBytes is then the address-space ceiling of the chunk pool.
   */
  grant?: KvChunkGrant;
  /**
   * Sliding-window layers (shape.layerWindows): unmap the chunks a local layer's window has
   * left behind and give them back to the pool. Default true; false keeps every chunk (the
   * logits are the same either way: the attention kernel never reads behind a window).
   */
  windowUnmap?: boolean;
  /**
   * Most rows one forward pass adds to a sequence (the engine's batch rows). With sliding-window
   * layers, countRoom() then counts a local layer's K/V as its window plus one pass
   * (pool-size.ts layerChunks) instead of every token. Default unbounded.
   */
  maxRowsPerPass?: number;
}

interface Sequence {
  vt: VTensor;
  tokens: Uint32Array; // committed tokens
  /** Per tensor: slots below this are unmapped already (sliding-window layers; null without). */
  dropped: Int32Array | null;
}

/** vTensor KV manager (see file comment). */
export class VTensorKvManager implements KvManager {
  readonly layout = 'vtensor';
  readonly shape: KvShape;
  readonly pool: ChunkPool;
  readonly geometry: VTensorGeometry;
  private readonly refs: Int32Array; // holders per chunk
  private readonly seqMaps: Int32Array; // sequence mappings per chunk
  private readonly cache: ChunkRadixCache;
  private readonly seqs = new Map<SeqId, Sequence>();
  private readonly maxSequences: number;
  private readonly lookaheadChunks: number;
  private readonly backgroundMapping: boolean;
  private readonly grant: KvChunkGrant | undefined;
  /** Per tensor: its layer's sliding window (0 = global); null when nothing is unmapped. */
  private readonly tensorWindows: Int32Array | null;
  private readonly maxRowsPerPass: number;
  readonly mapsPerPass: boolean;
  private nextSeq = 1;
  private mapMsCritical = 0;
  private mapMsAhead = 0;
  /** Mappings the OS refused (vm.max_map_count); reported as "short", counted here. */
  numMapFailures = 0;
  private prefixHits = 0;
  private prefixMisses = 0;
  private prefixTokensReused = 0;
  /** Cached blocks waiting requests will hit (the last keepCached()): evicted after all others. */
  private wantedNodes: ReadonlySet<RadixNode> = new Set();

  constructor(options: VTensorKvOptions) {
    validateShape(options.shape);
    this.shape = { ...options.shape };
    const chunkBytes = options.chunkBytes ?? (options.hugePages ? 2 << 20 : chooseChunkBytes(this.shape, options.capacityBytes));
    this.geometry = vtensorGeometry(this.shape, chunkBytes);
    const capacityChunks = Math.floor(options.capacityBytes / chunkBytes);
    if (capacityChunks < 1) {
      throw new RangeError(`KV capacity ${options.capacityBytes} B holds no ${chunkBytes} B chunk; raise the KV budget`);
    }
    this.pool = new ChunkPool({ chunkBytes, capacityChunks, hugePages: options.hugePages ?? false });
    if (!this.pool.sharing) {
      this.pool.dispose();
      throw new Error(`the vTensor layout needs shared memory mappings (memfd); this platform has '${this.pool.backing}'; use the contiguous layout`);
    }
    this.refs = new Int32Array(capacityChunks);
    this.seqMaps = new Int32Array(capacityChunks);
    this.maxSequences = options.maxSequences ?? Infinity;
    this.maxRowsPerPass = options.maxRowsPerPass ?? Infinity;
    if (!(this.maxRowsPerPass >= 1)) throw new RangeError(`maxRowsPerPass must be >= 1, got ${this.maxRowsPerPass}`);
    this.lookaheadChunks = options.lookaheadChunks ?? 0;
    this.backgroundMapping = options.backgroundMapping ?? true;
    this.grant = options.grant;
    const w = this.shape.layerWindows;
    this.tensorWindows =
      options.windowUnmap !== false && w !== undefined && w.some((x) => x > 0)
        ? Int32Array.from({ length: this.geometry.numTensors }, (_, t) => w[t >> 1]!)
        : null;
    this.mapsPerPass = this.tensorWindows !== null && Number.isFinite(this.maxRowsPerPass);
    this.cache = new ChunkRadixCache(this.geometry.tokensPerChunk, this.geometry.numTensors, {
      ref: (c) => this.refs[c]!++,
      unref: (c) => this.unref(c),
    });
  }

  keys(seq: SeqId, layer: number): Uint16Array {
    return this.get(seq).vt.keys[checkLayer(layer, this.shape.numLayers)]!;
  }

  values(seq: SeqId, layer: number): Uint16Array {
    return this.get(seq).vt.values[checkLayer(layer, this.shape.numLayers)]!;
  }

  createSequence(): SeqId | null {
    if (this.seqs.size >= this.maxSequences) return null;
    const vt = this.newVTensor();
    return vt === null ? null : this.add(vt, new Uint32Array(0));
  }

  ensure(seq: SeqId, numTokens: number): boolean {
    const s = this.get(seq);
    const t0 = performance.now();
    this.settle(null); // (timed below with the rest of ensure())
    const ok = this.makeRoom(s, numTokens, true);
    this.mapMsCritical += performance.now() - t0;
    return ok;
  }

  prepare(seq: SeqId, numTokens: number): boolean {
    const s = this.get(seq);
    const t0 = performance.now();
    this.settle(null); // (timed below with the rest of prepare())
    const ok = this.makeRoom(s, numTokens, false);
    this.mapMsAhead += performance.now() - t0;
    return ok;
  }

  length(seq: SeqId): number {
    return this.get(seq).tokens.length;
  }

  commit(seq: SeqId, tokens: Uint32Array): void {
    const s = this.get(seq);
    checkTokenCount('commit: tokens.length', tokens.length, Math.min(this.shape.maxContext, s.vt.numSlots * this.geometry.tokensPerChunk));
    this.checkWindowsHeld(s.vt, tokens.length, 'commit');
    s.tokens = tokens.slice();
    this.dropBehindWindows(s);
  }

  truncate(seq: SeqId, numTokens: number): void {
    const s = this.get(seq);
    this.settle(false);
    checkTokenCount('truncate: numTokens', numTokens, this.shape.maxContext);
    if (numTokens < s.tokens.length) this.checkWindowsHeld(s.vt, numTokens, 'truncate');
    if (numTokens < s.tokens.length) s.tokens = s.tokens.slice(0, numTokens);
    // Slots wholly past numTokens go (a shared partial slot is made private by the next ensure()).
    this.shrinkTo(s.vt, Math.ceil(numTokens / this.geometry.tokensPerChunk));
  }

  fork(parent: SeqId, numTokens: number): SeqId | null {
    const p = this.get(parent);
    this.settle(false);
    checkTokenCount('fork: numTokens', numTokens, p.tokens.length);
    this.checkWindowsHeld(p.vt, numTokens, 'fork');
    if (this.seqs.size >= this.maxSequences) return null;
    const tpc = this.geometry.tokensPerChunk;
    const numFull = Math.floor(numTokens / tpc);
    const tailTokens = numTokens - numFull * tpc;
    if (tailTokens > 0 && !this.reclaim(this.geometry.numTensors)) return null;
    const vt = this.newVTensor();
    if (vt === null || !this.buildFrom(vt, (slot, t) => p.vt.chunkAt(t, slot), numFull, tailTokens)) return null;
    return this.add(vt, p.tokens.slice(0, numTokens));
  }

  release(seq: SeqId, cachePrefix = false): void {
    const s = this.get(seq);
    this.settle(false);
    this.seqs.delete(seq);
    if (cachePrefix && s.tokens.length > 0) this.cache.insert(s.tokens, (slot, t) => s.vt.chunkAt(t, slot));
    this.discard(s.vt);
  }

  matchPrefix(tokens: Uint32Array): PrefixMatch | null {
    this.settle(false);
    const maxTokens = Math.min(tokens.length - 1, this.shape.maxContext);
    const m = maxTokens > 0 ? this.cache.match(tokens, maxTokens) : null;
    if (m === null || m.numTokens === 0 || this.seqs.size >= this.maxSequences) {
      this.prefixMisses++;
      return null;
    }
    let { partial, partialTokens } = m;
    let handOver = false;
    if (partial !== null) {
      // The tail is copied: it needs fresh chunks. Keep the matched blocks out of eviction.
      const keep = new Set<RadixNode>([...m.path, partial]);
      if (!this.reclaim(this.geometry.numTensors, keep)) {
        // Short: take the block itself if nobody but the cache holds it, else full blocks only.
        if (partial.chunks.every((c) => c < 0 || this.refs[c] === 1)) handOver = true;
        else {
          partial = null;
          partialTokens = 0;
        }
      }
    }
    const numTokens = m.path.length * this.geometry.tokensPerChunk + partialTokens;
    const source = (slot: number, t: number) => (slot < m.path.length ? m.path[slot]!.chunks[t]! : partial!.chunks[t]!);
    // A cached prefix keeps only the end of its sliding windows: a shorter match whose windows
    // reach chunks given back is a miss (recomputed), not a wrong answer.
    if (numTokens === 0 || this.missingWindowSlot(source, numTokens) !== null) {
      this.prefixMisses++;
      return null;
    }
    const vt = this.newVTensor();
    const numShared = m.path.length + (handOver ? 1 : 0);
    if (vt === null || !this.buildFrom(vt, source, numShared, handOver ? 0 : partialTokens)) {
      this.prefixMisses++;
      return null;
    }
    // Hand-over: the sequence mapped the block (refs 2); dropping it from the cache leaves the
    // sequence the only holder, so its writes past numTokens need no copy.
    if (handOver) this.cache.remove(partial!);
    this.prefixHits++;
    this.prefixTokensReused += numTokens;
    return { seq: this.add(vt, tokens.slice(0, numTokens)), numTokens };
  }

  countRoom(ends: readonly SequenceEnd[], wanted: readonly Uint32Array[]): RoomCount {
    this.settle(false);
    const g = this.geometry;
    let neededSlots = 0;
    let neededChunks = 0;
    // Without a pass bound every tensor's slots count (sliding-window layers give theirs back
    // as they go, so this over-counts for them, on the safe side). With one, a local layer's
    // K/V counts what it can hold at most (layerChunks) less what it holds now: its count never
    // exceeds that bound, so that is all it can still take. A cached prompt's local layers
    // count as holding nothing (its blocks keep only the ends of their windows).
    const windows = this.tensorWindows !== null && Number.isFinite(this.maxRowsPerPass) ? this.tensorWindows : null;
    const keep = new Set<RadixNode>();
    for (const e of ends) {
      if (windows === null) {
        const held = e.seq !== null ? this.get(e.seq).vt.numSlots : e.prompt !== undefined ? this.peekCached(e.prompt, keep) : 0;
        neededSlots += Math.max(0, Math.ceil(Math.min(e.numTokens, this.shape.maxContext) / g.tokensPerChunk) - held);
        continue;
      }
      const caps = layerChunks(this.shape, g.tokensPerChunk, e.numTokens, this.maxRowsPerPass);
      const vt = e.seq !== null ? this.get(e.seq).vt : null;
      const shared = vt === null && e.prompt !== undefined ? this.peekCached(e.prompt, keep) : 0;
      for (let t = 0; t < g.numTensors; t++) {
        let held = 0;
        if (vt !== null) for (let j = 0; j < vt.numSlots; j++) held += vt.chunkAt(t, j) >= 0 ? 1 : 0;
        else if (windows[t] === 0) held = shared;
        neededChunks += Math.max(0, caps[t >> 1]! - held);
      }
    }
    for (const tokens of wanted) this.peekCached(tokens, keep);
    const limit = this.grant ? Math.min(this.grant.maxChunks, this.pool.capacityChunks) : this.pool.capacityChunks;
    return {
      neededChunks: neededSlots * g.numTensors + neededChunks,
      availableChunks: Math.max(0, limit - this.numUsedChunks) + this.freeableByEviction(keep),
    };
  }

  keepCached(wanted: readonly Uint32Array[]): void {
    // The waiting requests' blocks go last in evictions (a newcomer's own are mapped by it
    // once admitted, and matchPrefix() keeps them while it copies).
    const waiting = new Set<RadixNode>();
    for (const tokens of wanted) this.peekCached(tokens, waiting);
    this.wantedNodes = waiting;
  }

  /**
   * The slots matchPrefix() would give `tokens` from the cache: the full blocks, shared, and
   * the partial one when only the cache holds it (it is copied into a fresh slot, and the
   * original then goes with the next eviction: one block either way; or, on a short pool,
   * handed over). A partial block a sequence also maps stays: its copy is a new slot. All of
   * them are added to `into`.
   */
  private peekCached(tokens: Uint32Array, into: Set<RadixNode>): number {
    const maxTokens = Math.min(tokens.length - 1, this.shape.maxContext);
    if (maxTokens <= 0) return 0;
    const m = this.cache.match(tokens, maxTokens, false);
    for (const n of m.path) into.add(n);
    if (m.partial === null) return m.path.length;
    into.add(m.partial);
    return m.path.length + (m.partial.chunks.every((c) => c < 0 || this.refs[c] === 1) ? 1 : 0);
  }

  /** Bytes of physical memory mapped into one sequence's K and V of one layer. */
  layerBytes(seq: SeqId, layer: number): number {
    const vt = this.get(seq).vt;
    const l = checkLayer(layer, this.shape.numLayers);
    let n = 0;
    for (const t of [2 * l, 2 * l + 1]) for (let j = 0; j < vt.numSlots; j++) if (vt.chunkAt(t, j) >= 0) n++;
    return n * this.geometry.chunkBytes;
  }

  clearPrefixCache(): void {
    this.settle(false);
    this.cache.clear();
  }

  /** Number of cached prefix blocks (full and tail chunks slots). */
  get numCachedBlocks(): number {
    return this.cache.numNodes;
  }

  stats(): KvStats {
    const cb = this.geometry.chunkBytes;
    const used = this.pool.capacityChunks - this.pool.numFreeChunks;
    let shared = 0;
    let mappings = 0;
    let active = 0;
    for (let c = 0; c < this.seqMaps.length; c++) {
      mappings += this.seqMaps[c]!;
      if (this.seqMaps[c]! > 1) shared++;
      if (this.seqMaps[c]! > 0) active++;
    }
    let liveTokens = 0;
    for (const s of this.seqs.values()) liveTokens += s.tokens.length;
    const mappedBytes = used * cb;
    const liveBytes = liveTokens * bytesPerToken(this.shape);
    return {
      layout: this.layout,
      mappedBytes,
      liveBytes,
      sharedBytes: shared * cb,
      capacityBytes: (this.grant ? Math.min(this.grant.maxChunks, this.pool.capacityChunks) : this.pool.capacityChunks) * cb,
      fragmentationPercent: mappedBytes === 0 ? 0 : (Math.max(0, mappedBytes - liveBytes) / mappedBytes) * 100,
      numSequences: this.seqs.size,
      numMappings: mappings,
      mapMsOnCriticalPath: this.mapMsCritical,
      mapMsAhead: this.mapMsAhead,
      prefixHits: this.prefixHits,
      prefixMisses: this.prefixMisses,
      prefixTokensReused: this.prefixTokensReused,
      activeBytes: active * cb,
      cachedBytes: (used - active) * cb,
      limitBytes: (this.grant ? Math.min(this.grant.limitChunks, this.pool.capacityChunks) : this.pool.capacityChunks) * cb,
      blockTokens: this.geometry.tokensPerChunk,
      // One block = one chunk slot of every tensor (each layer's K and V).
      numBlocks: Math.floor((this.grant ? Math.min(this.grant.maxChunks, this.pool.capacityChunks) : this.pool.capacityChunks) / this.geometry.numTensors),
    };
  }

  dispose(): void {
    this.seqs.clear(); // (destroying the pool drains the background mapper first)
    this.pool.dispose(); // releases every reservation still open (views detached)
  }

  // --- internals -----------------------------------------------------------------------------

  /**
   * Maps slots so positions [0, numTokens) exist and [length, numTokens) are private.
   * All-or-nothing: counts the chunks needed first, evicts cache blocks if allowed, then maps.
   */
  private makeRoom(s: Sequence, numTokens: number, critical: boolean): boolean {
    checkTokenCount('ensure: numTokens', numTokens, this.shape.maxContext);
    this.dropBehindWindows(s);
    const g = this.geometry;
    const vt = s.vt;
    const needSlots = Math.ceil(numTokens / g.tokensPerChunk);
    const firstWritable = Math.floor(s.tokens.length / g.tokensPerChunk);
    // Shared slots inside the write range must be copied before anyone writes there.
    const cowSlots: number[] = [];
    for (let j = firstWritable; j < Math.min(needSlots, vt.numSlots); j++) {
      for (let t = 0; t < g.numTensors; t++) {
        if (this.refs[vt.chunkAt(t, j)]! > 1) {
          cowSlots.push(j);
          break;
        }
      }
    }
    const newSlots = Math.max(0, needSlots - vt.numSlots);
    const needed = (newSlots + cowSlots.length) * g.numTensors;
    // Only the critical path (ensure) may ask the grant for more: prepare() is best effort.
    if (needed > 0 && !this.reclaim(needed, undefined, critical)) return false;
    for (const j of cowSlots) {
      for (let t = 0; t < g.numTensors; t++) {
        const old = vt.chunkAt(t, j);
        if (this.refs[old]! === 1) continue;
        const c = this.pool.allocChunk();
        this.pool.copyChunk(old, c);
        vt.unmap(t, j);
        this.seqMaps[old]!--;
        this.unref(old);
        this.mapNew(vt, t, j, c);
      }
    }
    // (Copied slots stay private if grow() fails: same data, so the sequence is unchanged.)
    if (!this.grow(vt, needSlots, !critical && this.backgroundMapping)) return false;
    // Best-effort look-ahead on the critical path: only from free chunks, never by eviction.
    if (critical && this.lookaheadChunks > 0 && newSlots > 0) {
      const ahead = Math.min(g.slotsPerTensor, needSlots + this.lookaheadChunks);
      if ((ahead - vt.numSlots) * g.numTensors <= this.numAvailableChunks) this.grow(vt, ahead);
    }
    return true;
  }

  /**
   * Maps fresh chunks into slots [numSlots, toSlots) of every tensor (chunks must be free).
   * If the OS refuses a mapping (vm.max_map_count), undoes this call's slots and returns false.
   */
  private grow(vt: VTensor, toSlots: number, background = false): boolean {
    const from = vt.numSlots;
    for (let j = from; j < toSlots; j++) {
      for (let t = 0; t < this.geometry.numTensors; t++) {
        const c = this.pool.allocChunk();
        try {
          if (background) {
            if (c < 0) throw new Error('vtensor: chunk pool exhausted after reclaim (bug)');
            vt.mapAsync(t, j, c); // failures come back from settle()
            this.refs[c] = 1;
            this.seqMaps[c] = 1;
          } else this.mapNew(vt, t, j, c);
        } catch (err) {
          if (!isOutOfMappings(err)) throw err;
          this.pool.freeChunk(c);
          for (let u = 0; u < t; u++) this.unmapSlot(vt, u, j);
          this.shrinkTo(vt, from);
          this.numMapFailures++;
          return false;
        }
      }
      vt.numSlots = j + 1;
    }
    return true;
  }

  private unmapSlot(vt: VTensor, tensor: number, slot: number): void {
    if (vt.chunkAt(tensor, slot) < 0) return; // a background map that failed (see settle)
    const c = vt.unmap(tensor, slot);
    this.seqMaps[c]!--;
    this.unref(c);
  }

  /**
   * Waits for background maps (prepare()) to land. A map that failed (ENOMEM) is forgotten
   * and its sequence shrinks below the failed slot: the room prepare() promised is simply not
   * there, and the next ensure() maps it (or reports short). Waiting counts as critical path
   * (ahead = false), or is left to the caller's own timing (null: ensure() and prepare()).
   */
  private settle(ahead: boolean | null): void {
    if (this.pool.pendingMaps === 0) return;
    const t0 = performance.now();
    const failures = this.pool.drain();
    const shrink = new Map<VTensor, number>(); // lowest failed slot per VTensor
    for (const f of failures) {
      const s = [...this.seqs.values()].find((x) => x.vt.handle === f.handle);
      if (s === undefined) throw new Error(`vtensor: background map failed for an unknown reservation ${f.handle} (bug)`);
      const { slot, chunk } = s.vt.forget(f.offset);
      this.seqMaps[chunk]!--;
      this.unref(chunk);
      this.numMapFailures++;
      shrink.set(s.vt, Math.min(slot, shrink.get(s.vt) ?? slot));
    }
    for (const [vt, slot] of shrink) this.shrinkTo(vt, slot); // after forgetting every failure
    const ms = performance.now() - t0;
    if (ahead === true) this.mapMsAhead += ms;
    else if (ahead === false) this.mapMsCritical += ms;
  }

  /** A new empty VTensor, or null if the OS refuses the address-space reservation. */
  private newVTensor(): VTensor | null {
    try {
      return new VTensor(this.pool, this.geometry);
    } catch (err) {
      if (!isOutOfMappings(err)) throw err;
      this.numMapFailures++;
      return null;
    }
  }

  /** Releases a VTensor's reservation and drops its chunk refs. */
  private discard(vt: VTensor): void {
    const held = Array.from(vt.chunks).filter((c) => c >= 0);
    vt.release(); // unmaps everything and detaches the views
    for (const c of held) {
      this.seqMaps[c]!--;
      this.unref(c);
    }
  }

  /** Unmaps slots [toSlots, numSlots) of every tensor. */
  private shrinkTo(vt: VTensor, toSlots: number): void {
    for (let j = vt.numSlots - 1; j >= toSlots; j--) {
      for (let t = 0; t < this.geometry.numTensors; t++) this.unmapSlot(vt, t, j);
      vt.numSlots = j;
    }
  }

  /**
   * Shares slots [0, numFull) from `source` and copies the partial slot numFull (tailTokens
   * rows). If the OS refuses a mapping, releases `vt` entirely and returns false.
   */
  private buildFrom(vt: VTensor, source: (slot: number, tensor: number) => number, numFull: number, tailTokens: number): boolean {
    try {
      this.shareAndCopy(vt, source, numFull, tailTokens);
      return true;
    } catch (err) {
      if (!isOutOfMappings(err)) throw err;
      this.numMapFailures++;
      this.discard(vt);
      return false;
    }
  }

  private shareAndCopy(vt: VTensor, source: (slot: number, tensor: number) => number, numFull: number, tailTokens: number): void {
    const g = this.geometry;
    for (let j = 0; j < numFull; j++) {
      for (let t = 0; t < g.numTensors; t++) {
        const c = source(j, t);
        if (c < 0) continue; // behind a sliding window: stays unmapped (see missingWindowSlot)
        vt.map(t, j, c);
        this.refs[c]!++;
        this.seqMaps[c]!++;
      }
      vt.numSlots = j + 1;
    }
    if (tailTokens > 0) {
      for (let t = 0; t < g.numTensors; t++) {
        const c = this.pool.allocChunk(); // the caller reclaimed numTensors chunks
        if (c < 0) throw new Error('vtensor: chunk pool exhausted after reclaim (bug)');
        this.pool.copyChunk(source(numFull, t), c, tailTokens * rowBytes(this.shape));
        try {
          this.mapNew(vt, t, numFull, c);
        } catch (err) {
          this.pool.freeChunk(c); // allocated, never mapped
          throw err;
        }
      }
      vt.numSlots = numFull + 1;
    }
  }

  private mapNew(vt: VTensor, tensor: number, slot: number, chunk: number): void {
    if (chunk < 0) throw new Error('vtensor: chunk pool exhausted after reclaim (bug)');
    vt.map(tensor, slot, chunk); // throws before any bookkeeping if the OS refuses
    this.refs[chunk] = 1;
    this.seqMaps[chunk] = 1;
  }

  /** Chunks allocChunk() may hand out now: free in the pool and (elastic) within the grant. */
  get numAvailableChunks(): number {
    const free = this.pool.numFreeChunks;
    return this.grant ? Math.max(0, Math.min(free, this.grant.limitChunks - this.numUsedChunks)) : free;
  }

  /** Chunks held (mapped into sequences or kept by the prefix cache). */
  get numUsedChunks(): number {
    return this.pool.capacityChunks - this.pool.numFreeChunks;
  }

  /**
   * Makes `numChunks` chunks available: with a grant, from memory nobody uses first; then by
   * evicting LRU prefix-cache blocks; then (mayGrow) asking the grant for what eviction cannot
   * free, which may demote weights (see grant.ts). False if it
   * cannot, and then it evicts nothing (the cache stays useful to whoever comes next).
   */
  private reclaim(numChunks: number, keep?: ReadonlySet<RadixNode>, mayGrow = true): boolean {
    const available = this.numAvailableChunks;
    if (available >= numChunks) return true;
    // Memory nobody uses first, then cached prefixes, then (critical path only) weights.
    if (this.grant && this.pool.numFreeChunks >= numChunks && this.grant.request(numChunks - available, false)) return true;
    const shortfall = numChunks - this.numAvailableChunks - this.freeableByEviction(keep);
    if (shortfall > 0 && !(mayGrow && this.grant?.request(shortfall, true))) return false;
    // Blocks waiting requests will hit go last (kept while any other block can go).
    const spare = new Set<RadixNode>([...(keep ?? []), ...this.wantedNodes]);
    while (this.numAvailableChunks < numChunks) {
      if (!this.cache.evictOne(spare) && !this.cache.evictOne(keep)) throw new Error('vtensor: eviction freed fewer chunks than counted (bug)');
    }
    return true;
  }

  /**
   * Evicts LRU prefix-cache blocks until `numChunks` chunks were freed or nothing is left to
   * evict; returns the chunks freed. The elastic pool calls it when resident weights are worth
   * more than the cached prefixes (engine/memory-pool.ts).
   */
  evictCachedChunks(numChunks: number): number {
    this.settle(false);
    const before = this.pool.numFreeChunks;
    while (this.pool.numFreeChunks - before < numChunks && this.cache.evictOne()) {
      // one LRU block at a time
    }
    return this.pool.numFreeChunks - before;
  }

  /**
   * Chunks that evicting every evictable cache block would free: those whose every holder is
   * such a block (a chunk also mapped by a sequence, or held by a kept block, stays).
   */
  private freeableByEviction(keep?: ReadonlySet<RadixNode>): number {
    const holds = new Map<number, number>();
    for (const n of this.cache.evictable(keep)) for (const c of n.chunks) if (c >= 0) holds.set(c, (holds.get(c) ?? 0) + 1);
    let n = 0;
    for (const [c, h] of holds) if (h === this.refs[c]) n++;
    return n;
  }

  private unref(c: number): void {
    const r = --this.refs[c]!;
    if (r < 0) throw new Error(`vtensor: chunk ${c} released more often than held (bug)`);
    if (r === 0) this.pool.freeChunk(c);
  }

  private add(vt: VTensor, tokens: Uint32Array): SeqId {
    const id = this.nextSeq++;
    const s: Sequence = { vt, tokens, dropped: this.tensorWindows ? new Int32Array(this.geometry.numTensors) : null };
    this.seqs.set(id, s);
    this.dropBehindWindows(s);
    return id;
  }

  /**
   * First slot a sliding-window tensor still needs with `numTokens` committed: the next query
   * row (position numTokens) reads keys from numTokens + 1 - window.
   */
  private firstNeededSlot(t: number, numTokens: number): number {
    const w = this.tensorWindows![t]!;
    return w === 0 ? 0 : Math.floor(Math.max(0, numTokens + 1 - w) / this.geometry.tokensPerChunk);
  }

  /**
   * Unmaps the slots of sliding-window tensors that no later query reads (every one before
   * firstNeededSlot): their chunks go back to the pool, or stay with whoever else holds them
   * (the prefix cache, a forked sibling). The attention kernel never reads there.
   */
  private dropBehindWindows(s: Sequence): void {
    if (s.dropped === null) return;
    const numTokens = s.tokens.length;
    for (let t = 0; t < this.geometry.numTensors; t++) {
      const end = Math.min(this.firstNeededSlot(t, numTokens), s.vt.numSlots);
      for (let j = s.dropped[t]!; j < end; j++) this.unmapSlot(s.vt, t, j);
      s.dropped[t] = Math.max(s.dropped[t]!, end);
    }
  }

  /**
   * The (tensor, slot) a sequence of numTokens tokens built from `chunkAt` would need but
   * that was given back (behind a sliding window), or null when every window is held.
   */
  private missingWindowSlot(chunkAt: (slot: number, tensor: number) => number, numTokens: number): { t: number; slot: number } | null {
    if (this.tensorWindows === null) return null;
    const last = Math.ceil(numTokens / this.geometry.tokensPerChunk); // slots [0, last) hold the tokens
    for (let t = 0; t < this.geometry.numTensors; t++) {
      for (let j = this.firstNeededSlot(t, numTokens); j < last; j++) if (chunkAt(j, t) < 0) return { t, slot: j };
    }
    return null;
  }

  /** Throws unless a sequence cut to numTokens would still hold every sliding window it reads. */
  private checkWindowsHeld(vt: VTensor, numTokens: number, what: string): void {
    const miss = this.missingWindowSlot((slot, t) => (slot < vt.numSlots ? vt.chunkAt(t, slot) : 0), numTokens);
    if (miss !== null) {
      throw new RangeError(
        `${what}: at ${numTokens} tokens layer ${miss.t >> 1}'s sliding window (${this.tensorWindows![miss.t]} tokens) reaches ` +
          `K/V that was already given back (slot ${miss.slot}); a sliding-window sequence can only be cut within its window ` +
          `(or create the KV manager with windowUnmap: false)`,
      );
    }
  }

  private get(seq: SeqId): Sequence {
    const s = this.seqs.get(seq);
    if (s === undefined) throw new UnknownSequenceError(seq);
    return s;
  }
}

/** Whether a native error says the process ran out of mappings / address space. */
function isOutOfMappings(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOMEM';
}

export { chooseChunkBytes, maxMapCount } from './chunk-size.js';
