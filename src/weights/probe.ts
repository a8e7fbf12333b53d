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
  const want = Math.min(options.bytes ?? 256 * 1024 * 1024, size);
  // Regions rotate through the file: region r starts at r * want (wrapping), aligned down.
  const regions = Math.max(1, Math.floor(size / Math.max(want, 1)));
  let region = 0;
  return probeEach(path, options, () => {
    const start = Math.floor(((region++ % regions) * want) / ALIGN) * ALIGN;
    const bytes = Math.min(want, size - start);
    return Array.from({ length: Math.ceil(bytes / TASK_BYTES) }, (_, i): FileRange => [start + i * TASK_BYTES, Math.min(TASK_BYTES, bytes - i * TASK_BYTES)]);
  });
}

/** A file range [offset, offset + bytes). */
export type FileRange = readonly [offset: number, bytes: number];

/**
 * The layout probe: each read path reads exactly `ranges` (a run's streamed tensors, in the
 * order the run reads them: layer by layer), cold, one task per range, with the streaming
 * engine and nothing else (no compute). Against the sequential probes (probeReadPaths) it says
 * what the file's layout costs a path: reads broken at resident tensors, no read-ahead into
 * the next range.
 */
export function probeRanges(path: string, ranges: readonly FileRange[], options: Omit<ProbeOptions, 'bytes'> = {}): ProbeResult[] {
  return probeEach(path, options, () => ranges);
}

/** How `ranges` lie in the file, read in their order: runs of ranges that follow each other without a gap, and the gaps (forward skips) between runs. */
export interface RangeLayout {
  ranges: number;
  bytes: number;
  runs: number;
  meanRunBytes: number;
  gaps: number;
  gapBytes: number;
}

/** The RangeLayout of `ranges` (see there). */
export function rangeLayout(ranges: readonly FileRange[]): RangeLayout {
  let runs = 0;
  let gaps = 0;
  let gapBytes = 0;
  let bytes = 0;
  let end = -1;
  for (const [offset, len] of ranges) {
    if (offset !== end) {
      runs++;
      if (end >= 0 && offset > end) {
        gaps++;
        gapBytes += offset - end;
      }
    }
    end = offset + len;
    bytes += len;
  }
  return { ranges: ranges.length, bytes, runs, meanRunBytes: runs > 0 ? bytes / runs : 0, gaps, gapBytes };
}

/** Runs every probe path of `options` over the tasks `tasksFor()` gives it, in turn. */
function probeEach(path: string, options: Omit<ProbeOptions, 'bytes'>, tasksFor: () => readonly FileRange[]): ProbeResult[] {
  const probes = options.probes ?? DEFAULT_PROBES;
  const pieceBytes = options.pieceBytes ?? PIECE_BYTES;
  const maxDepth = Math.max(1, ...probes.map((p) => p.depth));
  // Tasks queued: enough that `depth` pieces are always in flight, plus one 8 MiB task.
  const queueBytes = (Math.ceil((maxDepth * pieceBytes) / TASK_BYTES) + 1) * TASK_BYTES;
  const out: ProbeResult[] = [];
  let ring: ArrayBuffer | undefined;
  try {
    for (const p of probes) {
      const tasks = tasksFor();
      const maxRoom = tasks.reduce((m, [, b]) => Math.max(m, roundUp(b)), TASK_BYTES);
      // Room for the queued tasks, one more, and the wasted tail when placement wraps.
      const need = queueBytes + 2 * maxRoom;
      // The engine's read buffers (2 MiB pages): a probe measures the path the runs take.
      if (!ring || ring.byteLength < need) ring = allocReadBuffer(need, ALIGN);
      const r = probeOne(path, p, tasks, pieceBytes, ring, queueBytes);
      if (r) out.push(r);
    }
  } finally {
    evictFromPageCache(path);
  }
  return out;
}

const roundUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/**
 * Reads `tasks` in order on path p, cold, keeping up to `queueBytes` of tasks submitted (each
 * its own group, placed one after another in `ring`, wrapping), waiting for them in order.
 * The tasks in flight span less than queueBytes of `ring` (queued counts their rounded room),
 * so with queueBytes + 2 x the largest room a wrapped task never lands on one in flight.
 */
function probeOne(path: string, p: ReadPath, tasks: readonly FileRange[], pieceBytes: number, ring: ArrayBuffer, queueBytes: number): ProbeResult | undefined {
  evictFromPageCache(path);
  const s = new IoStreamer(path, { direct: p.direct, depth: p.depth, maxDepth: p.depth, pieceBytes });
  try {
    if (p.direct && !s.info().directAvailable) return undefined;
    const t0 = process.hrtime.bigint();
    let read = 0;
    let queued = 0;
    let slot = 0;
    for (let i = 0, waited = 0; waited < tasks.length; waited++) {
      for (; i < tasks.length && (i === waited || queued < queueBytes); i++) {
        const [offset, len] = tasks[i]!;
        const room = roundUp(len);
        if (slot + room > ring.byteLength) slot = 0;
        s.submit(i, offset, new Uint8Array(ring, slot, room), 0, len);
        slot += room;
        queued += room;
      }
      read += s.wait(waited).bytes;
      queued -= roundUp(tasks[waited]![1]);
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
