/**
 * PagedKvManager: the paged KV layout, built as vLLM v1 builds it (KVCacheManager over a
 * BlockPool): fixed blocks of 16 tokens from one pool, a block table per sequence,
 * reference-counted blocks shared through prefix hashing, copy-on-write of a shared last
 * partial block, LRU eviction of cached blocks. The model reads K/V through block tables
 * (PagedKvCache); the attention kernel walks the table (native/src/ops_attention_paged.cc).
 *
 *   sequence A, 40 tokens:  table [3, 8, 5]      block 5 holds 8 tokens (partial)
 *   sequence B = fork(A, 36): table [3, 8, 5]    refs: 3 -> 2, 8 -> 2, 5 -> 2
 *   B writes position 36:   5 is shared: copy its 4 rows to a new block 9, table [3, 8, 9]
 *
 * NOTE (ownership and copy-on-write):
 * - A sequence writes only positions [length, ensured). ensure()/prepare() make every block
 *   covering that range private first: a block other sequences hold too (refCount > 1) is
 *   copied (its rows below length) into a fresh block; a block only this sequence holds but
 *   the prefix cache lists with tokens past `length` (a hit that ends inside a cached block)
 *   is copied too when a block is free, else taken out of the cache and written in place.
 * - fork() and matchPrefix() only share blocks (ref counts); the copy of a shared partial
 *   block waits for the first write (vLLM's copy-on-write), so they never run short.
 * - The prefix cache holds no reference (block-pool.ts): cached blocks nobody holds sit in the
 *   free queue in LRU order and are evicted by allocation. Full blocks are cached at commit(),
 *   a released sequence's partial last block at release(seq, true). release(seq, false)
 *   uncaches what this sequence cached itself, once nobody holds it.
 * - Running short: ensure() returns false and changes nothing. Never throws for memory.
 *
 * Memory: one pool per layer for K and one for V, allocated once for the whole capacity
 * (vLLM preallocates its pool too); the OS backs pages as blocks are first written. Pool
 * geometry and bytes are decided in one place: pagedPoolGeometry().
 */
import type { KvShape, PagedKvCache, SeqId } from './cache.js';
import type { KvManager, KvStats, PrefixMatch } from './manager.js';
import { BlockPool, type KvBlock } from './block-pool.js';
import { ROOT_BLOCK_HASH, hashBlockTokens } from './block-hash.js';
import { F16_BYTES, UnknownSequenceError, bytesPerToken, checkLayer, checkTokenCount, commonPrefixLength, validateShape } from './shape.js';
import { allocAligned } from '../native/memory.js';
import { PAGED_BLOCK_TOKENS } from '../native/ops.js';

/** Tokens per block (vLLM's default block size; the native kernels are built for it). */
export { PAGED_BLOCK_TOKENS };

/** Options of the paged layout. */
export interface PagedKvOptions {
  shape: KvShape;
  /** KV share of the memory budget: the pool holds floor(capacityBytes / blockBytes) blocks. */
  capacityBytes: number;
  /** Elements per kv head (kvDim / headDim heads per block). Default kvDim (one run per token). */
  headDim?: number;
  /** Maximum number of live sequences (default unlimited). */
  maxSequences?: number;
}

/** Size facts of a paged pool: the only place that turns bytes into blocks. */
export interface PagedPoolGeometry {
  /** Bytes of one block over all layers, K and V. */
  blockBytes: number;
  numBlocks: number;
  /** numBlocks * blockBytes. */
  poolBytes: number;
  /** Elements of one block in one layer's K (or V) pool. */
  blockElems: number;
}

/** Blocks (and bytes) a pool of `capacityBytes` holds for `shape`. */
export function pagedPoolGeometry(shape: KvShape, capacityBytes: number): PagedPoolGeometry {
  const blockBytes = PAGED_BLOCK_TOKENS * bytesPerToken(shape);
  const numBlocks = Math.floor(capacityBytes / blockBytes);
  return { blockBytes, numBlocks, poolBytes: numBlocks * blockBytes, blockElems: PAGED_BLOCK_TOKENS * shape.kvDim };
}

