/**
 * What the model sees of the KV cache. The model never knows how K/V is stored (contiguous
 * preallocation, vTensor chunks mapped under a reservation, ...): it asks for one sequence's
 * K or V of one layer as a plain contiguous f16 array and writes new rows into it.
 */

/** Opaque sequence id handed out by the cache owner (engine / scheduler). */
export type SeqId = number;

/** Shape facts the cache needs from the model. */
export interface KvShape {
  numLayers: number;
  /** Elements per token per layer for K (and for V): numKvHeads * headDim. */
  kvDim: number;
  /** Largest number of tokens one sequence may hold. */
  maxContext: number;
  /**
   * Per layer: the sliding window of a local layer (a query at position p reads keys
   * [p - window + 1, p] only), 0 for a global layer; absent = every layer global. The vTensor
   * layout unmaps a local layer's chunks once the window has passed them.
   */
  layerWindows?: readonly number[];
}

/**
 * The model-facing interface of a KV cache.
 *
 * keys()/values() return an f16 view of the whole virtual extent of that sequence's
 * K (or V) for one layer: element [pos * kvDim + i]. Only positions the owner made
 * room for (see `ensure`) may be touched; for virtual layouts the rest is not mapped and
 * touching it kills the process. Write only positions [length(seq), ensured): positions
 * before length(seq) may be shared with other sequences (vTensor prefix sharing).
 */
export interface KvCache {
  readonly shape: KvShape;
  /** K of `seq` at `layer`: f16 bits, [maxContext, kvDim]. */
  keys(seq: SeqId, layer: number): Uint16Array;
  /** V of `seq` at `layer`: f16 bits, [maxContext, kvDim]. */
  values(seq: SeqId, layer: number): Uint16Array;
}

/**
 * A KV cache whose K/V live in fixed blocks of one pool per layer (vLLM's PagedAttention), with
 * no contiguous view of a sequence: keys()/values() throw, and the model reaches a sequence's
 * rows through its block table (paged attention kernels; src/native/ops.ts).
 *
 * Pool of one layer's K (or V): [numBlocks, numKvHeads, blockTokens, headDim] f16 bits, where
 * numKvHeads = kvDim / headDim. Position p of a sequence lives in block blockTable(seq)[p / 16].
 */
export interface PagedKvCache extends KvCache {
  /** Tokens per block (16). */
  readonly blockTokens: number;
  /** Elements of one kv head's row in a block run. */
  readonly headDim: number;
  /** K pool of `layer`. */
  keyPool(layer: number): Uint16Array;
  /** V pool of `layer`. */
  valuePool(layer: number): Uint16Array;
  /** Block ids of `seq` in order; a view that is valid until the sequence's next ensure/truncate/release. */
  blockTable(seq: SeqId): Int32Array;
}

/** Whether the cache is paged (reach K/V through block tables, not keys()/values()). */
export function isPagedKvCache(cache: KvCache): cache is PagedKvCache {
  return typeof (cache as Partial<PagedKvCache>).blockTable === 'function';
}
