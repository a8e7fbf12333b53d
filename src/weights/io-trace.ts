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
 */
import { writeFileSync } from 'node:fs';
import type { ReadPath } from './probe.js';

export interface TraceCounters {
  busyNs: number;
  directBytes: number;
  bufferedBytes: number;
}

let stores = 0;

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

  /** Writes the events (best effort: a trace must never fail a run). */
  write(extra: Record<string, unknown> = {}): void {
    try {
      writeFileSync(this.#file, JSON.stringify({ ...extra, events: this.#events }));
    } catch {
      // tracing is a diagnostic
    }
  }
}
