/**
 * KV cache layouts behind one interface (KvManager). The engine creates one with
 * createKvManager() and never needs to know which layout it got.
 */
import type { KvShape } from './cache.js';
import type { KvManager } from './manager.js';
import { KV_LAYOUTS, type KvLayout } from './layouts.js';
import type { KvChunkGrant } from './grant.js';
import { ContiguousKvManager } from './contiguous.js';
import { VTensorKvManager } from './vtensor-manager.js';
import { PagedKvManager } from './paged-manager.js';

export type { KvCache, KvShape, SeqId } from './cache.js';
export type { KvManager, KvStats, PrefixMatch, RoomCount, SequenceEnd } from './manager.js';
export { ContiguousKvManager } from './contiguous.js';
export { VTensorKvManager } from './vtensor-manager.js';
export { PagedKvManager } from './paged-manager.js';
export { kvPoolSize } from './pool-size.js';
export { isPagedKvCache, type PagedKvCache } from './cache.js';
export { KV_LAYOUTS, type KvLayout } from './layouts.js';
export type { KvChunkGrant } from './grant.js';

/** Options of createKvManager(). */
export interface KvManagerOptions {
  layout: KvLayout;
  shape: KvShape;
  /** KV share of the memory budget, bytes. */
  capacityBytes: number;
  /** vTensor chunk size (default 64 KiB); a multiple of 4096 and of kvDim * 2. */
  chunkBytes?: number;
  /** vTensor: back the chunk pool with 2 MiB huge pages when the system has them. */
  hugePages?: boolean;
  /** Contiguous: number of slots (default capacity / slot bytes). vTensor, paged: live sequences (default unlimited). */
  maxSequences?: number;
  /** Paged: elements per kv head (a block holds kvDim / headDim runs of 16 rows); default kvDim. */
  headDim?: number;
  /** vTensor: chunks come from an elastic pool shared with the weights (capacityBytes is the ceiling). */
  grant?: KvChunkGrant;
  /** vTensor: most rows a forward pass adds to one sequence (see VTensorKvOptions.maxRowsPerPass). */
  maxRowsPerPass?: number;
}

/** A KV manager of the requested layout. */
export function createKvManager(options: KvManagerOptions): KvManager {
  switch (options.layout) {
    case 'contiguous':
      return new ContiguousKvManager(options);
    case 'vtensor':
      return new VTensorKvManager(options);
    case 'paged':
      return new PagedKvManager(options);
    default:
      throw new RangeError(`KV layout '${String(options.layout)}' is not supported; supported: ${KV_LAYOUTS.join(', ')}`);
  }
}
export { runKvMemoryBench, formatKvMemoryBench, TINYLLAMA_KV_SHAPE } from './bench-memory.js';
export type { KvMemoryBenchOptions, KvMemoryBenchRow } from './bench-memory.js';
