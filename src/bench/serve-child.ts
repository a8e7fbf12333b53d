/**
 * One engine's serving measurements in their own process (so a benchmark can put it in a
 * memory cgroup): `node dist/bench/serve-child.js ENGINE MODEL THREADS GEN_TOKENS CONCURRENCY_LIST [BUDGET [PARALLEL CTX POOL]]`
 * with ENGINE = flexinfer | llamacpp, POOL = elastic | static. For each concurrency N, N
 * streams start at once, each with its own prompt; prints one JSON line with aggregate
 * tokens/s and TTFT per N, and for flexinfer the weight bytes read per generated token, the
 * preemptions, the memory pool's moves at that load and the memory split over the whole run.
 *
 * flexinfer is measured through its real HTTP server (loopback, SSE streams); llama.cpp
 * through node-llama-cpp with N sequences in one context (its batching).
 * @internal
 */
import { loadModel } from '../index.js';
import { createServer } from '../server/server.js';
import { loadLlamaCpp } from './llamacpp.js';
import { benchPromptTokens } from './speed.js';
import { median, percentile, round } from './stats.js';
import { sampleMemoryPeaks } from '../weights/cgroup.js';
import { expertRow, type ExpertRow } from './serve-experts.js';
import type { ExpertOptions } from '../engine/model.js';

interface Row {
  streams: number;
  /** All generated tokens / wall time from the first request to the last token (prefill included). */
  aggregate_tps: number;
  /**
   * Decode only: the sum over streams of (tokens - 1) / (last token time - first token time),
   * each stream's rate once its prompt is done (as bench --kv-sweep counts it).
   */
  decode_tps: number;
  ttft_ms_p50: number;
  ttft_ms_p95: number;
  tokens: number;
  wall_ms: number;
  /** flexinfer: weight bytes read from the file per generated token at this load (experts included). */
  streamed_bytes_per_token?: number;
  /** flexinfer, MoE files: the expert cache at this load (serve-experts.ts). */
  experts?: ExpertRow;
  preemptions?: number;
  /** flexinfer: most sequences running at once so far, and before the first preemption. */
  peak_running?: number;
  peak_running_before_preemption?: number;
  /** flexinfer: sequence-steps paused because KV could not grow at this load, and the longest pause so far (steps). */
  pauses?: number;
  longest_pause?: number;
  /** flexinfer, elastic pool: weights demoted / promoted during this load. */
  demotions?: number;
  promotions?: number;
}

/** What the engine's stats() says that a row reports (differences between two calls). */
interface Snapshot {
  bytesRead: number;
  /** The whole stats() (the expert figures are differences of it). */
  raw: Record<string, unknown>;
  preemptions: number;
  peakRunning: number;
  peakBefore: number;
  pauses: number;
  longestPause: number;
  demotions: number;
  promotions: number;
  t: number;
}

async function snapshot(model: { stats(o?: { history?: boolean }): Promise<Record<string, unknown>> }): Promise<Snapshot> {
  const st = (await model.stats()) as {
    scheduler?: { preemptions?: number; peakRunning?: number; peakRunningBeforePreemption?: number; pauses?: number; longestPause?: number };
    weights?: { streaming?: { bytesRead?: number }; experts?: { bytesRead?: number } };
    pool?: { now?: { t?: number }; events?: { demotions?: number; promotions?: number } };
  };
  return {
    bytesRead: (st.weights?.streaming?.bytesRead ?? 0) + (st.weights?.experts?.bytesRead ?? 0),
    raw: st,
    preemptions: st.scheduler?.preemptions ?? 0,
    peakRunning: st.scheduler?.peakRunning ?? 0,
    peakBefore: st.scheduler?.peakRunningBeforePreemption ?? 0,
    pauses: st.scheduler?.pauses ?? 0,
    longestPause: st.scheduler?.longestPause ?? 0,
    demotions: st.pool?.events?.demotions ?? 0,
    promotions: st.pool?.events?.promotions ?? 0,
    t: st.pool?.now?.t ?? 0,
  };
}

/** Prompt length of every stream (--prompt-tokens=P; 32 by default). */
let PROMPT_TOKENS = 32;
/** MoE files: the expert-cache options of the bench (--experts=JSON from serve-elastic.ts). */
let EXPERTS: ExpertOptions | undefined;

