/**
 * How many bytes of KV pool an engine with `parallel` sequences of `maxContext` tokens needs:
 * the KV share of a memory budget, used by the engine and by `flexinfer plan` alike.
 */
import type { KvShape } from './cache.js';
import { chooseChunkBytes } from './chunk-size.js';
import { bytesPerToken } from './shape.js';
import { PAGED_BLOCK_TOKENS, pagedPoolGeometry } from './paged-manager.js';
import type { KvLayout } from './layouts.js';

/**
 * Contiguous: `parallel` max-context slots. vTensor: `parallel` full-context sequences, each
 * rounded up to whole chunks per layer tensor, plus spare chunks for one partial tail per
 * (sequence, layer, K/V). A cached prefix costs no more than that: the next turn of a chat (or
 * a request with a shared system prompt) maps the cached full chunks instead of copying them
 * and copies only the tail chunk, and cached chunks nobody maps are evicted (LRU) when a
 * running sequence needs the room. (A whole spare sequence, as before, doubled the KV share of
 * a budget at parallel 1: 256 MiB of a 904 MiB budget for Llama-2-7B at 512 tokens.)
 *
 * Paged: `parallel` full-context sequences in whole 16-token blocks, plus one spare block per
 * sequence for the copy-on-write of a shared last block (a fork, or a prefix hit that ends
 * inside a cached block); cached blocks nobody holds are evicted (LRU) as for vTensor.
 */
export function kvPoolSize(shape: KvShape, parallel: number, layout: KvLayout): { kvBytes: number; chunkBytes: number } {
  if (!(Number.isInteger(parallel) && parallel >= 1)) throw new RangeError(`parallel must be an integer >= 1, got ${parallel}`);
  if (layout === 'contiguous') return { kvBytes: parallel * shape.maxContext * bytesPerToken(shape), chunkBytes: 0 };
  if (layout === 'paged') {
    const numBlocks = parallel * (Math.ceil(shape.maxContext / PAGED_BLOCK_TOKENS) + 1);
    return { kvBytes: numBlocks * pagedPoolGeometry(shape, 0).blockBytes, chunkBytes: 0 };
  }
  const chunkBytes = chooseChunkBytes(shape, parallel * shape.maxContext * bytesPerToken(shape));
  // parallel x (one full sequence + its spare tails)
  return { kvBytes: parallel * kvFloorBytes(shape, chunkBytes), chunkBytes };
}

/**
 * The elastic pool's default KV floor (engine/memory-pool.ts): one full-context sequence and
 * its spare tails, in `chunkBytes` chunks (the chunk size of the engine's pool, which may be
 * larger than one sequence alone would choose). KV up to the floor never displaces weights.
 */
export function kvFloorBytes(shape: KvShape, chunkBytes: number): number {
  if (!(Number.isInteger(chunkBytes) && chunkBytes > 0 && chunkBytes % (shape.kvDim * 2) === 0)) throw new RangeError(`chunkBytes must be a positive multiple of the row (${shape.kvDim * 2} bytes), got ${chunkBytes}`);
  const tokensPerChunk = chunkBytes / (shape.kvDim * 2);
  const chunksPerSequence = 2 * shape.numLayers * Math.ceil(shape.maxContext / tokensPerChunk);
  return (chunksPerSequence + 2 * shape.numLayers) * chunkBytes;
}

/** vTensor bytes `numSequences` sequences of `tokens` tokens map (whole chunks per layer's K and V). */
export function kvBytesFor(shape: KvShape, chunkBytes: number, numSequences: number, tokens: number): number {
  const tokensPerChunk = chunkBytes / (shape.kvDim * 2);
  return numSequences * 2 * shape.numLayers * Math.ceil(Math.min(tokens, shape.maxContext) / tokensPerChunk) * chunkBytes;
}