interface Sequence {
  id: SeqId;
  /** Block ids, [0, numBlocks) used: positions [16 j, 16 j + 16) are in block table[j]. */
  table: Int32Array;
  numBlocks: number;
  tokens: Uint32Array; // committed tokens
  /** Hash of each committed full block j (the chain from the root), j < floor(length / 16). */
  hashes: string[];
  /** Leading full blocks commit() already offered to the prefix cache. */
  numCached: number;
}

/** Paged KV manager (see file comment). */
export class PagedKvManager implements KvManager, PagedKvCache {
  readonly layout = 'paged';
  readonly shape: KvShape;
  readonly blockTokens = PAGED_BLOCK_TOKENS;
  readonly headDim: number;
  readonly numKvHeads: number;
  readonly geometry: PagedPoolGeometry;
  readonly pool: BlockPool;
  private readonly kPools: Uint16Array[] = []; // per layer [numBlocks, numKvHeads, 16, headDim]
  private readonly vPools: Uint16Array[] = [];
  private readonly seqs = new Map<SeqId, Sequence>();
  private readonly maxSequences: number;
  private readonly maxBlocksPerSeq: number;
  private nextSeq = 1;
  private msCritical = 0;
  private msAhead = 0;
  private prefixHits = 0;
  private prefixMisses = 0;
  private prefixTokensReused = 0;
  /** Blocks copied on write (shared partial blocks, and cached blocks kept by copying). */
  numCopiedBlocks = 0;

  constructor(options: PagedKvOptions) {
    validateShape(options.shape);
    this.shape = { ...options.shape };
    this.headDim = options.headDim ?? this.shape.kvDim;
    if (!Number.isSafeInteger(this.headDim) || this.headDim < 1 || this.shape.kvDim % this.headDim !== 0) {
      throw new RangeError(`headDim must be a positive divisor of kvDim ${this.shape.kvDim}, got ${String(options.headDim)}`);
    }
    this.numKvHeads = this.shape.kvDim / this.headDim;
    this.geometry = pagedPoolGeometry(this.shape, options.capacityBytes);
    if (this.geometry.numBlocks < 1) {
      throw new RangeError(`KV capacity ${options.capacityBytes} B holds no ${this.geometry.blockBytes} B block of ${PAGED_BLOCK_TOKENS} tokens; raise the KV budget`);
    }
    this.pool = new BlockPool(this.geometry.numBlocks);
    const elems = this.geometry.numBlocks * this.geometry.blockElems;
    for (let l = 0; l < this.shape.numLayers; l++) {
      this.kPools.push(new Uint16Array(allocAligned(elems * F16_BYTES)));
      this.vPools.push(new Uint16Array(allocAligned(elems * F16_BYTES)));
    }
    this.maxSequences = options.maxSequences ?? Infinity;
    this.maxBlocksPerSeq = Math.ceil(this.shape.maxContext / PAGED_BLOCK_TOKENS);
  }

  keys(_seq: SeqId, _layer: number): Uint16Array {
    throw new TypeError('the paged KV layout has no contiguous view of a sequence; read it through blockTable() and keyPool() (paged attention)');
  }

  values(seq: SeqId, layer: number): Uint16Array {
    return this.keys(seq, layer);
  }

  keyPool(layer: number): Uint16Array {
    return this.kPools[checkLayer(layer, this.shape.numLayers)]!;
  }

  valuePool(layer: number): Uint16Array {
    return this.vPools[checkLayer(layer, this.shape.numLayers)]!;
  }

  blockTable(seq: SeqId): Int32Array {
    const s = this.get(seq);
    return s.table.subarray(0, s.numBlocks);
  }

  createSequence(): SeqId | null {
    if (this.seqs.size >= this.maxSequences) return null;
    return this.add([], new Uint32Array(0), []);
  }

