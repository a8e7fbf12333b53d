/**
 * `flexinfer bench MODEL --serve-sweep --memory-budget 50% --parallel 16 --ctx-size 4096`:
 * the elastic memory pool against today's static split, in the same run, through the HTTP
 * server with 1, 4, 8 and 16 concurrent streams (serve-child.ts), each configuration in its own
 * process inside a memory cgroup of budget + 64 MiB, cold page cache:
 *
 *   flexinfer elastic   the flags as given (KV floor of one full-context sequence, the rest shared)
 *   flexinfer static    the same flags; when the static split cannot load them (KV for
 *                       parallel x ctx does not fit), the largest context it can load at that
 *                       parallelism, which is what a user of the static split would have to pick
 *   llama.cpp           node-llama-cpp, unbudgeted (the peer's speed) and in the same cgroup
 *
 * Per load: aggregate tokens/s, TTFT, weight bytes read per generated token, preemptions, the
 * pool's demotions / promotions. The elastic run's memory split over time is a second SVG.
 */
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readGgufSync } from '../gguf/reader.js';
import { modelConfigFromGguf } from '../models/registry.js';
import { kvPoolSize } from '../kv/pool-size.js';
import { parseMemoryBudget } from '../weights/budget.js';
import { DEFAULT_HARDWARE, planInputs, planWithWindow } from '../weights/create.js';
import { InsufficientMemoryError, InvalidOptionError } from '../errors.js';
import { engineScratchBytes, kvShapeFor, runtimeReserveFor } from '../engine/memory.js';
import { MAX_BATCH_ROWS } from '../engine/model.js';
import { memoryCgroupSupport, runInMemoryCgroup } from '../weights/cgroup.js';
import { describeStorage, evictFile, measureStorage, type StorageMeasurement } from './budget-sweep.js';
import { ratio, round } from './stats.js';
import { renderLinePlot, renderStackedArea } from './svg.js';
import type { SweepOptions, SweepOutput } from './sweeps.js';
import { expertTableLines, type ExpertRow } from './serve-experts.js';

const STREAMS = [1, 4, 8, 16];
const MiB = 1024 * 1024;
/** llama.cpp under the budget thrashed for minutes in earlier runs: it gets this long. */
const LLAMACPP_BUDGET_TIMEOUT_MS = 180_000;

interface ChildRow {
  streams: number;
  aggregate_tps: number;
  ttft_ms_p50: number;
  ttft_ms_p95: number;
  tokens: number;
  streamed_bytes_per_token?: number;
  experts?: ExpertRow;
  preemptions?: number;
  peak_running?: number;
  peak_running_before_preemption?: number;
  pauses?: number;
  longest_pause?: number;
  demotions?: number;
  promotions?: number;
}

interface Sample {
  t: number;
  residentBytes: number;
  ringBytes: number;
  loadingBytes: number;
  kvLiveBytes: number;
  kvCachedBytes: number;
  freeBytes: number;
}

/** One configuration's output (serve-child.ts), or why it has none. */
export interface ChildOut {
  rows?: ChildRow[];
  timeline?: Sample[];
  phases?: Array<{ streams: number; t: number }>;
  pool?: { scratchBytes?: number; floorBytes?: number; kvBytes?: number; events?: Record<string, number> };
  error?: string;
  /** memory.max_usage_in_bytes of the configuration's cgroup: page cache included (the limit is reached whenever the disk is read). */
  peak_bytes?: number;
  /** Peak anonymous + shared memory of its cgroup, every page once (serve-child.ts): what the budget must hold. */
  peak_cgroup_anon_shmem_bytes?: number;
  /** Peak RssAnon + RssShmem of the server process: counts a KV chunk once per mapping (over-counts shared chunks). */
  peak_anon_shmem_bytes?: number;
  /** This file's cold read speed measured right before the configuration ran (bytes/s). */
  storage?: StorageMeasurement;
}

/**
 * Whether the static split of `parallel` sequences of `ctx` tokens fits `budget`, by the
 * engine's own sizing; with `reserve`, with its runtime reserve kept above the weights' minimum.
 */
