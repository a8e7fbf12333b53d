/**
 * `flexinfer bench MOE_MODEL --budget-sweep`: generation tokens/s of a Mixture-of-Experts model
 * at 100/50/25/12.5% of its file size, flexinfer vs llama.cpp (mmap), each run in its own
 * process inside a cgroup-v1 memory limit of budget + 64 MiB, the file evicted from the page
 * cache before every run (as budget-sweep.ts does for dense models), plus the expert cache's
 * figures of the generation phase (stats at the first token subtracted from the end):
 *
 *   hit rate            experts found in the cache / experts needed (prefetched ones included)
 *   cached              the same without the experts the prefetch read for that step: those
 *                       already in the cache from earlier steps (what the cache itself gives;
 *                       uniform routing: about the cache's share of the experts)
 *   bytes per token     expert (and streamed dense) bytes read per generated token
 *   required per token  the same without prefetches nobody used: what had to be read given
 *                       the hit rate
 *   I/O bound           best read rate measured beside the runs / required bytes per token
 *   % of bound          tokens/s / I/O bound
 *   O_DIRECT bound      the same with the best O_DIRECT probe (the path budgeted runs read
 *                       with: a buffered probe outside the cgroup may be helped by the page
 *                       cache, e.g. 4.3 GB/s right after a run on a 1.8 GB/s O_DIRECT day)
 *
 * --sample-seed N: both engines sample (temperature 1, seed N): greedy decoding of a random-weight
 * file repeats one token, so the same experts are routed again and the hit rate is far above
 * what the file's routing gives (measured on qwen3-30b-a3b Q4_K_M at 25%: 93% vs 18.7% expected).
 *
 * A run killed for memory is reported as "oom", never dropped. A file written by
 * `flexinfer synth --router-skew` is labelled "synthetic skew" in the JSON, the table and the plot.
 */
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readGgufSync } from '../gguf/reader.js';
import { memoryCgroupSupport, runInMemoryCgroup, type CgroupRunResult } from '../weights/cgroup.js';
import { describeStorage, evictFile, measureStorage } from './budget-sweep.js';
import { median, ratio, round } from './stats.js';
import { renderLinePlot } from './svg.js';
import { InvalidOptionError } from '../errors.js';
import type { SweepOptions, SweepOutput } from './sweeps.js';

const MiB = 1024 * 1024;
/** The issue's budgets: all of the file, half, a quarter, an eighth. */
export const MOE_BUDGETS = [100, 50, 25, 12.5];

/** Expert figures of the generation phase, from two stats() snapshots. */
export interface DecodeFigures {
  tokens: number;
  hitRate: number;
  /** Hits not owed to this step's prefetch: (hits - prefetched experts used) / lookups. */
  cacheHitRate: number;
  bytesPerToken: number;
  requiredBytesPerToken: number;
  ioWaitSecPerToken: number;
  predictionAccuracy: number | null;
  /** The same per distance of the prediction (one layer ahead, two, ...). */
  predictionAccuracyByDistance: number[];
  /** Wall time per token with expert reads in flight, and the mean reads (pieces) in flight then. */
  ioBusySecPerToken: number;
  ioMeanInflight: number | null;
}

type Num = Record<string, number | undefined>;

