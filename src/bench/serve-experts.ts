/**
 * The expert cache in a serve sweep of a Mixture-of-Experts file: what one load (N streams)
 * did to it, from the differences of the engine's stats().weights.experts before and after
 * (weights/expert-scheduler.ts). A step of layer l runs the union of its rows' experts once
 * (ExpertScheduler.run takes distinct experts), so lookups / steps is the number of distinct
 * experts per layer step: ~8 for one stream of Qwen3-30B-A3B, up to 128(1 - (120/128)^8) = 51.6
 * for 8 rows under uniform routing.
 */

/** The counters of stats().weights.experts this reads. */
export interface ExpertCounters {
  bytesRead?: number;
  lookups?: number;
  hits?: number;
  steps?: number;
  passes?: number;
  ioWaitSec?: number;
  ioInflightSec?: number;
}

/** One load's expert figures (JSON field `experts` of a serve-sweep row). */
export interface ExpertRow {
  /** Needed experts found in the cache (or already being read). */
  hit_rate: number;
  bytes_per_token: number;
  /** Forward passes (prefill and decode steps) of this load. */
  passes: number;
  /** Distinct experts a layer step needed (the union of its rows' experts). */
  experts_per_layer_step: number;
  bytes_per_pass: number;
  /** Time the forward passes waited on expert reads, per pass. */
  io_wait_ms_per_pass: number;
  /** Time with expert reads in flight per pass, and the read rate while they were. */
  inflight_ms_per_pass: number;
  read_gbps_in_flight: number;
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;

export function expertRow(before: ExpertCounters, after: ExpertCounters, tokens: number): ExpertRow {
  const d = (k: keyof ExpertCounters) => (after[k] ?? 0) - (before[k] ?? 0);
  const passes = d('passes');
  const per = (x: number) => (passes > 0 ? x / passes : 0);
  return {
    hit_rate: d('lookups') > 0 ? r3(d('hits') / d('lookups')) : 0,
    bytes_per_token: tokens > 0 ? Math.round(d('bytesRead') / tokens) : 0,
    passes,
    experts_per_layer_step: d('steps') > 0 ? r3(d('lookups') / d('steps')) : 0,
    bytes_per_pass: Math.round(per(d('bytesRead'))),
    io_wait_ms_per_pass: r3(per(d('ioWaitSec')) * 1000),
    inflight_ms_per_pass: r3(per(d('ioInflightSec')) * 1000),
    read_gbps_in_flight: d('ioInflightSec') > 0 ? r3(d('bytesRead') / d('ioInflightSec') / 1e9) : 0,
  };
}

/** Table lines of a configuration's MoE rows (none for a dense file). */
export function expertTableLines(label: string, rows: ReadonlyArray<{ streams: number; experts?: ExpertRow }> | undefined): string {
  const moe = (rows ?? []).filter((r) => r.experts);
  if (moe.length === 0) return '';
  const MiB = 1024 * 1024;
  return moe
    .map(({ streams, experts: e }) => `experts ${label} ${streams}x: hit ${(e!.hit_rate * 100).toFixed(1)}%, ${(e!.bytes_per_token / MiB).toFixed(0)} MiB/token, ` +
      `${e!.experts_per_layer_step.toFixed(1)} experts/layer step, ${(e!.bytes_per_pass / MiB).toFixed(0)} MiB/pass over ${e!.passes} passes, ` +
      `I/O wait ${e!.io_wait_ms_per_pass.toFixed(1)} ms/pass, reads in flight ${e!.inflight_ms_per_pass.toFixed(1)} ms/pass at ${e!.read_gbps_in_flight.toFixed(2)} GB/s\n`)
    .join('');
}
