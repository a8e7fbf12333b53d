/**
 * The engine-facing interface of the KV cache: sequences, room for tokens, prefix reuse.
 * Implementations: contiguous (max-context preallocation per sequence, the llama.cpp way),
 * vTensor (virtually contiguous per-sequence K/V over chunks mapped on demand), both handing the
 * model plain contiguous f16 arrays through KvCache, and paged (16-token blocks of one pool
 * through block tables, vLLM's PagedAttention; the model reads it as a PagedKvCache).
 *
 * Running short of memory is a return value (false / null) the scheduler handles, never an
 * exception. Broken invariants (unknown sequence, released twice) are exceptions.
 */
import type { KvCache, SeqId } from './cache.js';

/** Counters for `flexinfer bench --kv-sweep`, `/metrics` and run statistics. */
export interface KvStats {
  layout: string;
  /** Bytes of physical memory currently backing K/V (mapped chunks or preallocated arrays). */
  mappedBytes: number;
  /** Bytes that hold live tokens: sum over sequences of tokens * bytesPerToken. */
  liveBytes: number;
  /** Bytes mapped into more than one sequence, counted once. */
  sharedBytes: number;
  /** Pool capacity in bytes (the KV share of the memory budget). */
  capacityBytes: number;
  /** (mapped - live) / mapped, in percent (0 when nothing is mapped). */
  fragmentationPercent: number;
  numSequences: number;
  /** Live chunk mappings (vtensor: one per sequence, tensor and slot) or allocated slots (contiguous). */
  numMappings: number;
  /** Time spent mapping chunks on the critical path (inside ensure()), milliseconds. */
  mapMsOnCriticalPath: number;
  /** Time spent mapping chunks ahead of need (inside prepare()), milliseconds. */
  mapMsAhead: number;
  prefixHits: number;
  prefixMisses: number;
  prefixTokensReused: number;
  /**
   * Bytes mapped into live sequences. Memory held by the prefix cache alone is left out: it is
   * freed on demand, so (like vLLM's kv_cache_usage_perc, which counts cached blocks with no
   * reference as free) activeBytes / capacityBytes is the share of the pool in use.
   */
  activeBytes: number;
  /** Tokens of one block: a chunk's tokens (vtensor) or a slot's context (contiguous). */
  blockTokens: number;
  /** Blocks the pool holds for every layer's K and V at once: tokens = blockTokens * numBlocks. */
  numBlocks: number;
  /** Bytes held by the prefix cache alone (mappedBytes - activeBytes), where the layout knows. */
  cachedBytes?: number;
  /** Bytes the layout may hold now (an elastic grant; the capacity otherwise), where it knows. */
  limitBytes?: number;
}

/** One sequence's end for KvManager.countRoom(): the positions [0, numTokens) it will hold. */
export interface SequenceEnd {
  /** null: a sequence not created yet (a request about to be admitted). */
  seq: SeqId | null;
  numTokens: number;
  /** seq null: the prompt matchPrefix() will be asked for (its cached full blocks are shared, not mapped anew). */
  prompt?: Uint32Array;
}

/** What KvManager.countRoom() counted, in chunks. */
export interface RoomCount {
  /** Chunks the sequences would still map to reach their ends. */
  neededChunks: number;
  /**
   * Chunks the pool could give them: what its limit leaves (for an elastic pool, with the
   * weights at their minimum resident set) plus what evicting the cached prefixes nobody
   * waiting wants would free.
   */
  availableChunks: number;
}

/** Result of looking a prompt up in the prefix cache. */
export interface PrefixMatch {
  /** New sequence whose positions [0, numTokens) already hold the K/V of tokens[0, numTokens). */
  seq: SeqId;
  numTokens: number;
}

export interface KvManager extends KvCache {
  readonly layout: 'contiguous' | 'vtensor' | 'paged' | string;
  /** A new empty sequence, or null if the pool cannot hold even an empty one. */
  createSequence(): SeqId | null;
  /**
   * Makes room for positions [0, numTokens) of `seq`. Returns false if the pool is short
   * (after evicting cached prefixes); the sequence is unchanged then.
   */
  ensure(seq: SeqId, numTokens: number): boolean;
  /**
   * Like ensure(), but called by the scheduler off the critical path: right after a step's
   * forward pass is issued, for the room the NEXT step will need (the "extend ahead of need"
   * of vTensor). Best effort: returns false if the pool is short (nothing changes then, and
   * the later ensure() decides). Contiguous layouts have nothing to do here.
   */
  prepare(seq: SeqId, numTokens: number): boolean;
  /** Number of positions of `seq` that hold computed K/V (as told by commit()). */
  length(seq: SeqId): number;
  /** Records that positions [0, tokens.length) of `seq` now hold the K/V of `tokens`. */
  commit(seq: SeqId, tokens: Uint32Array): void;
  /** Drops positions >= numTokens (e.g. after a rejected stop or a regenerate). */
  truncate(seq: SeqId, numTokens: number): void;
  /**
   * A new sequence sharing the parent's first `numTokens` positions (copy-on-write: full
   * chunks shared, the partial tail copied). null if the pool is short.
   */
  fork(parent: SeqId, numTokens: number): SeqId | null;
  /** Frees the sequence. If `cachePrefix`, its committed tokens stay in the prefix cache. */
  release(seq: SeqId, cachePrefix?: boolean): void;
  /**
   * Longest cached prefix of `tokens` (at most tokens.length - 1, so at least one token is
   * left to compute logits from) as a new sequence, or null on a miss.
   */
  matchPrefix(tokens: Uint32Array): PrefixMatch | null;
  /**
   * Admission accounting (layouts with chunks mapped on demand): counts, without mapping,
   * evicting or changing anything, the chunks `ends` would still map and the chunks the pool
   * could give them, keeping the cached prefixes the `wanted` prompts (requests still
   * waiting) would hit. Layouts that reserve every sequence's room up front do not implement it.
   */
  countRoom?(ends: readonly SequenceEnd[], wanted: readonly Uint32Array[]): RoomCount;
  /**
   * The cached prefixes the `wanted` prompts (requests still waiting) would hit are the last
   * that later evictions take (LRU among the others first), until the next call. Implemented
   * with countRoom().
   */
  keepCached?(wanted: readonly Uint32Array[]): void;
  /**
   * True when local (sliding-window) layers give back what falls behind their window after
   * every pass: a prompt is then mapped pass by pass (the scheduler ensures each prefill chunk
   * when it runs, not the whole prompt at admission), so that a sequence holds at most its
   * windows plus one pass in those layers, as the KV sizing counts it (pool-size.ts layerChunks).
   */
  readonly mapsPerPass?: boolean;
  /** Drops every cached prefix (frees what only the cache held). */
  clearPrefixCache(): void;
  stats(): KvStats;
  dispose(): void;
}
