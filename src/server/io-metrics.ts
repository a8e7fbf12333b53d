/**
 * The streaming I/O figures a server exposes, and the health of the model behind it: a
 * model whose weights stream from disk (a memory budget) reads the file every token, so its
 * read rate per path, the time its compute waits on reads and the reads it keeps in flight are
 * worth a dashboard; and a model file that changed under it stops the model, which /health
 * must tell the router (503) so traffic moves to another replica.
 *
 *   flexinfer_io_read_bytes_per_second{path}   bytes / wall time with reads in flight (direct | buffered)
 *   flexinfer_io_read_bytes_total{path}        bytes read from the model file
 *   flexinfer_io_wait_seconds_per_token        compute blocked on reads, per token
 *   flexinfer_io_reads_in_flight               1 MiB reads in flight now
 *   flexinfer_io_mean_reads_in_flight          mean while reading
 *   flexinfer_io_read_latency_seconds{quantile} piece latency, p50 and p99
 *   flexinfer_io_path_switches_total           read path changes between tokens
 *
 * Nothing is exported for a model without a budget (nothing streams).
 */
import type { ServerHealth } from './health.js';
import type { Metrics } from './metrics.js';

interface StreamingView {
  ioWaitSecPerToken?: number;
  readsInFlight?: number;
  meanReadsInFlight?: number;
  readLatencyP50Us?: number;
  readLatencyP99Us?: number;
  pathSwitches?: number;
  pathRates?: Record<'direct' | 'buffered', { bytes?: number; bytesPerSec?: number; depth?: number }>;
}

/** Adds the flexinfer_io_* section to /metrics. */
export function registerIoMetrics(metrics: Metrics): void {
  metrics.addSection((stats) => {
    const st = (stats['weights'] as { streaming?: StreamingView } | undefined)?.streaming;
    if (!st) return [];
    const lines: string[] = [];
    const metric = (name: string, type: 'gauge' | 'counter', help: string, samples: Array<[string, number | undefined]>): void => {
      lines.push(`# HELP flexinfer_io_${name} ${help}`, `# TYPE flexinfer_io_${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`flexinfer_io_${name}${labels} ${Number.isFinite(v) ? v : 0}`);
    };
    const paths = ['direct', 'buffered'] as const;
    metric('read_bytes_per_second', 'gauge', 'Model file bytes read per second of wall time with reads of that path in flight.', paths.map((p) => [`{path="${p}"}`, st.pathRates?.[p]?.bytesPerSec]));
    metric('read_bytes_total', 'counter', 'Model file bytes read by streamed weights, by read path.', paths.map((p) => [`{path="${p}"}`, st.pathRates?.[p]?.bytes]));
    metric('wait_seconds_per_token', 'gauge', 'Time the compute waited on weight reads, per token.', [['', st.ioWaitSecPerToken]]);
    metric('reads_in_flight', 'gauge', 'Weight reads (1 MiB pieces) in flight now.', [['', st.readsInFlight]]);
    metric('mean_reads_in_flight', 'gauge', 'Mean weight reads in flight while reading.', [['', st.meanReadsInFlight]]);
    metric('read_latency_seconds', 'gauge', 'Latency of one weight read (piece), by quantile.', [
      ['{quantile="0.5"}', (st.readLatencyP50Us ?? 0) / 1e6],
      ['{quantile="0.99"}', (st.readLatencyP99Us ?? 0) / 1e6],
    ]);
    metric('path_switches_total', 'counter', 'Read path changes between tokens (O_DIRECT <-> buffered, depth).', [['', st.pathSwitches]]);
    return lines;
  });
}

/**
 * A /health check that fails once the engine has stopped (e.g. ModelFileChangedError), with
 * its message: the server then answers 503 and routers send traffic elsewhere.
 */
export function registerModelHealth(health: ServerHealth, model: () => { failure?: () => Error | null } | undefined): void {
  health.addCheck('model', () => model()?.failure?.()?.message ?? null);
}
