/**
 * File reads for the weight stores (native/src/io.cc, native/src/io_streamer.cc): a
 * synchronous pread loop, page-cache advice, and the streamer's I/O threads.
 */
import { addon } from './addon.js';

/** Where bytes land: an ArrayBuffer or a view (offsets are then relative to the view). */
export type ByteBuffer = ArrayBuffer | ArrayBufferView;

/**
 * Reads exactly `length` bytes at `fileOffset` of a file (path or fd from openFile) into
 * `buffer` at `byteOffset`. Throws on a short file or an I/O error (message has strerror).
 */
export function readInto(file: string | number, fileOffset: number, buffer: ByteBuffer, byteOffset: number, length: number): number {
  return addon.readInto(file, fileOffset, buffer, byteOffset, length) as number;
}

/** Opens a file read-only (with O_DIRECT when `direct`); returns the fd. Close with closeFile. */
export function openFile(path: string, direct = false): number {
  return addon.openFile(path, direct) as number;
}

/** Closes an fd from openFile. */
export function closeFile(fd: number): void {
  addon.closeFile(fd);
}

/** posix_fadvise advice names. */
export type FileAdvice = 'dontneed' | 'willneed' | 'sequential' | 'random' | 'normal';

/** posix_fadvise over [offset, offset + length) (length 0 = to the end of the file). */
export function fadvise(file: string | number, offset: number, length: number, advice: FileAdvice): void {
  addon.fadvise(file, offset, length, advice);
}

/** Drops a file's pages from the page cache (fdatasync, then posix_fadvise DONTNEED). */
export function evictFromPageCache(path: string): void {
  addon.fadvise(path, 0, 0, 'dontneed');
}

/** How many of a file's pages are in the page cache now (mincore; reads nothing). */
export function pageCacheResidency(path: string): { residentPages: number; totalPages: number; pageSize: number } {
  return addon.pageCacheResidency(path);
}

/** Options of an IoStreamer. */
export interface IoStreamerOptions {
  /** I/O threads (default 2). */
  threads?: number;
  /** Use O_DIRECT for aligned tasks (default true). */
  direct?: boolean;
  /** posix_fadvise(DONTNEED) after each buffered read (default true). */
  dropCache?: boolean;
}

/** Counters of an IoStreamer since it was opened. */
export interface IoStreamerStats {
  directBytes: number;
  bufferedBytes: number;
  directReads: number;
  bufferedReads: number;
  /** Direct reads the device refused (EINVAL) that were redone buffered. */
  directFallbacks: number;
  /** Time the I/O threads spent reading, summed over threads. */
  busyNs: number;
  /** Time callers spent blocked in wait(). */
  waitNs: number;
}

/** Facts of an open IoStreamer. */
export interface IoStreamerInfo {
  path: string;
  fileSize: number;
  threads: number;
  directAvailable: boolean;
  /** Why O_DIRECT could not be opened (e.g. tmpfs). */
  directError?: string;
  dropCache: boolean;
}

interface NativeIoStreamer {
  submit(group: number, fileOffset: number, buffer: ByteBuffer, byteOffset: number, length: number): 'direct' | 'buffered';
  wait(group: number, timeoutMs?: number): { bytes: number; waitNs: number };
  pending(group: number): number;
  stats(): IoStreamerStats;
  info(): IoStreamerInfo;
  close(): void;
}

/**
 * Native I/O threads over one file. Read tasks run FIFO; each task is tagged with a group
 * (e.g. a ring slot) and wait(group) blocks until that group's reads are done. A task goes
 * O_DIRECT when fileOffset and the destination address are 4096-aligned and the buffer has
 * room for the length rounded up to 4096 (the extra tail bytes are overwritten); otherwise it
 * is a buffered pread followed by posix_fadvise(DONTNEED).
 */
export class IoStreamer {
  readonly #native: NativeIoStreamer;

  constructor(path: string, options: IoStreamerOptions = {}) {
    this.#native = new addon.IoStreamer(path, options) as NativeIoStreamer;
  }

  /** Queues a read; returns which path it will take. Keeps `buffer` alive until wait(group). */
  submit(group: number, fileOffset: number, buffer: ByteBuffer, byteOffset: number, length: number): 'direct' | 'buffered' {
    return this.#native.submit(group, fileOffset, buffer, byteOffset, length);
  }

  /**
   * Blocks until every read of `group` is done (returns at once for an unknown group). Throws
   * the group's first I/O error, or when `timeoutMs` (> 0) passes first.
   */
  wait(group: number, timeoutMs = 0): { bytes: number; waitNs: number } {
    return this.#native.wait(group, timeoutMs);
  }

  /** Reads of `group` not finished yet. */
  pending(group: number): number {
    return this.#native.pending(group);
  }

  stats(): IoStreamerStats {
    return this.#native.stats();
  }

  info(): IoStreamerInfo {
    return this.#native.info();
  }

  /** Finishes reads in flight, drops queued ones (their groups fail), closes the file. */
  close(): void {
    this.#native.close();
  }
}
