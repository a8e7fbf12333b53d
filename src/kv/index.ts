/**
 * KV cache layouts behind one interface (KvManager). The engine creates one with
 * createKvManager() and never needs to know which layout it got.
 */
import type { KvShape } from './cache.js';
import type { KvManager } from './manager.js';
import { ContiguousKvManager } from './contiguous.js';

export type { KvCache, KvShape, SeqId } from './cache.js';
export type { KvManager, KvStats, PrefixMatch } from './manager.js';
export { ContiguousKvManager } from './contiguous.js';

/** Options of createKvManager(). */
export interface KvManagerOptions {
  layout: 'vtensor' | 'contiguous';
  shape: KvShape;
  /** KV share of the memory budget, bytes. */
  capacityBytes: number;
  /** vTensor chunk size (default 64 KiB). */
  chunkBytes?: number;
  /** Contiguous: number of slots (default capacity / slot bytes). */
  maxSequences?: number;
}

/** A KV manager of the requested layout. */
export function createKvManager(options: KvManagerOptions): KvManager {
  switch (options.layout) {
    case 'contiguous':
      return new ContiguousKvManager(options);
    default:
      throw new RangeError(`KV layout '${String(options.layout)}' is not available yet; supported: contiguous`);
  }
}