  ensure(seq: SeqId, numTokens: number): boolean {
    const s = this.get(seq);
    const t0 = performance.now();
    const ok = this.allocateSlots(s, numTokens);
    this.msCritical += performance.now() - t0;
    return ok;
  }

  prepare(seq: SeqId, numTokens: number): boolean {
    const s = this.get(seq);
    const t0 = performance.now();
    const ok = this.allocateSlots(s, numTokens);
    this.msAhead += performance.now() - t0;
    return ok;
  }

  length(seq: SeqId): number {
    return this.get(seq).tokens.length;
  }

  commit(seq: SeqId, tokens: Uint32Array): void {
    const s = this.get(seq);
    checkTokenCount('commit: tokens.length', tokens.length, Math.min(this.shape.maxContext, s.numBlocks * PAGED_BLOCK_TOKENS));
    this.forgetFrom(s, tokens.length);
    s.tokens = tokens.slice();
    // Cache the blocks that just became full (vLLM's cache_full_blocks).
    this.cacheFullBlocks(s, s.numCached);
  }

  truncate(seq: SeqId, numTokens: number): void {
    const s = this.get(seq);
    checkTokenCount('truncate: numTokens', numTokens, this.shape.maxContext);
    if (numTokens < s.tokens.length) s.tokens = s.tokens.slice(0, numTokens);
    this.forgetFrom(s, numTokens);
    const keep = Math.ceil(numTokens / PAGED_BLOCK_TOKENS);
    if (keep < s.numBlocks) {
      // Blocks wholly past numTokens go (their cached content, if any, stays valid).
      this.pool.release(this.blocksOf(s, keep, s.numBlocks).reverse());
      s.numBlocks = keep;
    }
  }

  fork(parent: SeqId, numTokens: number): SeqId | null {
    const p = this.get(parent);
    checkTokenCount('fork: numTokens', numTokens, p.tokens.length);
    if (this.seqs.size >= this.maxSequences) return null;
    const shared = this.blocksOf(p, 0, Math.ceil(numTokens / PAGED_BLOCK_TOKENS));
    for (const b of shared) this.pool.touch(b);
    return this.add(shared, p.tokens.slice(0, numTokens), p.hashes.slice(0, Math.floor(numTokens / PAGED_BLOCK_TOKENS)));
  }

  release(seq: SeqId, cachePrefix = false): void {
    const s = this.get(seq);
    this.seqs.delete(seq);
    if (cachePrefix) this.cacheTail(s);
    // Tail first, so the end of a prefix is evicted before its beginning.
    this.pool.release(this.blocksOf(s, 0, s.numBlocks).reverse(), cachePrefix ? 0 : s.id);
    s.numBlocks = 0;
  }

  matchPrefix(tokens: Uint32Array): PrefixMatch | null {
    const maxTokens = Math.min(tokens.length - 1, this.shape.maxContext);
    if (maxTokens <= 0 || this.seqs.size >= this.maxSequences) {
      this.prefixMisses++;
      return null;
    }
    // Full blocks by hash, from the root, while the whole block fits in maxTokens.
    const B = PAGED_BLOCK_TOKENS;
    const path: KvBlock[] = [];
    const hashes: string[] = [];
    let parent = ROOT_BLOCK_HASH;
    while ((path.length + 1) * B <= maxTokens) {
      const block = tokens.subarray(path.length * B, (path.length + 1) * B);
      const h = hashBlockTokens(parent, block);
      const b = this.pool.lookup(h, parent, block);
      if (b === null) break;
      path.push(b);
      hashes.push(h);
      parent = h;
    }
    // Then the cached block after that prefix (a tail, or a full block) sharing most tokens.
    const pos = path.length * B;
    const rest = tokens.subarray(pos, maxTokens);
    let partial: KvBlock | null = null;
    let partialTokens = 0;
    for (const b of this.pool.cachedChildren(parent)) {
      const n = commonPrefixLength(b.tokens!, rest);
      if (n > partialTokens) {
        partial = b;
        partialTokens = n;
      }
    }
    const numTokens = pos + partialTokens;
    if (numTokens === 0) {
      this.prefixMisses++;
      return null;
    }
    const blocks = partial === null ? path : [...path, partial];
    for (const b of blocks) this.pool.touch(b);
    this.prefixHits++;
    this.prefixTokensReused += numTokens;
    return { seq: this.add(blocks, tokens.slice(0, numTokens), hashes), numTokens };
  }

