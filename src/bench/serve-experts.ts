/**
 * The expert cache in a serve sweep of a Mixture-of-Experts file: what one load (N streams)
 * did to it, from the engine's stats() before and after it (moe-sweep.ts decodeFigures, per
 * forward pass instead of per token). A step of layer l runs the union of its rows' experts
 * once (ExpertScheduler.run takes distinct experts), so lookups / steps is the number of
 * distinct experts per layer step: ~8 for one stream of Qwen3-30B-A3B, up to
 * 128(1 - (120/128)^8) = 51.6 for 8 rows under uniform routing.
 */
import { decodeFigures } from './moe-sweep.js';

/** One load's expert figures (JSON field `experts` of a serve-sweep row). */
export interface ExpertRow {
  /** Needed experts found in memory (prefetched ones included), and those cached before the step. */
  hit_rate: number;
  cached_hit_rate: number;
  /** Expert bytes read per generated token. */
  bytes_per_token: number;
  /** Forward passes of this load (prefill and decode steps). */
  passes: number;
  /** Distinct experts a layer step needed (the union of its rows' experts). */
  experts_per_layer_step: number;
  /** Weight bytes read per pass (experts and any dense streaming). */
  bytes_per_pass: number;
  /** Time the passes waited on expert reads, and wall time with expert reads in flight, per pass. */
  io_wait_ms_per_pass: number;
  busy_ms_per_pass: number;
  /** Mean expert reads (pieces) in flight while any were, and the read rate then. */
  reads_in_flight: number;
  read_gbps_in_flight: number;
}

type Stats = Record<string, unknown>;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const experts = (s: Stats): Record<string, number | undefined> | undefined => (s.weights as { experts?: Record<string, number | undefined> } | undefined)?.experts;

/** The expert figures of the load between two stats() snapshots; undefined for a dense model or no pass. */
export function expertRow(before: Stats, after: Stats, tokens: number): ExpertRow | undefined {
  const f = decodeFigures(before, after);
  const a = experts(before);
  const b = experts(after);
  if (!f || !a || !b) return undefined;
  const d = (k: string) => (b[k] ?? 0) - (a[k] ?? 0);
  return {
    hit_rate: r3(f.hitRate),
    cached_hit_rate: r3(f.cacheHitRate),
    bytes_per_token: tokens > 0 ? Math.round(d('bytesRead') / tokens) : 0,
    passes: f.tokens,
    experts_per_layer_step: d('steps') > 0 ? r3(d('lookups') / d('steps')) : 0,
    bytes_per_pass: Math.round(f.bytesPerToken),
    io_wait_ms_per_pass: r3(f.ioWaitSecPerToken * 1000),
    busy_ms_per_pass: r3(f.ioBusySecPerToken * 1000),
    reads_in_flight: r3(f.ioMeanInflight ?? 0),
    read_gbps_in_flight: d('ioBusySec') > 0 ? r3(d('bytesRead') / d('ioBusySec') / 1e9) : 0,
  };
}

/** Table lines of a configuration's MoE rows (none for a dense file). */
export function expertTableLines(label: string, rows: ReadonlyArray<{ streams: number; experts?: ExpertRow }> | undefined): string {
  const MiB = 1024 * 1024;
  return (rows ?? [])
    .filter((r) => r.experts)
    .map(({ streams, experts: e }) => `experts ${label} ${streams}x: hit ${(e!.hit_rate * 100).toFixed(1)}% (cached ${(e!.cached_hit_rate * 100).toFixed(1)}%), ${(e!.bytes_per_token / MiB).toFixed(0)} MiB/token, ` +
      `${e!.experts_per_layer_step.toFixed(1)} experts/layer step, ${(e!.bytes_per_pass / MiB).toFixed(0)} MiB/pass over ${e!.passes} passes, ` +
      `I/O wait ${e!.io_wait_ms_per_pass.toFixed(1)} ms/pass, reads in flight ${e!.busy_ms_per_pass.toFixed(1)} ms/pass (${e!.reads_in_flight.toFixed(1)} deep) at ${e!.read_gbps_in_flight.toFixed(2)} GB/s\n`)
    .join('');
}
