/**
 * Prometheus text exposition for /metrics: flexinfer's own counters and the engine's statistics
 * (`flexinfer_*`), and beside them the metrics that routers read, under vLLM's names and with
 * vLLM's meanings (`vllm:*`, table VLLM_METRICS below).
 *
 * NOTE: metric names are an interface. The routers that pick a replica were written for vLLM:
 * - the Gateway API Inference Extension's model server protocol and llm-d's metric extractor
 *   read vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc and
 *   the block_size / num_gpu_blocks labels of vllm:cache_config_info (parsed as integers;
 *   block_size * num_gpu_blocks = tokens the KV pool holds);
 * - vLLM production-stack's router (src/vllm_router/stats/engine_stats.py) reads
 *   vllm:num_requests_running, vllm:num_requests_waiting and the older names
 *   vllm:gpu_cache_usage_perc, vllm:gpu_prefix_cache_queries_total and
 *   vllm:gpu_prefix_cache_hits_total, so those are exported too, with the same values.
 * Every vllm:* series carries a `model_name` label. Each row of the table says where its value
 * comes from; server-ops and server-metrics tests check them against what clients saw.
 */

import { expertMetricLines } from './metrics-experts.js';

interface DoneResult {
  tokens: number[];
  promptTokens: number;
  cachedPromptTokens: number;
  finishReason: string;
  timings: { genMs: number; interTokenMs?: number[] };
}

/** What one scrape sees: the server's counters plus the engine's stats() (empty while loading). */
export interface ScrapeState {
  inFlight: number;
  parallel: number;
  stats: Record<string, unknown>;
}

/** The engine statistics the vLLM table reads (src/engine/worker.ts 'stats'). */
interface EngineView {
  scheduler?: { running?: number; waiting?: number; preemptions?: number; prefixQueryTokens?: number; prefixHitTokens?: number };
  kv?: { activeBytes?: number; capacityBytes?: number; blockTokens?: number; numBlocks?: number };
}

type Labels = Record<string, string | number>;
type Sample = [labels: Labels, value: number];

/** A metric routers read: vLLM's name, type and help, and where flexinfer's value comes from. */
interface VllmMetric {
  name: string;
  type: 'gauge' | 'counter' | 'histogram';
  help: string;
  /** Samples of a gauge or counter (histograms are rendered from Histogram objects). */
  read?: (engine: EngineView, m: Metrics) => Sample[];
}

const one = (v: number | undefined): Sample[] => [[{}, v ?? 0]];
const kvUsage = (e: EngineView): number => {
  const cap = e.kv?.capacityBytes ?? 0;
  return cap > 0 ? Math.min(1, (e.kv?.activeBytes ?? 0) / cap) : 0;
};