/** One stream's client-side timeline. */
interface StreamRun {
  ttftMs: number;
  tokens: number;
  /** ms from the first to the last token the client received. */
  decodeMs: number;
}

/** Prompt length of the prompt-processing figure measured beside the streams. */
const PROMPT_SPEED_TOKENS = 128;

async function streamOne(base: string, prompt: number[], maxTokens: number): Promise<StreamRun> {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'bench', prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttft = -1;
  let last = -1;
  let tokens = 0;
  let buf = '';
  const decoder = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(part, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = event.replace(/^data: /, '');
      if (data === '[DONE]') continue;
      const j = JSON.parse(data);
      if (j.choices?.[0]?.text) {
        last = performance.now() - t0;
        if (ttft < 0) ttft = last;
      }
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  const end = performance.now() - t0;
  return { ttftMs: ttft < 0 ? end : ttft, tokens, decodeMs: ttft < 0 ? 0 : last - ttft };
}

interface FlexinferRun {
  rows: Row[];
  /** Prompt processing tokens/s of the same server (one PROMPT_SPEED_TOKENS prompt). */
  prompt_tps: number;
  /** The memory split over the run (the pool's samples) and when each load started (ms). */
  timeline?: unknown[];
  phases?: Array<{ streams: number; t: number }>;
  pool?: Record<string, unknown>;
  /**
   * Peak RssAnon + RssShmem of the serving process, sampled every 10 ms (the memory a cgroup
   * cannot reclaim). Over-counts the KV pool: RssShmem counts a chunk once per mapping of it.
   */
  peak_anon_shmem_bytes?: number;
  /**
   * Peak anonymous + shared memory charged to the process's memory cgroup (memory.stat rss +
   * shmem), sampled every 10 ms: every page once, cached prefix chunks included. The figure to
   * read in the bench's cgroup of its own (0 without a memory cgroup).
   */
  peak_cgroup_anon_shmem_bytes?: number;
}

/** Prompt processing tokens/s of the same server: one long prompt, one token out (the engine's own timing). */
async function promptSpeed(base: string, n: number): Promise<number> {
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'bench', prompt: Array.from(benchPromptTokens(n, 32000, 7)), max_tokens: 1, temperature: 0 }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const j = (await res.json()) as { timings?: { prompt_n: number; prompt_ms: number } };
  return j.timings && j.timings.prompt_ms > 0 ? (j.timings.prompt_n * 1000) / j.timings.prompt_ms : 0;
}

async function measureFlexinfer(path: string, threads: number, gen: number, ns: number[], budget?: string, layout?: { parallel: number; ctx: number; pool: 'elastic' | 'static' }): Promise<FlexinferRun> {
  const maxN = Math.max(...ns);
  const parallel = layout?.parallel ?? maxN;
  const peaks = sampleMemoryPeaks(10);
  const model = await loadModel(path, {
    threads,
    parallel,
    contextSize: layout?.ctx ?? Math.max(PROMPT_TOKENS + gen + 16, PROMPT_SPEED_TOKENS + 8),
    ...(layout ? { memoryPool: layout.pool } : {}),
    ...(EXPERTS ? { experts: EXPERTS } : {}),
    ...(budget ? { memoryBudget: /^\d+$/.test(budget) ? Number(budget) : budget } : {}),
  });
  const server = createServer(model, { modelId: 'bench', port: 0, parallel });
  const base = await server.listen();
  const rows: Row[] = [];
  const phases: Array<{ streams: number; t: number }> = [];
  let prompt_tps = 0;
  try {
    await streamOne(base, Array.from(benchPromptTokens(8, 32000, 1)), 4); // warm-up
    prompt_tps = await promptSpeed(base, PROMPT_SPEED_TOKENS);
    for (const n of ns) {
      const before = await snapshot(model);
      phases.push({ streams: n, t: before.t });
      const t0 = performance.now();
      const runs = await Promise.all(Array.from({ length: n }, (_, i) => streamOne(base, Array.from(benchPromptTokens(PROMPT_TOKENS, 32000, 1000 + i)), gen)));
      const r = row(n, runs, performance.now() - t0);
      const after = await snapshot(model);
      rows.push({
        ...r,
        streamed_bytes_per_token: r.tokens > 0 ? Math.round((after.bytesRead - before.bytesRead) / r.tokens) : 0,
        experts: expertRow(before.raw, after.raw, r.tokens),
        preemptions: after.preemptions - before.preemptions,
        peak_running: after.peakRunning,
        peak_running_before_preemption: after.peakBefore,
        pauses: after.pauses - before.pauses,
        longest_pause: after.longestPause,
        demotions: after.demotions - before.demotions,
        promotions: after.promotions - before.promotions,
      });
    }
    const pool = (await model.stats({ history: true })).pool as Record<string, unknown> | undefined;
    const { history, ...rest } = (pool ?? {}) as { history?: unknown[] };
    const { anonShmem, cgroupAnonShmem } = peaks.stop();
    return { rows, prompt_tps, ...(history ? { timeline: history, phases } : {}), ...(pool ? { pool: rest } : {}), peak_anon_shmem_bytes: anonShmem, peak_cgroup_anon_shmem_bytes: cgroupAnonShmem };
  } finally {
    peaks.stop();
    await server.close();
    await model.dispose();
  }
}

