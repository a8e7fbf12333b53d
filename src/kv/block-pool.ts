/**
 * The block pool of the paged KV layout (vLLM v1's BlockPool + FreeKVCacheBlockQueue): block
 * ids, reference counts, the free queue in eviction order, and the prefix-cache index. It owns
 * no K/V memory (the manager does) and knows nothing of sequences.
 *
 *   blocks:      [b0 ref 2 #h0] [b1 ref 1 #h1] [b2 ref 0 #h7] [b3 ref 0] [b4 ref 1] ...
 *   free queue:  head -> b3 -> b2 -> ... -> tail       (every block with ref 0, LRU first)
 *   cached:      #h0 -> b0, #h1 -> b1, #h7 -> b2        (hash of (parent hash, tokens) -> block)
 *   children:    parent hash -> cached blocks under it (for the last, partial step of a lookup)
 *
 * NOTE (vLLM's prefix cache, without a separate cache owner):
 * - A block's refCount counts the sequences whose block table holds it. The prefix cache holds
 *   no reference: a cached block whose count drops to 0 goes to the free queue and keeps its
 *   hash, so a later lookup can still find it and take it back out (touch()).
 * - Allocation pops the head of the free queue; a cached block popped there loses its hash
 *   (eviction). Freed blocks are appended at the tail, a sequence's blocks tail first, so the
 *   least recently used blocks, and the end of a prompt before its beginning, go first.
 *   Uncached freed blocks go to the head: they hold nothing worth keeping.
 * - Full blocks are cached as soon as their tokens are committed; a released sequence's last,
 *   partial block is cached as a tail (its hash covers its k < 16 tokens).
 * @internal
 */

/** One block of 16 token slots (vLLM's KVCacheBlock). */
export interface KvBlock {
  readonly id: number;
  /** Sequences whose block table holds this block. */
  refCount: number;
  /** Hash of (parent hash, tokens) while the block is in the prefix cache, else null. */
  hash: string | null;
  /** Hash of the block before it in its prefix (the root hash for a first block). */
  parentHash: string | null;
  /** The tokens the hash covers: 16 for a full block, fewer for a tail. */
  tokens: Uint32Array | null;
  /** Sequence that put the block in the cache (release without caching takes back its own). */
  cachedBy: number;
  prev: KvBlock | null;
  next: KvBlock | null;
  inFreeQueue: boolean;
}

/** Doubly linked list of the blocks with refCount 0, head = next to allocate (evict). */
class FreeBlockQueue {
  private readonly head: KvBlock;
  private readonly tail: KvBlock;
  length = 0;

  constructor() {
    this.head = sentinel(-1);
    this.tail = sentinel(-2);
    this.head.next = this.tail;
    this.tail.prev = this.head;
  }

  popFront(): KvBlock | null {
    const b = this.head.next!;
    if (b === this.tail) return null;
    this.remove(b);
    return b;
  }

  remove(b: KvBlock): void {
    if (!b.inFreeQueue) throw new Error(`block pool: block ${b.id} is not in the free queue (bug)`);
    b.prev!.next = b.next;
    b.next!.prev = b.prev;
    b.prev = b.next = null;
    b.inFreeQueue = false;
    this.length--;
  }

  pushBack(b: KvBlock): void {
    this.insertAfter(this.tail.prev!, b);
  }

  pushFront(b: KvBlock): void {
    this.insertAfter(this.head, b);
  }

  private insertAfter(at: KvBlock, b: KvBlock): void {
    if (b.inFreeQueue) throw new Error(`block pool: block ${b.id} is already in the free queue (bug)`);
    b.prev = at;
    b.next = at.next;
    at.next!.prev = b;
    at.next = b;
    b.inFreeQueue = true;
    this.length++;
  }
}

function sentinel(id: number): KvBlock {
  return { id, refCount: 0, hash: null, parentHash: null, tokens: null, cachedBy: 0, prev: null, next: null, inFreeQueue: false };
}

/** See file comment. */
export class BlockPool {
  readonly blocks: readonly KvBlock[];
  private readonly free = new FreeBlockQueue();
  private readonly cached = new Map<string, KvBlock>();
  private readonly children = new Map<string, Set<KvBlock>>();

