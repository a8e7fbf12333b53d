/**
 * Storage calibration: measure, don't assume, how the model's storage reads best. The probes
 * (probe.ts) read the model file cold on every read path of the streaming engine (O_DIRECT at
 * depths 1..32, buffered with 1 to 16 pieces in flight); the fastest path and its rate
 * are what the planner's cost model and the streamer start from. Figures are cached per
 * device in ~/.cache/flexinfer/hardware.json ($FLEXINFER_CACHE_DIR overrides the directory)
 * with when and under what load they were taken; a run whose own reads disagree with them
 * refreshes the entry (refreshCalibration), and an entry older than CALIBRATION_MAX_AGE_MS
 * is measured again.
 */
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { GgmlType, ggmlRowBytes, ggmlTypeInfo } from '../gguf/ggml-type.js';
import { matmul } from '../native/index.js';
import type { HardwareFigures } from './plan.js';
import { bestProbe, probeReadPaths, type ProbeResult, type ReadPath } from './probe.js';

/** Measured read figures of one device. readBytesPerSec is the best path's rate. */
export interface Calibration extends HardwareFigures {
  /** st_dev of the file's device (the cache key). */
  device: string;
  /** The fastest read path: where the streaming engine starts. */
  path: ReadPath;
  /** Best O_DIRECT probe (0 where the file system refuses O_DIRECT). */
  directBytesPerSec: number;
  /** Best buffered probe. */
  bufferedBytesPerSec: number;
  /** Every probe of the measurement (empty for an entry a run refreshed). */
  probes: ProbeResult[];
  /** Bytes read per probe (or by the run that refreshed the entry). */
  bytesMeasured: number;
  /** ggml type name the compute figure (computeBytesPerSec) was measured with. */
  computeType?: string;
  /**
   * Where computeBytesPerSec comes from: 'matmul' (measureComputeBytesPerSec, one matrix, no
   * I/O beside it) or 'run' (a streaming run's own layer compute: attention, norms and the
   * reads' completions included). tinyllama-1.1b Q8_0 at 75% on a quiet machine: matmul
   * 44-58 GB/s, the runs' layers 23-33 GB/s (issue-9 notes, 2026-12-06).
   */
  computeSource?: 'matmul' | 'run';
  measuredAt: string;
  /** 1-minute load average when measured: figures taken on a busy machine read low. */
  loadAverage: number;
  /** 'probe' = calibrateStorage; 'run' = refreshed from a run's own reads. */
  source: 'probe' | 'run';
  file: string;
}

/** Options of calibrateStorage. */
export interface CalibrateOptions {
  /** Bytes to read per probe (default min(file size, 256 MiB)). */
  bytes?: number;
  /** Paths to probe (default DEFAULT_PROBES). */
  probes?: readonly ReadPath[];
  /** Store the result in the cache (default true). */
  save?: boolean;
  /** Also measure matmul speed (computeBytesPerSec) on weights of this type. */
  computeType?: GgmlType;
}

/** An entry older than this is measured again when a budgeted model loads (the disk changes day to day). */
export const CALIBRATION_MAX_AGE_MS = 24 * 3600 * 1000;
/** A run that reads this much slower or faster than the cached figure refreshes it. */
export const CALIBRATION_DRIFT = 0.25;

/** Where the cache lives. */
export function calibrationCachePath(): string {
  return join(process.env.FLEXINFER_CACHE_DIR ?? join(homedir(), '.cache', 'flexinfer'), 'hardware.json');
}

function deviceOf(path: string): string {
  return String(statSync(path).dev);
}

/** Probes every read path on the model file's device, keeps the fastest, caches the figures. */
export function calibrateStorage(path: string, options: CalibrateOptions = {}): Calibration {
  const probes = probeReadPaths(path, { ...(options.bytes !== undefined ? { bytes: options.bytes } : {}), ...(options.probes ? { probes: options.probes } : {}) });
  const cal = calibrationFromProbes(path, probes);
  if (options.computeType !== undefined) {
    cal.computeBytesPerSec = measureComputeBytesPerSec(options.computeType);
    cal.computeType = ggmlTypeInfo(options.computeType)?.name ?? String(options.computeType);
    cal.computeSource = 'matmul';
  }
  if (options.save !== false) saveCalibration(cal);
  return cal;
}

/** A calibration entry from probe results (measured now): the fastest path and its rate. */
export function calibrationFromProbes(path: string, probes: ProbeResult[]): Calibration {
  const best = bestProbe(probes);
  if (!best) throw new Error(`calibrateStorage: no read path worked on ${path}`);
  return {
    device: deviceOf(path),
    readBytesPerSec: best.bytesPerSec,
    path: { direct: best.direct, depth: best.depth },
    directBytesPerSec: bestProbe(probes, (p) => p.direct)?.bytesPerSec ?? 0,
    bufferedBytesPerSec: bestProbe(probes, (p) => !p.direct)?.bytesPerSec ?? 0,
    probes,
    bytesMeasured: best.bytes,
    measuredAt: new Date().toISOString(),
    loadAverage: loadavg()[0]!,
    source: 'probe',
    file: path,
  };
}

/** Whether a cached entry is too old to trust (CALIBRATION_MAX_AGE_MS). */
export function calibrationIsStale(cal: Pick<Calibration, 'measuredAt'>, now = Date.now()): boolean {
  const t = Date.parse(cal.measuredAt);
  return !Number.isFinite(t) || now - t > CALIBRATION_MAX_AGE_MS;
}

/**
 * The entry corrected by what a run measured: its best path's rate (bytes read / wall time
 * with reads in flight) and, when given, its compute rate (layer weight bytes / layer compute
 * time: streaming.ts computeRateOf, which the cost model's window choice depends on). Each
 * figure is replaced when the run disagrees by more than CALIBRATION_DRIFT; undefined when
 * both agree. A pure function: the caller saves the result.
 */
export function refreshCalibration(cal: Calibration, measured: { path: ReadPath; bytesPerSec: number; bytes: number; computeBytesPerSec?: number }, now = new Date()): Calibration | undefined {
  const drifts = (m: number | undefined, c: number | undefined) => m !== undefined && m > 0 && !(c !== undefined && c > 0 && Math.abs(m - c) / c <= CALIBRATION_DRIFT);
  const read = drifts(measured.bytesPerSec, cal.readBytesPerSec);
  const compute = drifts(measured.computeBytesPerSec, cal.computeBytesPerSec);
  if (!read && !compute) return undefined;
  const readPart = read
    ? {
        readBytesPerSec: measured.bytesPerSec,
        path: { ...measured.path },
        ...(measured.path.direct ? { directBytesPerSec: measured.bytesPerSec } : { bufferedBytesPerSec: measured.bytesPerSec }),
        probes: [],
        bytesMeasured: measured.bytes,
        measuredAt: now.toISOString(),
        loadAverage: loadavg()[0]!,
        source: 'run' as const,
      }
    : {};
  return { ...cal, ...readPart, ...(compute ? { computeBytesPerSec: measured.computeBytesPerSec!, computeSource: 'run' as const } : {}) };
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
    // Entries of older versions (no read path) are measured again.
    return c && c.readBytesPerSec > 0 && c.path && typeof c.path.depth === 'number' ? c : undefined;
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
