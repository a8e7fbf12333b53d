/**
 * Reserved memory regions whose pages can be given back (native/src/memory_region.cc): the
 * mechanism under the elastic memory pool. A region is address space (mmap NORESERVE) that
 * costs memory only where it is written; lockRange pins pages, discardRange unlocks them and
 * returns them to the kernel (madvise MADV_DONTNEED) at once.
 *
 *   const r = reserveRegion(64 << 20);            // 64 MiB of address space, nothing used yet
 *   new Uint8Array(r, 0, 4096).fill(1);           // the first page is now memory
 *   lockRange(r, 0, 4096);                        // pinned (best effort, like lockMemory)
 *   discardRange(r, 0, 4096);                     // unpinned and freed; reads as zeros
 *   releaseRegion(r);                             // unmapped now; r is detached
 *
 * Offsets are multiples of the page size; lengths are rounded up to whole pages.
 */
import { addon } from './addon.js';
import type { LockResult } from './memory.js';

/** Process-wide figures of reserved regions. */
export interface RegionStats {
  regions: number;
  /** Address space reserved (not memory: only written pages cost memory). */
  reservedBytes: number;
  /** Bytes of region pages mlocked now. */
  lockedBytes: number;
  pageSize: number;
}

/** An ArrayBuffer over `bytes` (rounded up to pages) of reserved, zero-filled address space. */
export function reserveRegion(bytes: number): ArrayBuffer {
  return addon.reserveRegion(bytes) as ArrayBuffer;
}

/** mlocks [offset, offset + bytes) of a region (best effort; never throws for a refused lock). */
export function lockRange(region: ArrayBuffer, offset: number, bytes: number): LockResult {
  return addon.lockRange(region, offset, bytes) as LockResult;
}

/** munlocks [offset, offset + bytes) of a region. */
export function unlockRange(region: ArrayBuffer, offset: number, bytes: number): void {
  addon.unlockRange(region, offset, bytes);
}

/** munlock + madvise(MADV_DONTNEED): the range's memory is returned now and reads as zeros. */
export function discardRange(region: ArrayBuffer, offset: number, bytes: number): void {
  addon.discardRange(region, offset, bytes);
}

/** Bytes of [offset, offset + bytes) backed by physical memory now (mincore). */
export function residentBytes(region: ArrayBuffer, offset: number, bytes: number): number {
  return addon.residentBytes(region, offset, bytes) as number;
}

/** Unmaps a region now and detaches its buffer (views become empty). */
export function releaseRegion(region: ArrayBuffer): void {
  addon.releaseRegion(region);
}

/** Totals over live regions. */
export function regionStats(): RegionStats {
  return addon.regionStats() as RegionStats;
}