  constructor(readonly numBlocks: number) {
    if (!Number.isSafeInteger(numBlocks) || numBlocks < 1) throw new RangeError(`a block pool needs at least one block, got ${numBlocks}`);
    const blocks: KvBlock[] = [];
    for (let i = 0; i < numBlocks; i++) {
      const b = sentinel(i);
      blocks.push(b);
      this.free.pushBack(b);
    }
    this.blocks = blocks;
  }

  /** Blocks an allocation can take now: free ones and cached ones nobody holds. */
  get numFreeBlocks(): number {
    return this.free.length;
  }

  /** Blocks in the prefix cache (held or not). */
  get numCachedBlocks(): number {
    return this.cached.size;
  }

  /**
   * Takes `n` blocks from the head of the free queue (evicting their cached prefixes), each
   * with refCount 1. The caller checked numFreeBlocks first.
   */
  allocate(n: number): KvBlock[] {
    if (n > this.free.length) throw new Error(`block pool: ${n} blocks asked, ${this.free.length} free (bug: check numFreeBlocks first)`);
    const out: KvBlock[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.free.popFront()!;
      if (b.hash !== null) this.uncache(b);
      b.refCount = 1;
      out.push(b);
    }
    return out;
  }

  /** One more holder of `b` (a prefix hit or a fork); a block nobody held leaves the free queue. */
  touch(b: KvBlock): void {
    if (b.refCount === 0) this.free.remove(b);
    b.refCount++;
  }

  /**
   * One holder fewer of each block, in the given order (pass a sequence's blocks tail first).
   * A block nobody holds any more goes to the free queue: at the tail keeping its cached
   * prefix, unless `uncacheOwnedBy` names the sequence that cached it (then at the head, uncached).
   */
  release(blocks: Iterable<KvBlock>, uncacheOwnedBy = 0): void {
    for (const b of blocks) {
      if (b.refCount <= 0) throw new Error(`block pool: block ${b.id} released more often than held (bug)`);
      if (--b.refCount > 0) continue;
      if (b.hash !== null && uncacheOwnedBy !== 0 && b.cachedBy === uncacheOwnedBy) this.uncache(b);
      if (b.hash === null) this.free.pushFront(b);
      else this.free.pushBack(b);
    }
  }

  /**
   * Puts `b` in the prefix cache as the block holding `tokens` after the prefix `parentHash`.
   * Returns false (and leaves `b` uncached) if another block already caches that content.
   */
  cache(b: KvBlock, parentHash: string, tokens: Uint32Array, hash: string, owner: number): boolean {
    if (b.hash === hash) return true;
    if (this.cached.has(hash)) return false;
    if (b.hash !== null) this.uncache(b);
    b.hash = hash;
    b.parentHash = parentHash;
    b.tokens = tokens.slice();
    b.cachedBy = owner;
    this.cached.set(hash, b);
    let set = this.children.get(parentHash);
    if (set === undefined) this.children.set(parentHash, (set = new Set()));
    set.add(b);
    return true;
  }

  /** Takes `b` out of the prefix cache (its memory stays where it is). */
  uncache(b: KvBlock): void {
    if (b.hash === null) return;
    this.cached.delete(b.hash);
    const set = this.children.get(b.parentHash!)!;
    set.delete(b);
    if (set.size === 0) this.children.delete(b.parentHash!);
    b.hash = b.parentHash = null;
    b.tokens = null;
    b.cachedBy = 0;
    // A free block out of the cache holds nothing: allocate it before cached ones.
    if (b.inFreeQueue) {
      this.free.remove(b);
      this.free.pushFront(b);
    }
  }

  /** The cached full block with this hash, if its parent and tokens are really these. */
  lookup(hash: string, parentHash: string, tokens: Uint32Array): KvBlock | null {
    const b = this.cached.get(hash);
    if (b === undefined || b.parentHash !== parentHash || !sameTokens(b.tokens!, tokens)) return null;
    return b;
  }

  /** Cached blocks (full and tails) that follow the prefix `parentHash`. */
  cachedChildren(parentHash: string): Iterable<KvBlock> {
    return this.children.get(parentHash) ?? [];
  }

  /** Drops every cached prefix (blocks keep their holders). */
  clearCache(): void {
    for (const b of [...this.cached.values()]) this.uncache(b);
  }
}

function sameTokens(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