async function measureLlamaCpp(path: string, threads: number, gen: number, ns: number[]): Promise<Row[]> {
  const h = await loadLlamaCpp();
  if ('error' in h) throw new Error(h.error);
  const model = await h.llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const rows: Row[] = [];
  try {
    for (const n of ns) {
      const context = await model.createContext({ contextSize: (PROMPT_TOKENS + gen + 16) * n, sequences: n, threads, flashAttention: false });
      try {
        const t0 = performance.now();
        const runs = await Promise.all(
          Array.from({ length: n }, async (_, i) => {
            const seq = context.getSequence();
            const s0 = performance.now();
            let ttft = -1;
            let last = -1;
            let tokens = 0;
            for await (const _t of seq.evaluate(Array.from(benchPromptTokens(PROMPT_TOKENS, 32000, 1000 + i)), { temperature: 0 })) {
              last = performance.now() - s0;
              if (ttft < 0) ttft = last;
              if (++tokens >= gen) break;
            }
            return { ttftMs: ttft, tokens, decodeMs: last - ttft };
          }),
        );
        rows.push(row(n, runs, performance.now() - t0));
      } finally {
        await context.dispose();
      }
    }
  } finally {
    await model.dispose();
  }
  return rows;
}

function row(n: number, runs: StreamRun[], wallMs: number): Row {
  const tokens = runs.reduce((a, r) => a + r.tokens, 0);
  const ttfts = runs.map((r) => r.ttftMs);
  const decode = runs.reduce((a, r) => a + (r.decodeMs > 0 && r.tokens > 1 ? ((r.tokens - 1) * 1000) / r.decodeMs : 0), 0);
  return { streams: n, aggregate_tps: round(tokens / (wallMs / 1000)), decode_tps: round(decode), ttft_ms_p50: round(median(ttfts)), ttft_ms_p95: round(percentile(ttfts, 95)), tokens, wall_ms: round(wallMs) };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const promptFlag = argv.find((a) => a.startsWith('--prompt-tokens='));
  if (promptFlag) PROMPT_TOKENS = Number(promptFlag.slice('--prompt-tokens='.length));
  if (!Number.isSafeInteger(PROMPT_TOKENS) || PROMPT_TOKENS < 1) throw new Error(`serve-child: bad ${promptFlag}`);
  const expertsFlag = argv.find((a) => a.startsWith('--experts='));
  if (expertsFlag) EXPERTS = JSON.parse(expertsFlag.slice('--experts='.length)) as ExpertOptions;
  const [engine, path, threads, gen, list, budget, parallel, ctx, pool] = argv.filter((a) => a !== promptFlag && a !== expertsFlag);
  if (!engine || !path || !threads || !gen || !list) throw new Error('usage: serve-child ENGINE MODEL THREADS GEN_TOKENS CONCURRENCY_LIST [BUDGET [PARALLEL CTX POOL]]');
  const ns = list.split(',').map(Number);
  const layout = parallel && ctx ? { parallel: Number(parallel), ctx: Number(ctx), pool: pool === 'static' ? ('static' as const) : ('elastic' as const) } : undefined;
  const out =
    engine === 'flexinfer'
      ? await measureFlexinfer(path, Number(threads), Number(gen), ns, budget && budget !== '-' ? budget : undefined, layout)
      : { rows: await measureLlamaCpp(path, Number(threads), Number(gen), ns) };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String((err as Error)?.message ?? err) }) + '\n');
  process.exitCode = 1;
});