function staticFits(path: string, budget: number, reserve = false): (parallel: number, ctx: number) => boolean {
  const file = readGgufSync(path);
  const config = modelConfigFromGguf(file);
  const inputs = planInputs(file);
  return (parallel, ctx) => {
    const scratchBytes = engineScratchBytes(config, parallel, MAX_BATCH_ROWS);
    const { kvBytes } = kvPoolSize(kvShapeFor(config, ctx), parallel, 'vtensor', MAX_BATCH_ROWS);
    try {
      planWithWindow(inputs, { budget: reserve ? budget - runtimeReserveFor(parallel, file.dataOffset) : budget, kvBytes, scratchBytes, hardware: DEFAULT_HARDWARE });
      return true;
    } catch (e) {
      if (e instanceof InsufficientMemoryError) return false;
      throw e;
    }
  };
}

/** The largest n in [0, max] with ok(n) (ok monotonic: true up to some n, false after); ok(0) is taken as true. */
function largest(max: number, ok: (n: number) => boolean): number {
  let lo = 0;
  let hi = max;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * The largest context (a multiple of 64 tokens, at most `maxCtx`) for which the static split
 * of `parallel` sequences fits `budget`, by the engine's own sizing; 0 if none.
 */
export function largestStaticContext(path: string, budget: number, parallel: number, maxCtx: number): number {
  const fits = staticFits(path, budget);
  return largest(Math.floor(maxCtx / 64), (n) => fits(parallel, n * 64)) * 64;
}

/**
 * The static split a user would configure for these flags: `--parallel` at the largest context
 * it loads; when that context cannot hold one request (`needTokens`: prompt + generated), the
 * most sequences (at most `parallel`) whose static split of a `needTokens` context (rounded up
 * to 64) fits with its runtime reserve (the one that fits only without it ran at the edge of a
 * budget + 64 MiB cgroup and was OOM-killed in one of two runs: tinyllama Q4_0, 50%, 10 x 576
 * tokens). `null` when not even one sequence of that context fits.
 */
export function staticLayout(path: string, budget: number, parallel: number, maxCtx: number, needTokens: number): { parallel: number; ctx: number } | null {
  const ctx = largestStaticContext(path, budget, parallel, maxCtx);
  if (ctx >= needTokens && ctx > 0) return { parallel, ctx };
  const need = Math.ceil(needTokens / 64) * 64;
  if (need > maxCtx) return null;
  const fits = staticFits(path, budget, true);
  const p = largest(parallel, (n) => fits(n, need));
  return p > 0 ? { parallel: p, ctx: need } : null;
}

/** What the static configuration of the sweep is, in words (what it reserves and why). */
function staticNote(parallel: number, ctx: number, st: { parallel: number; ctx: number } | null, need: number): string {
  if (st && st.ctx >= ctx && st.parallel === parallel) return `the static split loads the same flags: KV for ${parallel} x ${ctx} tokens reserved at load`;
  const cannot = `the static split cannot load --parallel ${parallel} --ctx-size ${ctx} in this budget (KV for ${parallel} full-context sequences does not fit)`;
  if (!st) return `${cannot}, nor one sequence of ${need} tokens (prompt + generated): not measured`;
  if (st.parallel === parallel) return `${cannot}; measured at --ctx-size ${st.ctx}, the largest it loads (KV for ${parallel} x ${st.ctx} tokens reserved at load)`;
  return `${cannot}, and its largest context at --parallel ${parallel} is shorter than a request (${need} tokens: prompt + generated); measured at --parallel ${st.parallel} --ctx-size ${st.ctx}, the most sequences of that context it loads with its runtime reserve (KV for ${st.parallel} x ${st.ctx} tokens reserved at load; further streams wait in the server's queue)`;
}

async function runChild(args: string[], limitBytes: number | null, timeoutMs: number): Promise<ChildOut> {
  if (limitBytes == null) {
    const { spawn } = await import('node:child_process');
    return new Promise((resolve) => {
      const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (err += d));
      c.on('close', () => resolve(parseOut(out, err)));
    });
  }
  const r = await runInMemoryCgroup(process.execPath, args, limitBytes, { timeoutMs });
  if (r.oomKilled) return { error: 'oom' };
  if (r.timedOut) return { error: `timeout after ${Math.round(timeoutMs / 1000)} s` };
  return { ...parseOut(r.stdout, r.stderr), peak_bytes: r.maxUsageBytes };
}