/** The vllm:* metrics flexinfer exports, one row each. */
export const VLLM_METRICS: readonly VllmMetric[] = [
  // Scheduler queues: requests admitted to the running batch / queued behind it (engine scheduler).
  { name: 'vllm:num_requests_running', type: 'gauge', help: 'Number of requests in model execution batches.', read: (e) => one(e.scheduler?.running) },
  { name: 'vllm:num_requests_waiting', type: 'gauge', help: 'Number of requests waiting to be processed.', read: (e) => one(e.scheduler?.waiting) },
  // KV pool share mapped into live sequences; chunks held only by the prefix cache count as
  // free, as vLLM counts cached blocks with no reference (they are evicted on demand).
  { name: 'vllm:kv_cache_usage_perc', type: 'gauge', help: 'KV-cache usage. 1 means 100 percent usage.', read: (e) => one(kvUsage(e)) },
  { name: 'vllm:gpu_cache_usage_perc', type: 'gauge', help: 'KV-cache usage. 1 means 100 percent usage (older name of vllm:kv_cache_usage_perc).', read: (e) => one(kvUsage(e)) },
  // block_size = tokens of one vTensor chunk; num_gpu_blocks = chunk slots of every layer's K
  // and V the pool holds (contiguous layout: a slot of the whole context per sequence).
  {
    name: 'vllm:cache_config_info',
    type: 'gauge',
    help: 'Information of the LLMEngine CacheConfig',
    read: (e) => (e.kv?.blockTokens ? [[{ block_size: e.kv.blockTokens, num_gpu_blocks: e.kv.numBlocks ?? 0, enable_prefix_caching: 'True' }, 1]] : []),
  },
  // Prefix cache, in tokens: prompt tokens of generations at admission / how many were cached.
  { name: 'vllm:prefix_cache_queries_total', type: 'counter', help: 'Prefix cache queries, in terms of number of queried tokens.', read: (e) => one(e.scheduler?.prefixQueryTokens) },
  { name: 'vllm:prefix_cache_hits_total', type: 'counter', help: 'Prefix cache hits, in terms of number of cached tokens.', read: (e) => one(e.scheduler?.prefixHitTokens) },
  { name: 'vllm:gpu_prefix_cache_queries_total', type: 'counter', help: 'Prefix cache queries in tokens (older name of vllm:prefix_cache_queries_total).', read: (e) => one(e.scheduler?.prefixQueryTokens) },
  { name: 'vllm:gpu_prefix_cache_hits_total', type: 'counter', help: 'Prefix cache hits in tokens (older name of vllm:prefix_cache_hits_total).', read: (e) => one(e.scheduler?.prefixHitTokens) },
  { name: 'vllm:num_preemptions_total', type: 'counter', help: 'Cumulative number of preemption from the engine.', read: (e) => one(e.scheduler?.preemptions) },
  // Tokens of finished requests as their usage reported them (the server counts at the end).
  { name: 'vllm:prompt_tokens_total', type: 'counter', help: 'Number of prefill tokens processed.', read: (_e, m) => one(m.promptTokens) },
  { name: 'vllm:generation_tokens_total', type: 'counter', help: 'Number of generation tokens processed.', read: (_e, m) => one(m.generatedTokens) },
  { name: 'vllm:request_success_total', type: 'counter', help: 'Count of successfully processed requests.', read: (_e, m) => [...m.finished].map(([reason, n]) => [{ finished_reason: reason }, n]) },
  // Latencies measured by the server: from the request's arrival to its first token / its end;
  // between consecutive tokens as the engine's scheduler sampled them.
  { name: 'vllm:time_to_first_token_seconds', type: 'histogram', help: 'Histogram of time to first token in seconds.' },
  { name: 'vllm:e2e_request_latency_seconds', type: 'histogram', help: 'Histogram of end to end request latency in seconds.' },
  { name: 'vllm:inter_token_latency_seconds', type: 'histogram', help: 'Histogram of inter-token latency in seconds.' },
];

/** A Prometheus histogram: cumulative buckets, sum and count. */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length).fill(0);
  }

  observe(v: number): void {
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]!) this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

// Bucket bounds (seconds): vLLM's, with finer low buckets for CPU decode steps (a token of a
// small model takes milliseconds here).
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const E2E_BUCKETS = [0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
const ITL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];

export class Metrics {
  readonly startedAt = Math.floor(Date.now() / 1000);
  private requests = new Map<string, number>();
  private errors = new Map<number, number>();
  private aborted = 0;
  /** @internal */ promptTokens = 0;
  private cachedPromptTokens = 0;
  /** @internal */ generatedTokens = 0;
  /** Finished requests by finish reason (stop, length, abort). @internal */
  readonly finished = new Map<string, number>();
  readonly ttft = new Histogram(TTFT_BUCKETS);
  readonly e2e = new Histogram(E2E_BUCKETS);
  readonly itl = new Histogram(ITL_BUCKETS);
  // Sliding window of (time, tokens) for a recent tokens/s figure.
  private recent: Array<[number, number]> = [];

  /** @param modelName the `model_name` label of the vllm:* series. */
  constructor(readonly modelName = '') {}

  requestStarted(kind: string): void {
    this.requests.set(kind, (this.requests.get(kind) ?? 0) + 1);
  }

  /** A generation ended (normally or cut short); `ms` from its arrival at the server. */
  requestDone(_kind: string, result: DoneResult, ms: number): void {
    this.promptTokens += result.promptTokens;
    this.cachedPromptTokens += result.cachedPromptTokens;
    this.generatedTokens += result.tokens.length;
    const reason = result.finishReason === 'eog' ? 'stop' : result.finishReason;
    this.finished.set(reason, (this.finished.get(reason) ?? 0) + 1);
    this.e2e.observe(ms / 1000);
    // The first token came genMs before the end (a generation cut before it had none).
    if (result.tokens.length > 0 || result.finishReason === 'eog') this.ttft.observe(Math.max(0, ms - result.timings.genMs) / 1000);
    for (const gap of result.timings.interTokenMs ?? []) this.itl.observe(gap / 1000);
    const now = Date.now();
    this.recent.push([now, result.tokens.length]);
    while (this.recent.length > 0 && now - this.recent[0]![0] > 60_000) this.recent.shift();
  }

  requestAborted(_kind: string): void {
    this.aborted++;
  }

  countError(status: number): void {
    this.errors.set(status, (this.errors.get(status) ?? 0) + 1);
  }

  readonly #sections: Array<(stats: Record<string, unknown>) => string[]> = [];

