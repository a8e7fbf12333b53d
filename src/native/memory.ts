/**
 * Aligned buffers and memory locking (native/src/memory.cc).
 *
 * Weight memory is allocated with posix_memalign so O_DIRECT reads can land in it and SIMD
 * kernels see aligned rows; it is freed when the ArrayBuffer is garbage-collected. Locking is
 * advisory, as in llama.cpp: a failure comes back as `{ locked: false, error }` with a hint.
 */
import { constants as bufferConstants } from 'node:buffer';
import { addon } from './addon.js';

/** Result of lockMemory: whether the pages are pinned, and why not. */
export interface LockResult {
  locked: boolean;
  /** strerror text plus a hint (RLIMIT_MEMLOCK) when locking failed. */
  error?: string;
}

/** Process-wide figures of the aligned allocator. */
export interface MemoryStats {
  /** Bytes in live allocAligned buffers. */
  alignedBytes: number;
  alignedBuffers: number;
  /** Bytes of those buffers currently mlocked. */
  lockedBytes: number;
  /** RLIMIT_MEMLOCK soft limit in bytes, -1 = unlimited. */
  memlockLimit: number;
  pageSize: number;
}

/**
 * The largest allocAligned buffer: Node makes an external ArrayBuffer through a Buffer, so it
 * is bounded by buffer.constants.MAX_LENGTH (4 GiB on Node 20). Above it Node 20 frees the
 * memory itself and the addon's finalizer frees it again (an abort, measured): larger weight
 * memory is held in segments (weights/segments.ts).
 */
export const MAX_ALLOC_BYTES = Math.min(bufferConstants.MAX_LENGTH, 2 ** 32);

/**
 * An ArrayBuffer of `bytes` bytes whose data starts at a multiple of `alignment` (a power of
 * two, default 4096). Contents are uninitialized. At most MAX_ALLOC_BYTES (RangeError).
 */
export function allocAligned(bytes: number, alignment = 4096): ArrayBuffer {
  if (bytes > MAX_ALLOC_BYTES) throw new RangeError(`allocAligned: ${bytes} bytes is more than one buffer can hold (${MAX_ALLOC_BYTES}); split the allocation`);
  return addon.allocAligned(bytes, alignment) as ArrayBuffer;
}

/**
 * Asks for 2 MiB pages under the buffer's 2 MiB-aligned part (madvise MADV_HUGEPAGE), before its
 * first touch; best effort (false where refused). See native/src/memory.cc for why weights want it.
 */
export function adviseHugePages(buffer: ArrayBuffer): boolean {
  return addon.adviseHugePages(buffer) as boolean;
}

/** Pins an allocAligned buffer in RAM (mlock), best effort; never throws for a failed lock. */
export function lockMemory(buffer: ArrayBuffer): LockResult {
  return addon.lockMemory(buffer) as LockResult;
}

/** Undoes lockMemory (a no-op for a buffer that is not locked). */
export function unlockMemory(buffer: ArrayBuffer): void {
  addon.unlockMemory(buffer);
}

/** Totals of aligned and locked memory, and the memlock limit. */
export function memoryStats(): MemoryStats {
  return addon.memoryStats() as MemoryStats;
}

/** Address of a buffer's data (for alignment checks in tests). @internal */
export function bufferAddress(buffer: ArrayBuffer): number {
  return addon.bufferAddress(buffer) as number;
}
