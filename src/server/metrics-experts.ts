/**
 * /metrics figures of a Mixture-of-Experts model's expert cache (the engine's
 * stats().weights.experts, see weights/expert-store.ts): hit rate per layer, prediction
 * accuracy, bytes read per token and I/O wait. Rendered after flexinfer's other families;
 * nothing for dense models.
 */

/** The part of the engine's stats() this reads. */
interface ExpertView {
  layerHits?: number[];
  layerLookups?: number[];
  lookups?: number;
  hits?: number;
  bytesRead?: number;
  bytesReadPerPass?: number;
  reads?: number;
  prefetchReads?: number;
  prefetchUsed?: number;
  predictionAccuracy?: number;
  ioWaitSec?: number;
  numSlots?: number;
  cacheBytes?: number;
}

type Family = [name: string, type: 'counter' | 'gauge', help: string, samples: Array<[labels: string, value: number]>];

/** Prometheus lines of the expert cache, or none when the model has no expert cache. */
export function expertMetricLines(stats: Record<string, unknown>): string[] {
  const e = (stats.weights as { experts?: ExpertView } | undefined)?.experts;
  if (!e || e.lookups === undefined) return [];
  const hits = e.layerHits ?? [];
  const lookups = e.layerLookups ?? [];
  const families: Family[] = [
    ['expert_cache_lookups_total', 'counter', 'Experts the forward passes needed (distinct per layer step).', [['', e.lookups]]],
    ['expert_cache_hits_total', 'counter', 'Needed experts that were in the expert cache (or already being read).', [['', e.hits ?? 0]]],
    ['expert_cache_hit_rate', 'gauge', 'Expert cache hit rate per layer since load.', hits.map((h, l) => [`{layer="${l}"}`, lookups[l]! > 0 ? h / lookups[l]! : 0])],
    ['expert_reads_total', 'counter', 'Expert reads issued (on a miss or by prefetch).', [['', e.reads ?? 0]]],
    ['expert_prefetch_reads_total', 'counter', "Expert reads issued for the next layer's predicted experts.", [['', e.prefetchReads ?? 0]]],
    ['expert_prefetch_used_total', 'counter', 'Prefetched experts that a later step needed.', [['', e.prefetchUsed ?? 0]]],
    ['expert_prediction_accuracy', 'gauge', "Share of a layer's needed experts that the previous layer predicted.", [['', e.predictionAccuracy ?? 0]]],
    ['expert_bytes_read_total', 'counter', 'Bytes of experts read from storage.', [['', e.bytesRead ?? 0]]],
    ['expert_bytes_read_per_pass', 'gauge', 'Expert bytes read per forward pass (per token when decoding one sequence).', [['', e.bytesReadPerPass ?? 0]]],
    ['expert_io_wait_seconds_total', 'counter', 'Time the forward passes waited on expert reads.', [['', e.ioWaitSec ?? 0]]],
    ['expert_cache_slots', 'gauge', 'Slots of the expert cache.', [['', e.numSlots ?? 0]]],
    ['expert_cache_bytes', 'gauge', 'Memory of the expert cache (locked).', [['', e.cacheBytes ?? 0]]],
  ];
  const lines: string[] = [];
  for (const [name, type, help, samples] of families) {
    lines.push(`# HELP flexinfer_${name} ${help}`, `# TYPE flexinfer_${name} ${type}`);
    for (const [labels, v] of samples) lines.push(`flexinfer_${name}${labels} ${Number.isFinite(v) ? v : 0}`);
  }
  return lines;
}