/** Generation-phase expert figures: the difference of the engine stats at the end and at the first token. */
export function decodeFigures(first: Record<string, unknown> | undefined, last: Record<string, unknown> | undefined): DecodeFigures | null {
  const ex = (s: Record<string, unknown> | undefined): Num | undefined => (s?.weights as { experts?: Num } | undefined)?.experts;
  const dense = (s: Record<string, unknown> | undefined): Num | undefined => (s?.weights as { streaming?: Num } | undefined)?.streaming;
  const a = ex(first);
  const b = ex(last);
  if (!a || !b || b.passes === undefined || a.passes === undefined) return null;
  const d = (k: string): number => (b[k] ?? 0) - (a[k] ?? 0);
  const tokens = d('passes');
  if (tokens <= 0) return null;
  const denseBytes = (dense(last)?.bytesRead ?? 0) - (dense(first)?.bytesRead ?? 0);
  const wasted = d('prefetchBytes') - d('prefetchUsedBytes');
  return {
    tokens,
    hitRate: d('lookups') > 0 ? d('hits') / d('lookups') : 1,
    cacheHitRate: d('lookups') > 0 ? Math.max(0, d('hits') - d('prefetchUsed')) / d('lookups') : 1,
    bytesPerToken: (d('bytesRead') + denseBytes) / tokens,
    requiredBytesPerToken: (d('bytesRead') - Math.max(0, wasted) + denseBytes) / tokens,
    ioWaitSecPerToken: d('ioWaitSec') / tokens,
    predictionAccuracy: d('predictedLookups') > 0 ? d('predictedCorrect') / d('predictedLookups') : null,
    predictionAccuracyByDistance: byDistance(a, b),
    ioBusySecPerToken: d('ioBusySec') / tokens,
    ioMeanInflight: d('ioBusySec') > 0 ? d('ioInflightSec') / d('ioBusySec') : null,
  };
}

/** Prediction accuracy per distance over the phase between two snapshots. */
function byDistance(a: Record<string, unknown>, b: Record<string, unknown>): number[] {
  const arr = (s: Record<string, unknown>, k: string): number[] => (Array.isArray(s[k]) ? (s[k] as number[]) : []);
  const la = arr(a, 'predictedLookupsByDistance');
  const ca = arr(a, 'predictedCorrectByDistance');
  const lb = arr(b, 'predictedLookupsByDistance');
  const cb = arr(b, 'predictedCorrectByDistance');
  return lb.map((n, i) => {
    const lookups = n - (la[i] ?? 0);
    return lookups > 0 ? (cb[i]! - (ca[i] ?? 0)) / lookups : 0;
  });
}

interface Run {
  status: 'ok' | 'oom' | 'error' | 'timeout';
  gen_tps: number | null;
  max_usage_bytes: number;
  decode?: DecodeFigures | null;
  error?: string;
}