  clearPrefixCache(): void {
    this.pool.clearCache();
  }

  /** Blocks in the prefix cache (full and tails). */
  get numCachedBlocks(): number {
    return this.pool.numCachedBlocks;
  }

  stats(): KvStats {
    const bb = this.geometry.blockBytes;
    let used = 0;
    let shared = 0;
    let active = 0;
    for (const b of this.pool.blocks) {
      if (b.refCount > 0 || b.hash !== null) used++;
      if (b.refCount > 0) active++;
      if (b.refCount > 1) shared++;
    }
    let liveTokens = 0;
    let entries = 0;
    for (const s of this.seqs.values()) {
      liveTokens += s.tokens.length;
      entries += s.numBlocks;
    }
    const mappedBytes = used * bb;
    const liveBytes = liveTokens * bytesPerToken(this.shape);
    return {
      layout: this.layout,
      mappedBytes,
      liveBytes,
      sharedBytes: shared * bb,
      capacityBytes: this.geometry.poolBytes,
      fragmentationPercent: mappedBytes === 0 ? 0 : (Math.max(0, mappedBytes - liveBytes) / mappedBytes) * 100,
      numSequences: this.seqs.size,
      numMappings: entries,
      mapMsOnCriticalPath: this.msCritical,
      mapMsAhead: this.msAhead,
      prefixHits: this.prefixHits,
      prefixMisses: this.prefixMisses,
      prefixTokensReused: this.prefixTokensReused,
      activeBytes: active * bb,
      blockTokens: PAGED_BLOCK_TOKENS,
      numBlocks: this.geometry.numBlocks,
    };
  }

  dispose(): void {
    this.seqs.clear();
    this.kPools.length = 0;
    this.vPools.length = 0;
  }

  // --- internals -----------------------------------------------------------------------------

  /**
   * vLLM's allocate_slots: blocks so positions [0, numTokens) exist, and every block covering
   * [length, numTokens) private (see file comment). All-or-nothing: counts the blocks needed,
   * then allocates.
   */
  private allocateSlots(s: Sequence, numTokens: number): boolean {
    checkTokenCount('ensure: numTokens', numTokens, this.shape.maxContext);
    const B = PAGED_BLOCK_TOKENS;
    const length = s.tokens.length;
    const need = Math.ceil(numTokens / B);
    const first = Math.floor(length / B);
    const mustCopy: number[] = []; // shared with another sequence
    const cachedPast: number[] = []; // private, but cached with tokens this write would overwrite
    for (let j = first; j < Math.min(need, s.numBlocks); j++) {
      const b = this.pool.blocks[s.table[j]!]!;
      const from = j === first ? length - j * B : 0; // first row this sequence will write
      if (b.refCount > 1) mustCopy.push(j);
      else if (b.hash !== null && b.tokens!.length > from) cachedPast.push(j);
    }
    const newBlocks = Math.max(0, need - s.numBlocks);
    const required = newBlocks + mustCopy.length;
    if (required > this.pool.numFreeBlocks) return false;
    // Keep a cached block by copying it while blocks are free; else it leaves the cache.
    const spare = this.pool.numFreeBlocks - required;
    for (const j of cachedPast.slice(spare)) this.pool.uncache(this.pool.blocks[s.table[j]!]!);
    for (const j of [...mustCopy, ...cachedPast.slice(0, spare)].sort((a, b) => a - b)) {
      const old = this.pool.blocks[s.table[j]!]!;
      const [fresh] = this.pool.allocate(1);
      const rows = j === first ? length - j * B : 0;
      if (rows > 0) this.copyRows(old.id, fresh!.id, rows);
      this.numCopiedBlocks++;
      s.table[j] = fresh!.id;
      this.pool.release([old]);
    }
    if (newBlocks > 0) {
      for (const b of this.pool.allocate(newBlocks)) s.table[s.numBlocks++] = b.id;
    }
    return true;
  }

