/**
 * Typed surface of native/src/vmem.cc: a pool of physical chunks (one memfd) and PROT_NONE
 * address-space reservations that chunks are mapped into (the CPU form of CUDA VMM's
 * reserve / create / map / unmap). Mechanism only; the vTensor policy is in src/kv/.
 *
 *   const pool = new ChunkPool({ chunkBytes: 64 << 10, capacityChunks: 1024 });
 *   const r = new Reservation(pool, 16 * pool.chunkBytes);   // r.buffer: 1 MiB, all PROT_NONE
 *   const c = pool.allocChunk();                              // -1 when the pool is exhausted
 *   r.map(0, c);                                              // [0, 64 KiB) now readable/writable
 *   new Uint16Array(r.buffer, 0, 8).fill(1);
 *   r.unmap(0); pool.freeChunk(c); r.release(); pool.dispose();
 *
 * Touching an unmapped range of `buffer` kills the process (SIGSEGV), as for any unmapped
 * memory: callers map before they touch. release() detaches `buffer` (all views become
 * length 0), so JS cannot reach a released range.
 */
import { addon } from './addon.js';

/** Options of a chunk pool. */
export interface ChunkPoolOptions {
  /** Bytes per chunk, a multiple of 4096 (default 64 KiB; 2 MiB for huge pages). */
  chunkBytes?: number;
  /** Maximum number of chunks (the memfd grows up to capacityChunks * chunkBytes). */
  capacityChunks: number;
  /** Back the pool with 2 MiB huge pages (MFD_HUGETLB) when the system has them. */
  hugePages?: boolean;
}

/** Counters of a chunk pool. */
export interface ChunkPoolStats {
  chunkBytes: number;
  capacityChunks: number;
  /** Chunks handed out by allocChunk() and not freed. */
  usedChunks: number;
  freeChunks: number;
  /** Current memfd size in chunks (grows on demand). */
  fileChunks: number;
  /** Live (reservation, offset) -> chunk mappings. */
  mappedChunks: number;
  reservations: number;
  maps: number;
  unmaps: number;
  copies: number;
  discards: number;
  grows: number;
  mapMs: number;
  unmapMs: number;
  copyMs: number;
  discardMs: number;
  /** Background maps submitted and not yet drained. */
  pendingMaps: number;
  /** Background maps done (drained), failed, and the time the mapper thread spent on them. */
  backgroundMaps: number;
  backgroundFailures: number;
  backgroundMapMs: number;
}

/** A background map that failed; the slot is unmapped again (see ChunkPool.drain()). */
export interface FailedMap {
  /** Reservation handle (Reservation.handle). */
  handle: number;
  offset: number;
  chunk: number;
  /** 'ENOMEM' when the process ran out of mappings (vm.max_map_count). */
  code: string;
  error: string;
}

/** Default chunk size: 64 KiB (vTensor's CPU default; 2 MiB with huge pages). */
export const DEFAULT_CHUNK_BYTES = 64 << 10;

/** A pool of fixed-size physical chunks on one memfd. */
export class ChunkPool {
  readonly chunkBytes: number;
  readonly capacityChunks: number;
  /** 'memfd-hugetlb' | 'memfd' | 'heap' (copying fallback where memfd is missing). */
  readonly backing: string;
  /** Whether huge pages are really in use. */
  readonly hugePages: boolean;
  /** Why huge pages are off although requested ('' otherwise). */
  readonly hugePagesNote: string;
  /** Whether one chunk mapped into two reservations is the same memory (false for 'heap'). */
  readonly sharing: boolean;
  /** @internal */
  readonly handle: number;
  private readonly free: number[] = [];
  private readonly used: Uint8Array;
  private disposed = false;
  private pending = 0;

  constructor(options: ChunkPoolOptions) {
    const chunkBytes = options.chunkBytes ?? (options.hugePages ? 2 << 20 : DEFAULT_CHUNK_BYTES);
    const info = addon.vmemPoolCreate(chunkBytes, options.capacityChunks, options.hugePages === true) as {
      handle: number;
      backing: string;
      hugePages: boolean;
      hugePagesNote: string;
      sharing: boolean;
    };
    this.handle = info.handle;
    this.backing = info.backing;
    this.hugePages = info.hugePages;
    this.hugePagesNote = info.hugePagesNote;
    this.sharing = info.sharing;
    this.chunkBytes = chunkBytes;
    this.capacityChunks = options.capacityChunks;
    this.used = new Uint8Array(this.capacityChunks);
    for (let c = this.capacityChunks - 1; c >= 0; c--) this.free.push(c); // hand out low ids first
  }

  /** Background maps submitted with Reservation.mapAsync() and not yet drained. */
  get pendingMaps(): number {
    return this.pending;
  }

