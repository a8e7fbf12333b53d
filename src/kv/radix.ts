/**
 * Chunk-granular radix prefix cache over token ids (the multi-turn reuse of vTensor /
 * SGLang's RadixAttention, at chunk stride).
 *
 *   root
 *    ├─ [t0 .. t127]            full block: one chunk per tensor (refs held)
 *    │    ├─ [t128 .. t255]     full block
 *    │    │    └─ tail [t256 .. t300]   partial block (fewer tokens than a chunk holds)
 *    │    └─ [u128 .. u255]     another continuation of the same first block
 *    └─ tail [v0 .. v40]
 *
 * Every edge is exactly one chunk slot: a full node holds tokensPerChunk tokens, a tail node
 * fewer (the partially filled last chunk of a released sequence). Each node holds one
 * reference on each of its chunks (one per K/V tensor). A lookup shares the chunks of the full
 * blocks it walks and reports the best partial block (a tail, or a full child matched only in
 * part), whose chunks the caller COPIES, because the new sequence will write after it (or,
 * when the pool is short and only the cache holds them, takes over: remove()).
 * Eviction takes least-recently-used leaves first.
 * @internal
 */

/** One chunk slot of a cached prefix. */
export interface RadixNode {
  parent: RadixNode | null;
  /** Tokens of this slot: tokensPerChunk for full nodes, fewer for tails. */
  tokens: Uint32Array;
  /** Chunk id per tensor (one ref each, held by this node). */
  chunks: Int32Array;
  children: Map<string, RadixNode>;
  tails: RadixNode[];
  lastUse: number;
}

/** Result of a lookup: shared full blocks, then an optional partial block to copy. */
export interface RadixMatch {
  /** Full blocks along the path, slot 0 first (their chunks can be shared). */
  path: RadixNode[];
  /** Block whose first `partialTokens` tokens match next (its chunks must be copied), or null. */
  partial: RadixNode | null;
  partialTokens: number;
  /** path.length * tokensPerChunk + partialTokens. */
  numTokens: number;
}

/** Reference counting the cache uses on chunks (owned by the KV manager). */
export interface ChunkRefs {
  ref(chunk: number): void;
  unref(chunk: number): void;
}

function blockKey(tokens: Uint32Array): string {
  return tokens.join(',');
}

function startsWith(whole: Uint32Array, prefix: Uint32Array): boolean {
  if (prefix.length > whole.length) return false;
  for (let i = 0; i < prefix.length; i++) if (whole[i] !== prefix[i]) return false;
  return true;
}

function commonLength(a: Uint32Array, b: Uint32Array): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** See file comment. */
export class ChunkRadixCache {
  readonly root: RadixNode;
  private clock = 0;
  private nodes = 0;

  constructor(
    readonly tokensPerChunk: number,
    readonly numTensors: number,
    private readonly refs: ChunkRefs,
  ) {
    this.root = this.makeNode(null, new Uint32Array(0), new Int32Array(0));
  }

  /** Number of cached blocks (full and tail). */
  get numNodes(): number {
    return this.nodes;
  }

  /**
   * Caches tokens[0, n) whose chunk for (slot, tensor) is chunkAt(slot, tensor). The cache
   * takes its own refs on chunks it keeps; the caller keeps (and later drops) its own.
   */
  insert(tokens: Uint32Array, chunkAt: (slot: number, tensor: number) => number): void {
    const tpc = this.tokensPerChunk;
    const now = ++this.clock;
    let node = this.root;
    node.lastUse = now;
    const numFull = Math.floor(tokens.length / tpc);
    for (let j = 0; j < numFull; j++) {
      const block = tokens.subarray(j * tpc, (j + 1) * tpc);
      const key = blockKey(block);
      let child = node.children.get(key);
      if (child === undefined) {
        child = this.makeNode(node, block.slice(), this.takeChunks(j, chunkAt));
        node.children.set(key, child);
        // Tails that are prefixes of this block are now redundant.
        node.tails = node.tails.filter((t) => {
          if (!startsWith(block, t.tokens)) return true;
          this.dropNode(t);
          return false;
        });
      }
      child.lastUse = now;
      node = child;
    }
    const tail = tokens.subarray(numFull * tpc);
    if (tail.length === 0) return;
    for (const other of [...node.children.values(), ...node.tails]) {
      if (startsWith(other.tokens, tail)) {
        other.lastUse = now; // already cached, as long or longer
        return;
      }
    }
    node.tails = node.tails.filter((t) => {
      if (!startsWith(tail, t.tokens)) return true;
      this.dropNode(t);
      return false;
    });
    const t = this.makeNode(node, tail.slice(), this.takeChunks(numFull, chunkAt));
    t.lastUse = now;
    node.tails.push(t);
  }

