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
export function kvPoolSize(shape: KvShape, parallel: number, layout: KvLayout, maxRows = Infinity): { kvBytes: number; chunkBytes: number } {
  if (!(Number.isInteger(parallel) && parallel >= 1)) throw new RangeError(`parallel must be an integer >= 1, got ${parallel}`);
  if (layout === 'contiguous') return { kvBytes: parallel * shape.maxContext * bytesPerToken(shape), chunkBytes: 0 };
  if (layout === 'paged') {
    const numBlocks = parallel * (Math.ceil(shape.maxContext / PAGED_BLOCK_TOKENS) + 1);
    return { kvBytes: numBlocks * pagedPoolGeometry(shape, 0).blockBytes, chunkBytes: 0 };
  }
  const chunkBytes = chooseChunkBytes(shape, parallel * shape.maxContext * bytesPerToken(shape));
  // parallel x (one full sequence + its spare tails)
  return { kvBytes: parallel * kvFloorBytes(shape, chunkBytes, maxRows), chunkBytes };
}

/**
 * Chunks one sequence of `tokens` tokens holds at most over its layers' K and V tensors, in
 * chunks of `tokensPerChunk`: whole chunks of every token for a global layer; for a
 * sliding-window layer of window w (shape.layerWindows) at most ceil((w - 1 + maxRows) /
 * tokensPerChunk) + 1, because the vTensor manager unmaps what falls behind a window after
 * every forward pass (vtensor-manager.ts dropBehindWindows), and a pass adds at most `maxRows`
 * rows of a sequence: with n tokens committed and n + r ensured it holds the slots from
 * floor((n + 1 - w) / t) to ceil((n + r) / t), at most ceil((w + r - 2) / t) + 1 of them.
 * Gemma 3's local layers (window 512, 5 of every 6) at 4096 tokens of 128-token chunks: 9
 * chunks each instead of 32. maxRows = Infinity: every layer counts whole (no pass bound).
 */
export function sequenceChunks(shape: KvShape, tokensPerChunk: number, tokens: number, maxRows = Infinity): number {
  return 2 * layerChunks(shape, tokensPerChunk, tokens, maxRows).reduce((a, n) => a + n, 0);
}

/** Per layer: the chunks its K (and as many its V) holds at most, as sequenceChunks() counts them. */
export function layerChunks(shape: KvShape, tokensPerChunk: number, tokens: number, maxRows = Infinity): number[] {
  const whole = Math.ceil(Math.min(tokens, shape.maxContext) / tokensPerChunk);
  const w = shape.layerWindows;
  return Array.from({ length: shape.numLayers }, (_, l) => (w !== undefined && w[l]! > 0 && Number.isFinite(maxRows) ? Math.min(whole, Math.ceil((w[l]! - 1 + maxRows) / tokensPerChunk) + 1) : whole));
}

/**
 * The elastic pool's default KV floor (engine/memory-pool.ts): one full-context sequence and
 * its spare tails, in `chunkBytes` chunks (the chunk size of the engine's pool, which may be
 * larger than one sequence alone would choose), sliding-window layers counted as
 * sequenceChunks() does for passes of at most `maxRows` rows. KV up to the floor never
 * displaces weights.
 */
export function kvFloorBytes(shape: KvShape, chunkBytes: number, maxRows = Infinity): number {
  if (!(Number.isInteger(chunkBytes) && chunkBytes > 0 && chunkBytes % (shape.kvDim * 2) === 0)) throw new RangeError(`chunkBytes must be a positive multiple of the row (${shape.kvDim * 2} bytes), got ${chunkBytes}`);
  const tokensPerChunk = chunkBytes / (shape.kvDim * 2);
  return (sequenceChunks(shape, tokensPerChunk, shape.maxContext, maxRows) + 2 * shape.numLayers) * chunkBytes;
}

/** vTensor bytes `numSequences` sequences of `tokens` tokens hold at most (sequenceChunks()). */
export function kvBytesFor(shape: KvShape, chunkBytes: number, numSequences: number, tokens: number, maxRows = Infinity): number {
  const tokensPerChunk = chunkBytes / (shape.kvDim * 2);
  return numSequences * sequenceChunks(shape, tokensPerChunk, tokens, maxRows) * chunkBytes;
}
