/**
 * The memory pool's figures on /metrics (issue 16): how the budget is split now and how often
 * weights moved between resident and streamed. Over time they show memory following the load:
 * few conversations, more resident weights; many, more KV and more bytes streamed per token.
 *
 *   flexinfer_memory_budget_bytes                  the memory budget
 *   flexinfer_memory_bytes{part}                   resident_weights | stream_buffers | weights_loading |
 *                                                  kv_live | kv_prefix_cache | scratch | runtime | free
 *                                                  (runtime: kept for the process's own memory, elastic)
 *   flexinfer_memory_kv_floor_bytes                KV memory no weight may take (elastic)
 *   flexinfer_memory_streamed_bytes_per_token      weight bytes a forward pass reads now
 *   flexinfer_memory_weight_level                  resident set's position on the planner's ladder
 *   flexinfer_memory_demotions_total               weights demoted to streamed (elastic)
 *   flexinfer_memory_promotions_total              promotions started (background reads)
 *   flexinfer_memory_cancelled_promotions_total    promotions given up for KV
 *   flexinfer_memory_kv_refusals_total             KV growth the pool refused (the scheduler preempted)
 *   flexinfer_memory_prefix_chunks_evicted_total   cached prefix chunks evicted for weights (by value)
 *
 * Nothing is exported without a budget.
 */
import type { Metrics } from './metrics.js';

interface PoolView {
  mode?: string;
  budget?: number | null;
  scratchBytes?: number;
  runtimeBytes?: number;
  floorBytes?: number;
  level?: number;
  now?: { residentBytes?: number; ringBytes?: number; loadingBytes?: number; kvLiveBytes?: number; kvCachedBytes?: number; freeBytes?: number; streamedBytesPerPass?: number };
  events?: Record<string, number | undefined>;
}

/** Adds the flexinfer_memory_* section to /metrics. */
export function registerMemoryMetrics(metrics: Metrics): void {
  metrics.addSection((stats) => {
    const p = stats['pool'] as PoolView | undefined;
    if (!p || typeof p.budget !== 'number') return [];
    const lines: string[] = [];
    const metric = (name: string, type: 'gauge' | 'counter', help: string, samples: Array<[string, number | undefined]>): void => {
      lines.push(`# HELP flexinfer_memory_${name} ${help}`, `# TYPE flexinfer_memory_${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`flexinfer_memory_${name}${labels} ${Number.isFinite(v) ? v : 0}`);
    };
    const n = p.now ?? {};
    metric('budget_bytes', 'gauge', 'The memory budget: weights, stream buffers, KV cache and scratch.', [['', p.budget]]);
    metric('bytes', 'gauge', 'How the budget is used now, by part.', [
      ['{part="resident_weights"}', n.residentBytes],
      ['{part="stream_buffers"}', n.ringBytes],
      ['{part="weights_loading"}', n.loadingBytes],
      ['{part="kv_live"}', n.kvLiveBytes],
      ['{part="kv_prefix_cache"}', n.kvCachedBytes],
      ['{part="scratch"}', p.scratchBytes],
      ...(p.mode === 'elastic' ? [['{part="runtime"}', p.runtimeBytes] as [string, number | undefined]] : []),
      ['{part="free"}', n.freeBytes],
    ]);
    metric('streamed_bytes_per_token', 'gauge', 'Weight bytes a forward pass reads from the model file now.', [['', n.streamedBytesPerPass]]);
    if (p.mode !== 'elastic') return lines;
    const e = p.events ?? {};
    metric('kv_floor_bytes', 'gauge', 'KV memory no resident weight may take.', [['', p.floorBytes]]);
    metric('weight_level', 'gauge', "The resident set's level on the planner's ladder (higher: more resident).", [['', p.level]]);
    metric('demotions_total', 'counter', 'Times resident weights were demoted to streamed to give KV memory.', [['', e['demotions']]]);
    metric('promotions_total', 'counter', 'Promotions of weights back to resident started (read in the background).', [['', e['promotions']]]);
    metric('cancelled_promotions_total', 'counter', 'Promotions given up because KV needed the memory first.', [['', e['cancelledPromotions']]]);
    metric('kv_refusals_total', 'counter', 'KV growth the pool could not give even with the weights at their minimum (the scheduler preempts).', [['', e['kvRefusals']]]);
    metric('prefix_chunks_evicted_total', 'counter', 'Cached prefix chunks evicted because resident weights were worth more per byte.', [['', e['prefixChunksEvictedForWeights']]]);
    return lines;
  });
}