  /** Longest cached prefix of tokens[0, maxTokens); marks the nodes used (touch false: only looks). */
  match(tokens: Uint32Array, maxTokens: number, touch = true): RadixMatch {
    const tpc = this.tokensPerChunk;
    const now = touch ? ++this.clock : 0;
    const path: RadixNode[] = [];
    let node = this.root;
    let pos = 0;
    while (pos + tpc <= maxTokens) {
      const child = node.children.get(blockKey(tokens.subarray(pos, pos + tpc)));
      if (child === undefined) break;
      if (touch) child.lastUse = now;
      path.push(child);
      node = child;
      pos += tpc;
    }
    const rest = tokens.subarray(pos, maxTokens);
    let partial: RadixNode | null = null;
    let partialTokens = 0;
    for (const other of [...node.children.values(), ...node.tails]) {
      const n = commonLength(other.tokens, rest);
      if (n > partialTokens) {
        partial = other;
        partialTokens = n;
      }
    }
    if (partial !== null && touch) partial.lastUse = now;
    return { path, partial, partialTokens, numTokens: pos + partialTokens };
  }

  /** Evicts the least recently used leaf not in `keep`; false if there is none. */
  evictOne(keep?: ReadonlySet<RadixNode>): boolean {
    let victim: RadixNode | null = null;
    const stack: RadixNode[] = [this.root];
    while (stack.length > 0) {
      const n = stack.pop()!;
      const isLeaf = n.children.size === 0 && n.tails.length === 0;
      if (isLeaf && n !== this.root && !keep?.has(n) && (victim === null || n.lastUse < victim.lastUse)) victim = n;
      for (const c of n.children.values()) stack.push(c);
      for (const t of n.tails) stack.push(t);
    }
    if (victim === null) return false;
    this.remove(victim);
    return true;
  }

  /**
   * Every node that repeated evictOne(keep) would eventually evict: those with no node of
   * `keep` in their subtree (an ancestor of a kept node never becomes a leaf).
   */
  evictable(keep?: ReadonlySet<RadixNode>): RadixNode[] {
    const out: RadixNode[] = [];
    const visit = (n: RadixNode): boolean => {
      let holdsKept = keep?.has(n) ?? false;
      for (const c of n.children.values()) holdsKept = visit(c) || holdsKept;
      for (const t of n.tails) holdsKept = visit(t) || holdsKept;
      if (!holdsKept && n !== this.root) out.push(n);
      return holdsKept;
    };
    visit(this.root);
    return out;
  }

  /**
   * Removes `node` and everything cached below it, dropping their chunk refs (used to hand a
   * block's chunks over to a sequence: the caller takes its own refs first).
   */
  remove(node: RadixNode): void {
    if (node === this.root) throw new Error('radix: the root cannot be removed');
    const parent = node.parent!;
    const i = parent.tails.indexOf(node);
    if (i >= 0) parent.tails.splice(i, 1);
    else if (parent.children.get(blockKey(node.tokens)) === node) parent.children.delete(blockKey(node.tokens));
    else throw new Error('radix: node is not in the cache (removed twice?)');
    const stack: RadixNode[] = [node];
    while (stack.length > 0) {
      const n = stack.pop()!;
      for (const c of n.children.values()) stack.push(c);
      for (const t of n.tails) stack.push(t);
      n.children.clear();
      n.tails = [];
      this.dropNode(n);
    }
  }

  /** Drops every cached block. */
  clear(): void {
    while (this.evictOne()) {
      /* leaves first, until only the root is left */
    }
  }

  private takeChunks(slot: number, chunkAt: (slot: number, tensor: number) => number): Int32Array {
    const chunks = new Int32Array(this.numTensors);
    for (let t = 0; t < this.numTensors; t++) {
      // (-1: a sliding-window layer's chunk the sequence had already given back; the block
      // keeps the other tensors' chunks, and a lookup only uses it where no window reaches it)
      const c = chunkAt(slot, t);
      chunks[t] = c;
      if (c >= 0) this.refs.ref(c);
    }
    return chunks;
  }

  private makeNode(parent: RadixNode | null, tokens: Uint32Array, chunks: Int32Array): RadixNode {
    if (parent !== null) this.nodes++;
    return { parent, tokens, chunks, children: new Map(), tails: [], lastUse: this.clock };
  }

  private dropNode(node: RadixNode): void {
    this.nodes--;
    for (const c of node.chunks) if (c >= 0) this.refs.unref(c);
  }
}
