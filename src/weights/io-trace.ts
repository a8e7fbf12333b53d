/**
 * FLEXINFER_IO_TRACE=PREFIX: a timeline of a streaming store's reads and compute, for finding
 * where a token's time goes (issue-9 notes). Off by default; when off the store holds no
 * tracer and pays one undefined check per event. When on, each store writes
 * `PREFIX.<pid>.<n>.json` at dispose: events in microseconds since the store opened, with the
 * I/O engine's cumulative busy time and bytes at each one (so the device's idle time between
 * two events is their wall time minus the busy delta).
 *
 *   { e: 'issue', s, us }                                 reads of sequence s submitted
 *   { e: 'acquire', s, us, waitUs, busyUs, bytes }        layer s handed to compute (after waitUs)
 *   { e: 'release', s, us, busyUs, bytes }                layer s's compute ended
 *   { e: 'token', us, path, next }                        a pass ended; the selector's choice
 *
 * The file also holds `summary` (summarizeTrace): where the reads completed, inside layer
 * compute (acquire to release) or between layers (release to the next acquire: waiting on
 * reads, the output head, sampling). Bytes count when the I/O thread reaps a read, so a read
 * the device finished during compute but that was reaped later counts later.
 *
 * NOTE (issue-9 notes, tinyllama-1.1b Q8_0 at 75%, direct@32, 32 tokens, quiet 2026-12-06
 * 14:50-15:04 UTC, 21 runs): only 4-17% of the bytes completed inside compute (device busy
 * 85-95% of it, 0.3-1.3 GB/s), the rest between layers at 6-9 GB/s, above the idle probe's
 * 6-7: reads issued before a layer's compute mostly complete after it. Not the I/O thread's
 * scheduling (SCHED_FIFO for it, an EEVDF 100 us slice, no spinning in the compute pool: no
 * change) but the VM: the engine's O_DIRECT@32 probe read 3.3-4.8 GB/s beside two busy
 * loops or the native Q8_0 gemv on both cores against 5.0-7.2 alone (1 / 4 / 8 MiB pieces
 * alike), and SCHED_FIFO for the probe did not help: this disk reads at ~0.6x while both
 * vCPUs compute.
 */
import { writeFileSync } from 'node:fs';
import type { ReadPath } from './probe.js';

export interface TraceCounters {
  busyNs: number;
  directBytes: number;
  bufferedBytes: number;
}

let stores = 0;

/** Wall time, device busy time and bytes completed over one kind of interval. */
export interface IntervalTotals {
  wallUs: number;
  busyUs: number;
  bytes: number;
}

/** summarizeTrace's result: the passes after the skipped ones, split by interval kind. */
export interface TraceSummary {
  /** Layers acquired in the summarized span. */
  layers: number;
  spanUs: number;
  bytes: number;
  /** acquire -> release of the same sequence: a layer's compute. */
  compute: IntervalTotals;
  /** release -> the next acquire: waiting on reads, the output head, sampling, JS. */
  between: IntervalTotals;
}

type Counted = { e: string; s?: number; us: number; busyUs: number; bytes: number };

/**
 * Totals of a trace's events from the first acquire of pass `skipPasses` on (the prompt's
 * passes compute many rows at once; default skip 2), by interval kind (see the file's NOTE).
 * Undefined when the trace does not reach that pass.
 */
export function summarizeTrace(events: ReadonlyArray<Record<string, unknown>>, numLayers: number, skipPasses = 2): TraceSummary | undefined {
  const counted = events.filter((e): e is Counted => typeof e.busyUs === 'number' && typeof e.bytes === 'number' && typeof e.us === 'number');
  const first = counted.findIndex((e) => e.e === 'acquire' && (e.s ?? -1) >= skipPasses * numLayers);
  if (first < 0) return undefined;
  const compute: IntervalTotals = { wallUs: 0, busyUs: 0, bytes: 0 };
  const between: IntervalTotals = { wallUs: 0, busyUs: 0, bytes: 0 };
  let prev = counted[first]!;
  let layers = 1;
  for (const e of counted.slice(first + 1)) {
    const into = prev.e === 'acquire' && e.e === 'release' && e.s === prev.s ? compute : between;
    into.wallUs += e.us - prev.us;
    into.busyUs += e.busyUs - prev.busyUs;
    into.bytes += e.bytes - prev.bytes;
    if (e.e === 'acquire') layers++;
    prev = e;
  }
  const start = counted[first]!;
  return { layers, spanUs: prev.us - start.us, bytes: prev.bytes - start.bytes, compute, between };
}

/** Collects one store's events (see the file's NOTE). */
export class IoTrace {
  readonly #t0 = process.hrtime.bigint();
  readonly #events: Array<Record<string, unknown>> = [];
  readonly #file: string;

  constructor(prefix: string) {
    this.#file = `${prefix}.${process.pid}.${stores++}.json`;
  }

  /** A tracer when FLEXINFER_IO_TRACE is set, else undefined. */
  static fromEnv(value = process.env.FLEXINFER_IO_TRACE): IoTrace | undefined {
    return value ? new IoTrace(value) : undefined;
  }

  #us(): number {
    return Number(process.hrtime.bigint() - this.#t0) / 1000;
  }

  issue(s: number): void {
    this.#events.push({ e: 'issue', s, us: this.#us() });
  }

  acquire(s: number, waitNs: number, c: TraceCounters): void {
    this.#events.push({ e: 'acquire', s, us: this.#us(), waitUs: waitNs / 1000, busyUs: c.busyNs / 1000, bytes: c.directBytes + c.bufferedBytes });
  }

  release(s: number, c: TraceCounters): void {
    this.#events.push({ e: 'release', s, us: this.#us(), busyUs: c.busyNs / 1000, bytes: c.directBytes + c.bufferedBytes });
  }

  token(path: ReadPath, next: ReadPath): void {
    this.#events.push({ e: 'token', us: this.#us(), path: `${path.direct ? 'direct' : 'buffered'}@${path.depth}`, next: `${next.direct ? 'direct' : 'buffered'}@${next.depth}` });
  }

  /** Writes the events and their summary (best effort: a trace must never fail a run). */
  write(extra: Record<string, unknown> & { layers: number }): void {
    try {
      const summary = summarizeTrace(this.#events, extra.layers);
      writeFileSync(this.#file, JSON.stringify({ ...extra, ...(summary ? { summary } : {}), events: this.#events }));
    } catch {
      // tracing is a diagnostic
    }
  }
}