  /**
   * Offers the committed full blocks [from, floor(length / 16)) to the prefix cache (a block
   * whose content another block already caches stays out, as in vLLM).
   */
  private cacheFullBlocks(s: Sequence, from: number): void {
    const B = PAGED_BLOCK_TOKENS;
    const numFull = Math.floor(s.tokens.length / B);
    for (let j = from; j < numFull; j++) {
      const parent = j === 0 ? ROOT_BLOCK_HASH : s.hashes[j - 1]!;
      const tokens = s.tokens.subarray(j * B, (j + 1) * B);
      if (j === s.hashes.length) s.hashes.push(hashBlockTokens(parent, tokens));
      this.pool.cache(this.pool.blocks[s.table[j]!]!, parent, tokens, s.hashes[j]!, s.id);
    }
    s.numCached = Math.max(s.numCached, numFull);
  }

  /** Forgets the full-block hashes past position numTokens (truncate, or a shorter commit). */
  private forgetFrom(s: Sequence, numTokens: number): void {
    const numFull = Math.floor(numTokens / PAGED_BLOCK_TOKENS);
    if (s.hashes.length > numFull) s.hashes.length = numFull;
    s.numCached = Math.min(s.numCached, numFull);
  }

  /** On release with caching: every full block, and the partial last block as a tail. */
  private cacheTail(s: Sequence): void {
    const B = PAGED_BLOCK_TOKENS;
    this.cacheFullBlocks(s, 0); // again from 0: clearPrefixCache() or a duplicate's release may have dropped some
    const j = Math.floor(s.tokens.length / B);
    if (j * B === s.tokens.length) return;
    const parent = j === 0 ? ROOT_BLOCK_HASH : s.hashes[j - 1]!;
    const tail = s.tokens.subarray(j * B);
    this.pool.cache(this.pool.blocks[s.table[j]!]!, parent, tail, hashBlockTokens(parent, tail), s.id);
  }

  /** Copies the first `rows` token rows of block `from` into block `to`, every layer, K and V. */
  private copyRows(from: number, to: number, rows: number): void {
    const hd = this.headDim;
    const be = this.geometry.blockElems;
    for (const pools of [this.kPools, this.vPools]) {
      for (const pool of pools) {
        for (let h = 0; h < this.numKvHeads; h++) {
          const src = from * be + h * PAGED_BLOCK_TOKENS * hd;
          pool.copyWithin(to * be + h * PAGED_BLOCK_TOKENS * hd, src, src + rows * hd);
        }
      }
    }
  }

  private blocksOf(s: Sequence, from: number, to: number): KvBlock[] {
    const out: KvBlock[] = [];
    for (let j = from; j < to; j++) out.push(this.pool.blocks[s.table[j]!]!);
    return out;
  }

  private add(blocks: KvBlock[], tokens: Uint32Array, hashes: string[]): SeqId {
    const id = this.nextSeq++;
    const table = new Int32Array(this.maxBlocksPerSeq);
    blocks.forEach((b, j) => (table[j] = b.id));
    this.seqs.set(id, { id, table, numBlocks: blocks.length, tokens, hashes, numCached: hashes.length });
    return id;
  }

  private get(seq: SeqId): Sequence {
    const s = this.seqs.get(seq);
    if (s === undefined) throw new UnknownSequenceError(seq);
    return s;
  }
}