  /** Adds lines rendered from the engine's stats after flexinfer's own (e.g. io-metrics.ts). */
  addSection(render: (stats: Record<string, unknown>) => string[]): void {
    this.#sections.push(render);
  }

  /** Renders all metrics; `stats` is the engine's stats() object (numbers are exported). */
  render(state: ScrapeState): string {
    const lines: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: Array<[string, number]>): void => {
      lines.push(`# HELP flexinfer_${name} ${help}`, `# TYPE flexinfer_${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`flexinfer_${name}${labels} ${Number.isFinite(v) ? v : 0}`);
    };
    metric('requests_total', 'counter', 'Generation requests received, by endpoint.', [...this.requests].map(([k, v]) => [`{endpoint="${k}"}`, v]));
    metric('request_errors_total', 'counter', 'Requests answered with an error, by HTTP status.', [...this.errors].map(([k, v]) => [`{status="${k}"}`, v]));
    metric('requests_aborted_total', 'counter', 'Requests whose client went away (or that a shutdown cut) before the end.', [['', this.aborted]]);
    metric('prompt_tokens_total', 'counter', 'Prompt tokens of finished requests.', [['', this.promptTokens]]);
    metric('prompt_tokens_cached_total', 'counter', 'Prompt tokens served from the prefix cache.', [['', this.cachedPromptTokens]]);
    metric('generated_tokens_total', 'counter', 'Tokens generated by finished requests.', [['', this.generatedTokens]]);
    const windowTokens = this.recent.reduce((a, [, n]) => a + n, 0);
    const span = this.recent.length > 0 ? Math.max(1, (Date.now() - this.recent[0]![0]) / 1000) : 1;
    metric('generated_tokens_per_second', 'gauge', 'Generated tokens per second over the last minute.', [['', windowTokens / span]]);
    metric('requests_in_flight', 'gauge', 'Requests running or queued.', [['', state.inFlight]]);
    metric('queue_length', 'gauge', 'Requests waiting beyond the parallel limit.', [['', Math.max(0, state.inFlight - state.parallel)]]);
    // Engine statistics: every finite number, flattened (kv.mappedBytes -> engine_kv_mapped_bytes).
    for (const [name, value] of flatten(state.stats)) {
      metric(`engine_${name}`, 'gauge', `Engine statistic ${name}.`, [['', value]]);
    }
    for (const section of this.#sections) lines.push(...section(state.stats));
    lines.push(...expertMetricLines(state.stats));
    this.renderVllm(lines, state.stats as EngineView);
    return lines.join('\n') + '\n';
  }

  private renderVllm(lines: string[], engine: EngineView): void {
    const base: Labels = { model_name: this.modelName };
    const histograms: Record<string, Histogram> = {
      'vllm:time_to_first_token_seconds': this.ttft,
      'vllm:e2e_request_latency_seconds': this.e2e,
      'vllm:inter_token_latency_seconds': this.itl,
    };
    for (const def of VLLM_METRICS) {
      lines.push(`# HELP ${def.name} ${def.help}`, `# TYPE ${def.name} ${def.type}`);
      if (def.type === 'histogram') {
        const h = histograms[def.name]!;
        h.bounds.forEach((b, i) => lines.push(`${def.name}_bucket${labelText({ ...base, le: b })} ${h.counts[i]}`));
        lines.push(`${def.name}_bucket${labelText({ ...base, le: '+Inf' })} ${h.count}`);
        lines.push(`${def.name}_sum${labelText(base)} ${h.sum}`, `${def.name}_count${labelText(base)} ${h.count}`);
        continue;
      }
      for (const [labels, v] of def.read!(engine, this)) lines.push(`${def.name}${labelText({ ...base, ...labels })} ${Number.isFinite(v) ? v : 0}`);
    }
  }
}

/** `{a="1",b="x"}` with Prometheus escaping of \, " and newlines. */
function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length > 0 ? `{${parts.join(',')}}` : '';
}

function snake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^a-zA-Z0-9_]/g, '_').toLowerCase();
}

function flatten(obj: Record<string, unknown>, prefix = '', out: Array<[string, number]> = []): Array<[string, number]> {
  for (const [k, v] of Object.entries(obj ?? {})) {
    const name = prefix ? `${prefix}_${snake(k)}` : snake(k);
    if (typeof v === 'number' && Number.isFinite(v)) out.push([name, v]);
    else if (typeof v === 'boolean') out.push([name, v ? 1 : 0]);
    else if (v && typeof v === 'object' && !Array.isArray(v) && prefix.split('_').length < 4) flatten(v as Record<string, unknown>, name, out);
  }
  return out;
}
