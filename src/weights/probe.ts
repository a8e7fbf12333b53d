/**
 * Storage probes: how fast each read path delivers a file cold, measured with the streaming
 * engine itself (O_DIRECT at several depths, buffered reads that drop their pages with one
 * or several pieces in flight). The calibration keeps the best path; the budget sweep runs
 * the same probes beside every budget point.
 *
 * Each probe evicts the file from the page cache, reads `bytes` of it in 8 MiB tasks (the
 * size of a tensor) with enough tasks queued that the engine always has `depth` pieces in
 * flight, and reports bytes / wall time, like fio's sequential read job. Probes read different
 * regions of the file in turn, so no probe reads what the previous one just read.
 */
import { statSync } from 'node:fs';
import { evictFromPageCache, IoStreamer } from '../native/index.js';
import { allocReadBuffer } from './read-buffer.js';

/** A read path of the streaming engine. */
export interface ReadPath {
  /** O_DIRECT (true) or buffered reads that drop their pages (false). */
  direct: boolean;
  /** Pieces in flight. */
  depth: number;
}

/** One probe's figure. */
export interface ProbeResult extends ReadPath {
  bytes: number;
  seconds: number;
  bytesPerSec: number;
}

/**
 * What the probes measure by default: O_DIRECT at depths 1..32, buffered reads with 1, 4, 8
 * and 16 pieces in flight (buffered@4 read 3.6-4.5 GB/s sequentially beside the 50% budget
 * point while the run's gapped pattern got 2.5 GB/s from it: deeper buffered paths are
 * candidates too).
 */
export const DEFAULT_PROBES: readonly ReadPath[] = [
  { direct: true, depth: 1 },
  { direct: true, depth: 2 },
  { direct: true, depth: 4 },
  { direct: true, depth: 8 },
  { direct: true, depth: 16 },
  { direct: true, depth: 32 },
  { direct: false, depth: 1 },
  { direct: false, depth: 4 },
  { direct: false, depth: 8 },
  { direct: false, depth: 16 },
];

/** Piece size of the streaming engine and of the probes. */
export const PIECE_BYTES = 1 << 20;
const TASK_BYTES = 8 << 20;
const ALIGN = 4096;

/** Options of probeReadPaths. */
export interface ProbeOptions {
  /** Paths to measure (default DEFAULT_PROBES). */
  probes?: readonly ReadPath[];
  /** Bytes per probe (default min(file, 256 MiB)). */
  bytes?: number;
  pieceBytes?: number;
}

/** A short name of a read path: "direct@8", "buffered@1". */
export function pathName(p: ReadPath): string {
  return `${p.direct ? 'direct' : 'buffered'}@${p.depth}`;
}

/**
 * Measures each read path in turn on `path` (cold: the file is evicted before each). A path
 * the file system refuses (O_DIRECT on tmpfs) is left out of the result.
 */
export function probeReadPaths(path: string, options: ProbeOptions = {}): ProbeResult[] {
  const size = statSync(path).size;
  const probes = options.probes ?? DEFAULT_PROBES;
  const pieceBytes = options.pieceBytes ?? PIECE_BYTES;
  const want = Math.min(options.bytes ?? 256 * 1024 * 1024, size);
  const maxDepth = Math.max(1, ...probes.map((p) => p.depth));
  // Enough 8 MiB tasks queued that `depth` pieces are always in flight, plus one.
  const tasksInFlight = Math.ceil((maxDepth * pieceBytes) / TASK_BYTES) + 1;
  // The engine's read buffers (2 MiB pages): a probe measures the path the runs take.
  const ring = allocReadBuffer(TASK_BYTES * tasksInFlight, ALIGN);
  const out: ProbeResult[] = [];
  // Regions rotate through the file: region r starts at r * want (wrapping), aligned down.
  const regions = Math.max(1, Math.floor(size / Math.max(want, 1)));
  let region = 0;
  try {
    for (const p of probes) {
      const start = Math.floor(((region++ % regions) * want) / ALIGN) * ALIGN;
      const r = probeOne(path, p, start, Math.min(want, size - start), pieceBytes, ring, tasksInFlight);
      if (r) out.push(r);
    }
  } finally {
    evictFromPageCache(path);
  }
  return out;
}

function probeOne(path: string, p: ReadPath, start: number, bytes: number, pieceBytes: number, ring: ArrayBuffer, tasksInFlight: number): ProbeResult | undefined {
  evictFromPageCache(path);
  const s = new IoStreamer(path, { direct: p.direct, depth: p.depth, maxDepth: p.depth, pieceBytes });
  try {
    if (p.direct && !s.info().directAvailable) return undefined;
    const n = Math.ceil(bytes / TASK_BYTES);
    const t0 = process.hrtime.bigint();
    let read = 0;
    for (let i = 0, waited = 0; waited < n; waited++) {
      for (; i < n && i - waited < tasksInFlight; i++) {
        const len = Math.min(TASK_BYTES, bytes - i * TASK_BYTES);
        s.submit(i, start + i * TASK_BYTES, new Uint8Array(ring, (i % tasksInFlight) * TASK_BYTES, TASK_BYTES), 0, len);
      }
      read += s.wait(waited).bytes;
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { direct: p.direct, depth: p.depth, bytes: read, seconds, bytesPerSec: read / Math.max(seconds, 1e-9) };
  } finally {
    s.close();
  }
}

/** The fastest probe (undefined for none); `filter` restricts to some paths. */
export function bestProbe(results: readonly ProbeResult[], filter: (p: ProbeResult) => boolean = () => true): ProbeResult | undefined {
  let best: ProbeResult | undefined;
  for (const r of results) if (filter(r) && (!best || r.bytesPerSec > best.bytesPerSec)) best = r;
  return best;
}
