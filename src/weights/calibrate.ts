/**
 * Storage calibration: measure, don't assume, how the model's storage reads best. Reads of
 * the model file in the streaming pattern (chunks with gaps) with O_DIRECT and buffered
 * (pages dropped after use), each after evicting the file from the page cache; the faster
 * path wins. Figures are cached per device
 * in ~/.cache/flexinfer/hardware.json ($FLEXINFER_CACHE_DIR overrides the directory).
 */
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { GgmlType, ggmlRowBytes, ggmlTypeInfo } from '../gguf/ggml-type.js';
import { allocAligned, evictFromPageCache, IoStreamer, matmul } from '../native/index.js';
import type { HardwareFigures } from './plan.js';

/** Measured read figures of one device. */
export interface Calibration extends HardwareFigures {
  /** st_dev of the file's device (the cache key). */
  device: string;
  directBytesPerSec: number;
  bufferedBytesPerSec: number;
  /** Whether O_DIRECT was the faster path. */
  preferDirect: boolean;
  /** I/O threads used for the direct measurement. */
  ioThreads: number;
  bytesMeasured: number;
  /** ggml type name the compute figure (computeBytesPerSec) was measured with. */
  computeType?: string;
  measuredAt: string;
  file: string;
}

/** Options of calibrateStorage. */
export interface CalibrateOptions {
  /** Bytes to read per measurement (default min(file size, 1 GiB)). */
  bytes?: number;
  /** Request size (default 8 MiB). */
  chunkBytes?: number;
  /** I/O threads for the direct measurement (default 2). The buffered one uses one reader. */
  ioThreads?: number;
  /** Store the result in the cache (default true). */
  save?: boolean;
  /** Also measure matmul speed (computeBytesPerSec) on weights of this type. */
  computeType?: GgmlType;
}

/** Where the cache lives. */
export function calibrationCachePath(): string {
  return join(process.env.FLEXINFER_CACHE_DIR ?? join(homedir(), '.cache', 'flexinfer'), 'hardware.json');
}

function deviceOf(path: string): string {
  return String(statSync(path).dev);
}

/**
 * Read bandwidth (bytes/s) over `bytes` of a file in chunk requests (sequential, or every
 * other chunk when `strided`), cache evicted first, with
 * `threads` I/O threads and `threads * 2` requests in flight.
 */
export function measureReadBandwidth(path: string, direct: boolean, options: { bytes?: number; chunkBytes?: number; threads?: number; strided?: boolean } = {}): number {
  const size = statSync(path).size;
  const chunk = options.chunkBytes ?? 8 * 1024 * 1024;
  // Strided: read every other chunk, as streaming does when resident tensors sit between
  // streamed ones (it defeats readahead, which a plain sequential read flatters).
  const stride = options.strided ? 2 * chunk : chunk;
  const total = measuredBytes(size, chunk, options.strided === true, options.bytes);
  const threads = options.threads ?? (direct ? 2 : 1);
  const inflight = threads * 2;
  const ring = allocAligned(chunk * inflight, 4096);
  evictFromPageCache(path);
  const s = new IoStreamer(path, { threads, direct, dropCache: true });
  try {
    const n = Math.ceil(total / chunk);
    const t0 = process.hrtime.bigint();
    let read = 0;
    for (let i = 0, waited = 0; waited < n; waited++) {
      for (; i < n && i - waited < inflight; i++) {
        const len = Math.min(chunk, total - i * chunk);
        s.submit(i, i * stride, new Uint8Array(ring, (i % inflight) * chunk, chunk), 0, len);
      }
      read += s.wait(waited).bytes;
    }
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    return read / Math.max(sec, 1e-9);
  } finally {
    s.close();
    evictFromPageCache(path);
  }
}

/** Bytes measureReadBandwidth reads. */
function measuredBytes(size: number, chunk: number, strided: boolean, bytes = 1024 ** 3): number {
  const stride = strided ? 2 * chunk : chunk;
  return Math.min(Math.floor(size / stride) * chunk || size, bytes);
}

/** Measures both paths on the model file's device, picks the faster, caches the figures. */
export function calibrateStorage(path: string, options: CalibrateOptions = {}): Calibration {
  const threads = options.ioThreads ?? 2;
  const m = { ...(options.bytes !== undefined ? { bytes: options.bytes } : {}), ...(options.chunkBytes !== undefined ? { chunkBytes: options.chunkBytes } : {}) };
  // Measured as streaming reads: tensor-sized requests with gaps where resident tensors are.
  // On our virtual disk a plain sequential buffered read was fastest (~1.3-1.8 GB/s vs
  // 0.5-1.0 GB/s direct, under load), but with gaps direct won (1.0-1.3 vs 0.7-0.8 GB/s):
  // the sequential figure only measures readahead.
  let direct = 0;
  try {
    direct = measureReadBandwidth(path, true, { ...m, threads, strided: true });
  } catch {
    direct = 0; // no O_DIRECT on this file system (tmpfs, some FUSE)
  }
  const buffered = measureReadBandwidth(path, false, { ...m, threads: 1, strided: true });
  const preferDirect = direct >= buffered;
  const cal: Calibration = {
    device: deviceOf(path),
    readBytesPerSec: Math.max(direct, buffered),
    directBytesPerSec: direct,
    bufferedBytesPerSec: buffered,
    preferDirect,
    ioThreads: threads,
    bytesMeasured: measuredBytes(statSync(path).size, options.chunkBytes ?? 8 * 1024 * 1024, true, options.bytes),
    measuredAt: new Date().toISOString(),
    file: path,
  };
  if (options.computeType !== undefined) {
    cal.computeBytesPerSec = measureComputeBytesPerSec(options.computeType);
    cal.computeType = ggmlTypeInfo(options.computeType)?.name ?? String(options.computeType);
  }
  if (options.save !== false) saveCalibration(cal);
  return cal;
}

function readCache(): Record<string, Calibration> {
  try {
    return JSON.parse(readFileSync(calibrationCachePath(), 'utf8')) as Record<string, Calibration>;
  } catch {
    return {};
  }
}

/** Writes (or replaces) a device's figures in the cache. */
export function saveCalibration(cal: Calibration): void {
  const path = calibrationCachePath();
  const all = readCache();
  all[cal.device] = cal;
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(all, null, 2) + '\n');
  renameSync(tmp, path);
}

/** Cached figures for the device holding `path`, or undefined. */
export function readCachedCalibration(path: string): Calibration | undefined {
  try {
    const c = readCache()[deviceOf(path)];
    return c && c.readBytesPerSec > 0 ? c : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Weight bytes per second the native matmul gets through for one token (m = 1) over 64 MiB
 * of `type` weights (larger than the caches, as a model's layers are): the compute side of
 * the planner's cost model, since decoding is memory-bound.
 */
export function measureComputeBytesPerSec(type: GgmlType, seconds = 0.3): number {
  const k = 4096;
  const rowBytes = ggmlRowBytes(type, k);
  const n = Math.max(1, Math.floor((64 * 1024 * 1024) / rowBytes));
  // 0x11 everywhere: small finite scales and quants in every format; values do not matter.
  const w = new Uint8Array(n * rowBytes).fill(0x11);
  const x = new Float32Array(k).fill(0.5);
  const out = new Float32Array(n);
  matmul(out, w, type, n, k, x, 1); // warm up (page in the weights)
  let runs = 0;
  const t0 = process.hrtime.bigint();
  let sec = 0;
  do {
    matmul(out, w, type, n, k, x, 1);
    runs++;
    sec = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (sec < seconds);
  return (runs * n * rowBytes) / sec;
}