  /**
   * Waits for every background map to finish; returns the ones that failed (already undone
   * natively: the caller forgets them). Call before touching newly mapped memory and before any
   * other operation on this pool (they throw while maps are in flight).
   */
  drain(): FailedMap[] {
    this.checkLive();
    if (this.pending === 0) return [];
    this.pending = 0;
    return addon.vmemDrain(this.handle) as FailedMap[];
  }

  /** @internal */
  notePending(): void {
    this.pending++;
  }

  /** Number of chunks allocChunk() can still hand out. */
  get numFreeChunks(): number {
    return this.free.length;
  }

  /** A free chunk's index, or -1 if the pool is exhausted. Its contents are unspecified. */
  allocChunk(): number {
    this.checkLive();
    const c = this.free.pop();
    if (c === undefined) return -1;
    this.used[c] = 1;
    return c;
  }

  /** Returns a chunk to the free list and frees its physical pages. It must be unmapped everywhere. */
  freeChunk(chunk: number): void {
    this.checkChunk(chunk);
    addon.vmemChunkDiscard(this.handle, chunk); // throws if still mapped
    this.used[chunk] = 0;
    this.free.push(chunk);
  }

  /** Copies bytes [0, bytes) of chunk `src` into chunk `dst` (default: the whole chunk). */
  copyChunk(src: number, dst: number, bytes?: number): void {
    this.checkChunk(src);
    this.checkChunk(dst);
    addon.vmemChunkCopy(this.handle, src, dst, bytes);
  }

  /** Number of reservations a chunk is mapped into. */
  mapCount(chunk: number): number {
    return addon.vmemChunkMapCount(this.handle, chunk) as number;
  }

  stats(): ChunkPoolStats {
    this.checkLive();
    const s = addon.vmemPoolStats(this.handle) as Omit<ChunkPoolStats, 'usedChunks' | 'freeChunks'>;
    return { ...s, usedChunks: this.capacityChunks - this.free.length, freeChunks: this.free.length };
  }

  /** Frees the pool and every reservation still open on it (their buffers are detached). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    addon.vmemPoolDestroy(this.handle);
  }

  private checkLive(): void {
    if (this.disposed) throw new Error('ChunkPool used after dispose()');
  }

  private checkChunk(chunk: number): void {
    this.checkLive();
    if (!Number.isInteger(chunk) || chunk < 0 || chunk >= this.capacityChunks) {
      throw new RangeError(`chunk index must be an integer in [0, ${this.capacityChunks}), got ${chunk}`);
    }
    if (this.used[chunk] !== 1) throw new Error(`chunk ${chunk} is not allocated (freed twice?)`);
  }
}

/** A PROT_NONE address range that chunks of one pool are mapped into. */
export class Reservation {
  readonly pool: ChunkPool;
  readonly bytes: number;
  /** External ArrayBuffer over the whole range; detached by release(). */
  readonly buffer: ArrayBuffer;
  /** @internal Native handle (0 once released); FailedMap.handle refers to it. */
  handle: number;

  /** Reserves `bytes` (rounded up to whole chunks) of address space; nothing is mapped yet. */
  constructor(pool: ChunkPool, bytes: number) {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`reservation bytes must be a positive integer, got ${bytes}`);
    this.pool = pool;
    this.bytes = Math.ceil(bytes / pool.chunkBytes) * pool.chunkBytes;
    const r = addon.vmemReserve(pool.handle, this.bytes) as { handle: number; buffer: ArrayBuffer };
    this.handle = r.handle;
    this.buffer = r.buffer;
  }

  get released(): boolean {
    return this.handle === 0;
  }

  /** Maps `chunk` at byte `offset` (a multiple of the chunk size, inside the range). */
  map(offset: number, chunk: number): void {
    addon.vmemMap(this.handle, offset, chunk);
  }

  /**
   * Like map(), but the mmap runs on the background mapper thread: returns at once. The range
   * may be touched only after pool.drain().
   */
  mapAsync(offset: number, chunk: number): void {
    addon.vmemMapAsync(this.handle, offset, chunk);
    this.pool.notePending();
  }

  /** Makes [offset, offset + chunkBytes) inaccessible again; the chunk stays allocated. */
  unmap(offset: number): void {
    addon.vmemUnmap(this.handle, offset);
  }

  /** Chunk mapped at `offset`, or -1. */
  chunkAt(offset: number): number {
    return addon.vmemChunkAt(this.handle, offset) as number;
  }

  /** Unmaps everything and frees the range; `buffer` is detached. Chunks stay allocated. */
  release(): void {
    if (this.handle === 0) return;
    addon.vmemRelease(this.handle);
    this.handle = 0;
  }
}