function parseOut(stdout: string, stderr: string): ChildOut {
  try {
    return JSON.parse(stdout.trim().split('\n').pop() ?? '') as ChildOut;
  } catch {
    return { error: (stderr || stdout).trim().split('\n').slice(-2).join(' | ') || 'no output' };
  }
}

/** The configurations of the sweep, each measured in its own process. */
export const SERVE_CONFIGS = ['elastic', 'static', 'llamacpp', 'llamacpp_budget'] as const;
export type ServeConfig = (typeof SERVE_CONFIGS)[number];

/** Options of runElasticServeSweep besides the sweep's own. */
export interface ElasticServeOptions {
  memoryBudget: string;
  parallel: number;
  ctxSize: number;
  /** Measure only these configurations (default: all); the others come from `resume`. */
  configs?: readonly ServeConfig[];
  /** A previous result of this sweep (its `runs`), so one run can measure one configuration. */
  resume?: ResumeFrom;
}

/** What --resume reads of an earlier result: its runs, and the settings they were measured with. */
export interface ResumeFrom {
  runs?: Record<string, ChildOut>;
  budget_bytes?: number;
  parallel?: number;
  ctx_size?: number;
  gen_tokens?: number;
  prompt_tokens?: number;
  threads?: number;
}

export async function runElasticServeSweep(path: string, o: SweepOptions & ElasticServeOptions): Promise<SweepOutput> {
  const child = fileURLToPath(new URL('./serve-child.js', import.meta.url));
  const fileBytes = statSync(path).size;
  const budget = parseMemoryBudget(o.memoryBudget, fileBytes);
  const limit = budget + 64 * MiB;
  const cg = memoryCgroupSupport();
  if (o.resume) {
    const want: Record<string, number> = { budget_bytes: budget, parallel: o.parallel, ctx_size: o.ctxSize, gen_tokens: o.genTokens, prompt_tokens: o.promptTokens, threads: o.threads };
    const differ = Object.entries(want).filter(([k, v]) => (o.resume as Record<string, unknown>)[k] !== v);
    if (differ.length > 0) {
      throw new InvalidOptionError('--resume', `the earlier sweep was measured with other settings (${differ.map(([k, v]) => `${k} ${String((o.resume as Record<string, unknown>)[k])} there, ${v} here`).join('; ')}): give the same flags`);
    }
  }
  const st = staticLayout(path, budget, o.parallel, o.ctxSize, o.promptTokens + o.genTokens);
  const staticCtx = st?.ctx ?? 0;
  const staticParallel = st?.parallel ?? 0;
  const configs: Array<{ key: string; label: string; args: string[]; limit: number | null; timeoutMs: number }> = [
    { key: 'elastic', label: `flexinfer elastic (ctx ${o.ctxSize})`, args: ['flexinfer', String(budget), String(o.parallel), String(o.ctxSize), 'elastic'], limit, timeoutMs: 30 * 60_000 },
  ];
  if (st) {
    const label = `flexinfer static (${st.parallel < o.parallel ? `parallel ${st.parallel}, ` : ''}ctx ${st.ctx})`;
    configs.push({ key: 'static', label, args: ['flexinfer', String(budget), String(st.parallel), String(st.ctx), 'static'], limit, timeoutMs: 30 * 60_000 });
  }
  if (o.experts) for (const c of configs) c.args.push(`--experts=${JSON.stringify(o.experts)}`);
  if (!o.noLlamaCpp) {
    configs.push({ key: 'llamacpp', label: 'llama.cpp, no budget', args: ['llamacpp', '-'], limit: null, timeoutMs: 30 * 60_000 });
    configs.push({ key: 'llamacpp_budget', label: `llama.cpp, ${o.memoryBudget} cgroup`, args: ['llamacpp', '-'], limit, timeoutMs: LLAMACPP_BUDGET_TIMEOUT_MS });
  }
  const results: Record<string, ChildOut> = {};
  const measure = new Set<string>(o.configs ?? SERVE_CONFIGS);
  for (const c of configs) {
    const earlier = o.resume?.runs?.[c.key];
    if (!measure.has(c.key)) {
      if (earlier) results[c.key] = earlier;
      continue;
    }
    if (c.limit !== null && !cg.ok) {
      results[c.key] = { error: `not measured: ${cg.reason}` };
      continue;
    }
    // The disk's speed changes within minutes: each configuration gets its own probe.
    const storage = measureStorage(path);
    o.onLog(`storage: ${describeStorage(storage)}`);
    evictFile(path);
    o.onLog(`serve sweep: ${c.label} ...`);
    const [engine, ...rest] = c.args;
    results[c.key] = await runChild([child, engine!, path, String(o.threads), String(o.genTokens), STREAMS.join(','), ...rest, `--prompt-tokens=${o.promptTokens}`], c.limit, c.timeoutMs);
    const r = results[c.key]!;
    r.storage = storage;
    o.onLog(`serve sweep: ${c.label}: ${r.error ?? r.rows!.map((x) => `${x.streams}x ${x.aggregate_tps} tok/s`).join(', ')}`);
  }
  const at = (key: string, n: number): ChildRow | undefined => results[key]?.rows?.find((r) => r.streams === n);
  const rows = STREAMS.map((n) => ({
    streams: n,
    ...Object.fromEntries(configs.map((c) => [c.key, at(c.key, n) ?? null])),
    elastic_vs_static: ratio(at('elastic', n)?.aggregate_tps, at('static', n)?.aggregate_tps),
  }));
  const events = results['elastic']?.pool?.events ?? {};
  const result = {
    model: path,
    file_bytes: fileBytes,
    budget_bytes: budget,
    cgroup_limit_bytes: limit,
    threads: o.threads,
    gen_tokens: o.genTokens,
    prompt_tokens: o.promptTokens,
    parallel: o.parallel,
    ctx_size: o.ctxSize,
    static_ctx_size: staticCtx,
    static_parallel: staticParallel,
    static_note: staticNote(o.parallel, o.ctxSize, st, o.promptTokens + o.genTokens),
    rows,
    elastic_events: events,
    peaks: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.peak_bytes ?? null])),
    /** Peak anonymous + shared memory per configuration, every page once (the figure to hold against the budget). */
    peaks_anon_shmem: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.peak_cgroup_anon_shmem_bytes ?? null])),
    errors: Object.fromEntries(Object.entries(results).filter(([, v]) => v.error).map(([k, v]) => [k, v.error])),
    /** Every configuration's own output, the elastic run's memory split over time included (what --resume reads back). */
    runs: results,
  };
  const mib = (b: number | undefined) => (b === undefined ? '-' : (b / MiB).toFixed(0));
  let table = `${path}: serving at a ${o.memoryBudget} budget (${mib(budget)} MiB, cgroup ${mib(limit)} MiB), --parallel ${o.parallel}; prompts of ${o.promptTokens} tokens, ${o.genTokens} generated per stream\n`;
  table += `static: ${result.static_note}\n`;
  const w = Math.max(34, ...configs.map((c) => c.label.length + 1));
  table += 'streams' + configs.map((c) => c.label.padStart(w)).join('') + '   elastic/static\n';
  for (const n of STREAMS) {
    table += String(n).padEnd(7);
    for (const c of configs) {
      const r = at(c.key, n);
      const extra = r?.streamed_bytes_per_token !== undefined ? ` ${mib(r.streamed_bytes_per_token)}MiB/t` : '';
      table += (r ? `${r.aggregate_tps.toFixed(2)} (${round(r.ttft_ms_p50, 0)} ms)${extra}` : (results[c.key]?.error ?? '-')).slice(0, w - 1).padStart(w);
    }
    const x = ratio(at('elastic', n)?.aggregate_tps, at('static', n)?.aggregate_tps);
    table += `   ${x === null ? '-' : `${x}x`}\n`;
  }
  for (const c of configs) table += expertTableLines(c.label, results[c.key]?.rows);
  table += `elastic pool: ${events['demotions'] ?? 0} demotions, ${events['promotions'] ?? 0} promotions (${events['cancelledPromotions'] ?? 0} cancelled), ${events['kvRefusals'] ?? 0} KV refusals over ${events['steps'] ?? 0} steps\n`;
  for (const c of configs) {
    const st = results[c.key]?.storage;
    // A result resumed from a build before the read-path probes holds the best rate as a number.
    const best = st ? (typeof st.best === 'number' ? (st.best as number) : st.best.bytesPerSec) : 0;
    if (st) table += `storage before ${c.label}: best cold read ${(best / 1e9).toFixed(2)} GB/s\n`;
  }
  for (const c of configs) {
    const r = results[c.key];
    if (r?.peak_cgroup_anon_shmem_bytes) table += `peak memory of ${c.label}: anonymous + shared ${mib(r.peak_cgroup_anon_shmem_bytes)} MiB (cgroup, every page once; the process's RssAnon + RssShmem ${mib(r.peak_anon_shmem_bytes)}, which counts a KV chunk per mapping), cgroup with page cache ${mib(r.peak_bytes)} MiB\n`;
  }
  table += `preemptions (elastic / static): ${STREAMS.map((n) => `${n}: ${at('elastic', n)?.preemptions ?? '-'} / ${at('static', n)?.preemptions ?? '-'}`).join(', ')}\n`;
  table += `KV pauses, sequence-steps (elastic / static): ${STREAMS.map((n) => `${n}: ${at('elastic', n)?.pauses ?? '-'} / ${at('static', n)?.pauses ?? '-'}`).join(', ')}; longest ${at('elastic', STREAMS[STREAMS.length - 1]!)?.longest_pause ?? '-'} / ${at('static', STREAMS[STREAMS.length - 1]!)?.longest_pause ?? '-'} steps\n`;
  table += `most sequences running at once, so far (elastic / static): ${STREAMS.map((n) => `${n}: ${at('elastic', n)?.peak_running ?? '-'} / ${at('static', n)?.peak_running ?? '-'}`).join(', ')}\n`;
  table += `most sequences running at once before a preemption, so far (elastic / static): ${STREAMS.map((n) => `${n}: ${at('elastic', n)?.peak_running_before_preemption ?? '-'} / ${at('static', n)?.peak_running_before_preemption ?? '-'}`).join(', ')}\n`;
  const svg = renderLinePlot({
    title: `Serving at a ${o.memoryBudget} budget: elastic pool vs static split`,
    xLabel: 'concurrent streams',
    yLabel: 'tokens/s (all streams)',
    xTicks: STREAMS.map(String),
    series: configs.map((c) => ({ name: c.label, values: STREAMS.map((n) => at(c.key, n)?.aggregate_tps ?? null), dashed: c.key.startsWith('llamacpp') })),
  });
  const tl = results['elastic']?.timeline ?? [];
  const base = (results['elastic']?.pool?.scratchBytes ?? 0) / MiB;
  const floor = results['elastic']?.pool?.floorBytes ?? 0;
  const timeline = renderStackedArea({
    title: `Memory split over the elastic run (${o.memoryBudget} budget, --parallel ${o.parallel} --ctx-size ${o.ctxSize})`,
    xLabel: 'seconds',
    yLabel: 'MiB',
    x: tl.map((s) => s.t / 1000),
    series: [
      { name: 'scratch', values: tl.map(() => base), color: '#bbbbbb' },
      { name: 'resident weights', values: tl.map((s) => s.residentBytes / MiB), color: '#1f77b4' },
      { name: 'weights being read in', values: tl.map((s) => s.loadingBytes / MiB), color: '#9ecae1' },
      { name: 'stream buffers', values: tl.map((s) => s.ringBytes / MiB), color: '#ff7f0e' },
      { name: 'KV (live sequences)', values: tl.map((s) => s.kvLiveBytes / MiB), color: '#2ca02c' },
      { name: 'KV (prefix cache)', values: tl.map((s) => s.kvCachedBytes / MiB), color: '#98df8a' },
      { name: 'KV floor, unused', values: tl.map((s) => Math.max(0, floor - s.kvLiveBytes - s.kvCachedBytes) / MiB), color: '#d9f0d3' },
      { name: 'free', values: tl.map((s) => Math.max(0, s.freeBytes) / MiB), color: '#eeeeee' },
    ],
    markers: (results['elastic']?.phases ?? []).map((p) => ({ x: p.t / 1000, text: `${p.streams} stream${p.streams === 1 ? '' : 's'}` })),
    line: { y: budget / MiB, text: `budget ${mib(budget)} MiB` },
  });
  return { result, table, svg, extraSvgs: { memory: timeline } };
}
