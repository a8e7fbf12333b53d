/**
 * File reads for the weight stores (native/src/io.cc, native/src/io_streamer.cc): a
 * synchronous pread loop, page-cache advice, and the streaming I/O engine.
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
  /** Pieces in flight (default 8); setPath can change it up to maxDepth. */
  depth?: number;
  /** Most pieces setPath may put in flight (default 32; the threads engine starts this many threads). */
  maxDepth?: number;
  /** Each task is split into pieces of at most this many bytes, a multiple of 4096 (default 1 MiB). */
  pieceBytes?: number;
  /** 'auto' (default: io_uring, else threads), 'io_uring' (fail without it) or 'threads' (pread per thread). */
  engine?: 'auto' | 'io_uring' | 'threads';
  /** Use O_DIRECT for aligned tasks (default true); setPath can change it. */
  direct?: boolean;
  /** posix_fadvise(DONTNEED) after each buffered piece (default true). */
  dropCache?: boolean;
  /**
   * Let the kernel read ahead of buffered pieces (default true). false: POSIX_FADV_RANDOM on
   * the streamer's own buffered fd, so each buffered piece reads exactly its range.
   */
  readAhead?: boolean;
  /**
   * Read buffered pieces with RWF_DONTCACHE (Linux 6.14+: the kernel drops their pages; default
   * false). Where the kernel or file system refuses it, pieces are read without it (info().dontCacheError).
   */
  dontCache?: boolean;
}

/** Counters of an IoStreamer since it was opened (pieces = the reads the device sees). */
export interface IoStreamerStats {
  directBytes: number;
  bufferedBytes: number;
  /** Pieces read with O_DIRECT. */
  directReads: number;
  bufferedReads: number;
  /** Wall time with at least one O_DIRECT piece in flight. directBytes / directBusyNs = the direct path's rate. */
  directBusyNs: number;
  bufferedBusyNs: number;
  /** Wall time with at least one piece in flight. */
  busyNs: number;
  /** Integral of pieces in flight over time; / busyNs = mean depth while busy. */
  inflightNs: number;
  /** Pieces in flight now. */
  inflight: number;
  maxInflight: number;
  /** Pieces queued, not yet in flight. */
  queued: number;
  /** Direct reads the device refused (EINVAL) that were redone buffered. */
  directFallbacks: number;
  /** Reads the kernel returned short that were continued. */
  shortReads: number;
  /** Buffered pieces the kernel refused RWF_DONTCACHE for, redone without it. */
  dontCacheFallbacks: number;
  /** Piece latency (submission to completion) percentiles, microseconds (histogram bucket edges, 9% apart). */
  latencyP50Us: number;
  latencyP90Us: number;
  latencyP99Us: number;
  /** Time callers spent blocked in wait(). */
  waitNs: number;
}

/** Facts of an open IoStreamer. */
export interface IoStreamerInfo {
  path: string;
  fileSize: number;
  /** The engine running: 'io_uring', or 'threads' where the kernel refused io_uring (see engineError). */
  engine: 'io_uring' | 'threads';
  /** Why io_uring could not be used. */
  engineError?: string;
  depth: number;
  maxDepth: number;
  pieceBytes: number;
  /** O_DIRECT for eligible tasks now. */
  direct: boolean;
  directAvailable: boolean;
  /** Why O_DIRECT could not be opened (e.g. tmpfs). */
  directError?: string;
  dropCache: boolean;
  /** false when the buffered fd reads no ahead (readAhead: false was accepted). */
  readAhead: boolean;
  /** Buffered pieces are read with RWF_DONTCACHE now (false once the kernel refused it). */
  dontCache: boolean;
  /** Why RWF_DONTCACHE is not used although asked for. */
  dontCacheError?: string;
}

/** How the open file differs from what its path names now. */
export interface FileChange {
  reason: 'truncated' | 'modified' | 'replaced' | 'deleted';
  detail: string;
}

interface NativeIoStreamer {
  submit(group: number, fileOffset: number, buffer: ByteBuffer, byteOffset: number, length: number): 'direct' | 'buffered';
  wait(group: number, timeoutMs?: number): { bytes: number; waitNs: number };
  pending(group: number): number;
  setPath(direct: boolean, depth: number): void;
  stats(): IoStreamerStats;
  info(): IoStreamerInfo;
  checkFile(): FileChange | null;
  close(): void;
}

/**
 * The streaming I/O engine over one file (native/src/io_engine.h): tasks are split into pieces
 * of at most `pieceBytes`, queued FIFO, and read with `depth` pieces in flight through
 * io_uring (raw syscalls; a pool of pread threads where the kernel refuses it). Each task is
 * tagged with a group (e.g. a ring slot) and wait(group) blocks until that group's reads are
 * done. A task goes O_DIRECT when the path is direct, fileOffset and the destination address
 * are 4096-aligned and the buffer has room for the length rounded up to 4096 (the extra tail
 * bytes are overwritten); otherwise buffered reads followed by posix_fadvise(DONTNEED).
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
   * the group's first failure (an Error with `code`: an errno name such as 'EIO', 'EOF' when
   * the file ended early, 'ECANCELED' after close(), and `fileOffset`), or an Error with code
   * 'ETIMEDOUT' when `timeoutMs` (> 0) passes first.
   */
  wait(group: number, timeoutMs = 0): { bytes: number; waitNs: number } {
    return this.#native.wait(group, timeoutMs);
  }

  /** Reads of `group` not finished yet (pieces). */
  pending(group: number): number {
    return this.#native.pending(group);
  }

  /** The read path (O_DIRECT or buffered) and depth for tasks submitted from now on. */
  setPath(direct: boolean, depth: number): void {
    this.#native.setPath(direct, depth);
  }

  stats(): IoStreamerStats {
    return this.#native.stats();
  }

  info(): IoStreamerInfo {
    return this.#native.info();
  }

  /** null while the open file is what its path names and unchanged; else how it changed. */
  checkFile(): FileChange | null {
    return this.#native.checkFile();
  }

  /** Finishes reads in flight, drops queued ones (their groups fail), closes the file. */
  close(): void {
    this.#native.close();
  }
}