function parseRun(r: CgroupRunResult): Run {
  const base = { max_usage_bytes: r.maxUsageBytes };
  if (r.oomKilled) return { ...base, status: 'oom', gen_tps: null };
  if (r.timedOut) return { ...base, status: 'timeout', gen_tps: null };
  try {
    const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
    if (j.error) return { ...base, status: 'error', gen_tps: null, error: String(j.error) };
    return { ...base, status: 'ok', gen_tps: j.gen_tps, decode: decodeFigures(j.stats_first_token, j.stats) };
  } catch {
    return { ...base, status: 'error', gen_tps: null, error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ') };
  }
}

const med = (xs: Array<number | null | undefined>): number | null => {
  const v = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  return v.length ? median(v) : null;
};

function summary(runs: Run[]) {
  const ok = runs.filter((r) => r.status === 'ok');
  return {
    status: ok.length > 0 ? 'ok' : (runs[0]?.status ?? 'error'),
    gen_tps: ok.length ? round(median(ok.map((r) => r.gen_tps!))) : null,
    max_usage_bytes: Math.max(0, ...runs.map((r) => r.max_usage_bytes)),
    hit_rate: med(ok.map((r) => r.decode?.hitRate)),
    cache_hit_rate: med(ok.map((r) => r.decode?.cacheHitRate)),
    bytes_per_token: med(ok.map((r) => r.decode?.bytesPerToken)),
    required_bytes_per_token: med(ok.map((r) => r.decode?.requiredBytesPerToken)),
    io_wait_sec_per_token: med(ok.map((r) => r.decode?.ioWaitSecPerToken)),
    prediction_accuracy: med(ok.map((r) => r.decode?.predictionAccuracy)),
    prediction_accuracy_by_distance: ok[0]?.decode?.predictionAccuracyByDistance ?? [],
    io_busy_sec_per_token: med(ok.map((r) => r.decode?.ioBusySecPerToken)),
    io_mean_inflight: med(ok.map((r) => r.decode?.ioMeanInflight)),
    runs,
  };
}

export async function runMoeBudgetSweep(path: string, o: SweepOptions): Promise<SweepOutput> {
  const support = memoryCgroupSupport();
  if (!support.ok) throw new Error(`--budget-sweep needs memory cgroups: ${support.reason}`);
  const fileBytes = statSync(path).size;
  const routing = routingLabel(path);
  o.onLog(`routing: ${routing}`);
  const dist = fileURLToPath(new URL('.', import.meta.url));
  const ctx = 512;
  const budgets = o.budgets ?? MOE_BUDGETS;
  const rows: Array<Record<string, any>> = [];
  for (const pct of budgets) {
    const budget = Math.floor((fileBytes * pct) / 100);
    const limit = budget + 64 * MiB;
    const flex: Run[] = [];
    const llama: Run[] = [];
    const timeoutMs = 20 * 60_000;
    // The storage probed beside each point (before and after its runs): the disk's speed moves.
    const before = measureStorage(path);
    o.onLog(`budget ${pct}%: storage before: ${describeStorage(before)}`);
    for (let r = 0; r < o.runs; r++) {
      evictFile(path);
      const seed = o.sampleSeed !== undefined ? String(o.sampleSeed) : '-';
      const args = [`${dist}flexinfer-child.js`, path, String(o.threads), String(ctx), String(o.promptTokens), String(o.genTokens), String(budget), o.kv ?? '-', JSON.stringify(o.experts ?? {}), seed];
      flex.push(parseRun(await runInMemoryCgroup(process.execPath, args, limit, { timeoutMs })));
      if (!o.noLlamaCpp) {
        evictFile(path);
        const l = await runInMemoryCgroup(process.execPath, [`${dist}llamacpp-child.js`, path, String(o.threads), String(ctx), String(o.promptTokens), String(o.genTokens), seed], limit, { timeoutMs: o.llamaCppTimeoutMs ?? timeoutMs });
        llama.push(parseRun(l));
      }
      const f = flex.at(-1)!;
      o.onLog(`budget ${pct}%: flexinfer ${fmt(f)}` + (f.decode ? ` hit ${(100 * f.decode.hitRate).toFixed(1)}% (cached ${(100 * f.decode.cacheHitRate).toFixed(1)}%), ${(f.decode.bytesPerToken / MiB).toFixed(0)} MiB/token, I/O wait ${(1000 * f.decode.ioWaitSecPerToken).toFixed(0)} ms/token, reads in flight ${(1000 * f.decode.ioBusySecPerToken).toFixed(0)} ms/token (${(f.decode.ioMeanInflight ?? 0).toFixed(1)} deep), prediction by distance ${f.decode.predictionAccuracyByDistance.map((a) => `${(100 * a).toFixed(0)}%`).join(' / ')}` : '') + (o.noLlamaCpp ? '' : ` | llama.cpp ${fmt(llama.at(-1)!)}`));
    }
    const after = measureStorage(path);
    o.onLog(`budget ${pct}%: storage after: ${describeStorage(after)}`);
    // The read rate measured beside the runs: the best path of before and after.
    const best = Math.max(before.best.bytesPerSec, after.best.bytesPerSec);
    rows.push({ budget_percent: pct, budget_bytes: budget, cgroup_limit_bytes: limit, storage: { before, after, best_bytes_per_sec: best }, flexinfer: summary(flex), llamacpp: o.noLlamaCpp ? null : summary(llama) });
  }
  for (const r of rows) boundFigures(r);
  const decoding = o.sampleSeed !== undefined ? `sampled (temperature 1, seed ${o.sampleSeed})` : 'greedy';
  const result = { model: path, routing, decoding, file_bytes: fileBytes, threads: o.threads, prompt_tokens: o.promptTokens, gen_tokens: o.genTokens, runs: o.runs, experts: o.experts ?? {}, rows };
  return { result, table: moeTable(result), svg: moeSvg(rows, budgets, o.noLlamaCpp, routing) };
}

/** A row's ratio and I/O bounds (best probe, best O_DIRECT probe), from its runs and probes. */
function boundFigures(r: Record<string, any>): void {
  const f = r.flexinfer;
  const best = r.storage.best_bytes_per_sec as number;
  const direct = Math.max(0, ...[r.storage.before, r.storage.after].flatMap((m: { probes?: Array<{ direct: boolean; bytesPerSec: number }> }) => (m?.probes ?? []).filter((p) => p.direct).map((p) => p.bytesPerSec)));
  r.storage.best_direct_bytes_per_sec = direct > 0 ? direct : null;
  r.ratio = ratio(f.gen_tps, r.llamacpp?.gen_tps);
  const bound = (rate: number) => (f.required_bytes_per_token > 0 && rate > 0 ? round(rate / f.required_bytes_per_token) : null);
  r.flexinfer_io_bound_tps = bound(best);
  r.flexinfer_fraction_of_bound = r.flexinfer_io_bound_tps && f.gen_tps ? round(f.gen_tps / r.flexinfer_io_bound_tps, 3) : null;
  r.flexinfer_direct_bound_tps = bound(direct);
  r.flexinfer_fraction_of_direct_bound = r.flexinfer_direct_bound_tps && f.gen_tps ? round(f.gen_tps / r.flexinfer_direct_bound_tps, 3) : null;
}

/** MoE sweeps run in parts (one budget point per run): one table and plot; `runs` may differ. */
export function mergeMoeSweeps(parts: ReadonlyArray<{ name: string; json: Record<string, any> }>): SweepOutput {
  const keys = ['model', 'file_bytes', 'threads', 'gen_tokens', 'prompt_tokens', 'routing', 'decoding'];
  const first = parts[0]!.json;
  for (const { name, json } of parts) {
    for (const k of keys) {
      if (json[k] !== first[k]) throw new InvalidOptionError('--merge', `${name} has ${k} ${String(json[k])}, ${parts[0]!.name} has ${String(first[k])}: merge sweeps of one file with the same settings`);
    }
  }
  const rows = parts.flatMap((p) => p.json.rows as Array<Record<string, any>>).sort((a, b) => b.budget_percent - a.budget_percent);
  if (new Set(rows.map((r) => r.budget_percent)).size !== rows.length) throw new InvalidOptionError('--merge', 'a budget appears in more than one file');
  for (const r of rows) boundFigures(r);
  const runs = [...new Set(parts.map((p) => p.json.runs as number))].sort((a, b) => a - b).join('-');
  const result = { ...first, model: String(first.model), routing: String(first.routing), decoding: String(first.decoding), runs, rows };
  const budgets = rows.map((r) => r.budget_percent as number);
  return { result, table: moeTable(result), svg: moeSvg(rows, budgets, rows.every((r) => !r.llamacpp), String(first.routing)) };
}

/**
 * How the file routes: 'synthetic skew (...)' for a synth --router-skew file, 'synthetic
 * uniform' for another synth file (its general.name says synthetic), else 'as the file routes'.
 */
export function routingLabel(path: string): string {
  const f = readGgufSync(path);
  const skew = f.get('flexinfer.synth.router_skew');
  if (typeof skew === 'number' && skew > 0) return `synthetic skew (synth --router-skew ${+skew.toFixed(3)})`;
  return /\(synthetic/.test(String(f.get('general.name') ?? '')) ? 'synthetic uniform (a synth file: random routers over token-dependent inputs)' : 'as the file routes';
}

function fmt(r: Run): string {
  return r.status === 'ok' ? `${r.gen_tps!.toFixed(2)} tok/s (peak ${(r.max_usage_bytes / MiB).toFixed(0)} MiB)` : `${r.status}${r.error ? ` (${r.error})` : ''}`;
}

function moeTable(result: { model: string; routing: string; decoding: string; runs: number | string; rows: Array<Record<string, any>> }): string {
  const c = (v: unknown, d = 2): string => (v == null ? '-' : typeof v === 'number' ? v.toFixed(d) : String(v));
  let t = `${result.model}: generation tokens/s under a memory budget (cgroup limit = budget + 64 MiB, cold page cache), median of ${result.runs}; ${result.decoding}; routing: ${result.routing}\n`;
  t += 'budget   flexinfer  llama.cpp   ratio  hit rate   cached  MiB/token  I/O bound  % of bound  prediction  storage GB/s  O_DIRECT bound (GB/s)  % of it\n';
  for (const r of result.rows) {
    const f = r.flexinfer;
    const l = r.llamacpp ? (r.llamacpp.gen_tps ?? r.llamacpp.status) : '-';
    t += `${`${r.budget_percent}%`.padEnd(8)} ${c(f.gen_tps ?? f.status).padStart(9)} ${c(l).padStart(10)} ${c(r.ratio).padStart(7)} ${(f.hit_rate != null ? `${(100 * f.hit_rate).toFixed(1)}%` : '-').padStart(9)} ${(f.cache_hit_rate != null ? `${(100 * f.cache_hit_rate).toFixed(1)}%` : '-').padStart(8)} ${c(f.bytes_per_token != null ? f.bytes_per_token / MiB : null, 0).padStart(10)} ${c(r.flexinfer_io_bound_tps).padStart(10)} ${(r.flexinfer_fraction_of_bound != null ? `${(100 * r.flexinfer_fraction_of_bound).toFixed(0)}%` : '-').padStart(11)} ${(f.prediction_accuracy != null ? `${(100 * f.prediction_accuracy).toFixed(0)}%` : '-').padStart(11)} ${c(r.storage ? r.storage.best_bytes_per_sec / 1e9 : null).padStart(13)} ${`${c(r.flexinfer_direct_bound_tps)} (${c(r.storage?.best_direct_bytes_per_sec != null ? r.storage.best_direct_bytes_per_sec / 1e9 : null)})`.padStart(22)} ${(r.flexinfer_fraction_of_direct_bound != null ? `${(100 * r.flexinfer_fraction_of_direct_bound).toFixed(0)}%` : '-').padStart(8)}\n`;
  }
  return t;
}

/** Two plots stacked: tokens/s (both engines, flexinfer's I/O bound) and the expert hit rate. */
function moeSvg(rows: Array<Record<string, any>>, budgets: number[], noLlamaCpp: boolean, routing: string): string {
  // (results of earlier builds say "a synth file" without the 'synthetic uniform' prefix)
  const skewed = routing.startsWith('synthetic skew') ? ' [synthetic skew]' : /synth/.test(routing) ? ' [synthetic uniform]' : '';
  const xTicks = budgets.map((b) => `${b}%`);
  const w = 720;
  const h = 420;
  const tps = renderLinePlot({
    title: `MoE generation speed under a memory budget${skewed}`,
    xLabel: 'memory budget (% of model file)',
    yLabel: 'tokens/s',
    xTicks,
    width: w,
    height: h,
    series: [
      { name: 'flexinfer', values: rows.map((r) => r.flexinfer.gen_tps) },
      ...(noLlamaCpp ? [] : [{ name: 'llama.cpp (mmap)', values: rows.map((r) => r.llamacpp?.gen_tps ?? null) }]),
      { name: 'flexinfer I/O bound', values: rows.map((r) => r.flexinfer_io_bound_tps), dashed: true },
    ],
    notes: rows.flatMap((r, i) => [
      ...(r.flexinfer.status !== 'ok' ? [{ series: 'flexinfer', x: i, text: String(r.flexinfer.status).toUpperCase() }] : []),
      ...(r.llamacpp && r.llamacpp.status !== 'ok' ? [{ series: 'llama.cpp (mmap)', x: i, text: String(r.llamacpp.status).toUpperCase() }] : []),
    ]),
  });
  const hit = renderLinePlot({
    title: `Expert cache hit rate during generation${skewed}`,
    xLabel: 'memory budget (% of model file)',
    yLabel: 'hit rate (%)',
    xTicks,
    width: w,
    height: h,
    series: [
      { name: 'hit rate (prefetched included)', values: rows.map((r) => (r.flexinfer.hit_rate != null ? round(100 * r.flexinfer.hit_rate, 1) : null)) },
      { name: 'cached before the step', values: rows.map((r) => (r.flexinfer.cache_hit_rate != null ? round(100 * r.flexinfer.cache_hit_rate, 1) : null)), dashed: true },
    ],
  });
  const inner = (svg: string, y: number) => svg.replace(/^<\?xml[^>]*>\s*/, '').replace(/^<svg /, `<svg x="0" y="${y}" `);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${2 * h}" viewBox="0 0 ${w} ${2 * h}">\n${inner(tps, 0)}\n${inner(hit, h)}\n</svg>\n`;
}
