/**
 * `flexinfer bench MODEL --budget-sweep`: generation tokens/s at 100/75/50/25% of the model
 * file size, flexinfer vs llama.cpp (mmap), each run in its own process inside a cgroup-v1
 * memory limit of budget + 64 MiB, with the model file evicted from the page cache before
 * every run. Also flexinfer's own I/O bound: storage bandwidth / streamed bytes per token.
 *
 * A run killed for memory is reported as "oom", never dropped.
 */
import { statSync } from 'node:fs';
import { measureReadBandwidth } from '../weights/calibrate.js';
import { evictFromPageCache } from '../native/io.js';
import { fileURLToPath } from 'node:url';
import { memoryCgroupSupport, runInMemoryCgroup, type CgroupRunResult } from '../weights/cgroup.js';
import { median, ratio, round } from './stats.js';
import { renderLinePlot } from './svg.js';
import type { SweepOptions, SweepOutput } from './sweeps.js';

const MiB = 1024 * 1024;
const BUDGETS = [100, 75, 50, 25];

/** Evicts a file from the page cache (posix_fadvise DONTNEED over the whole file). */
export function evictFile(path: string): void {
  evictFromPageCache(path);
}

/**
 * How fast this storage can deliver the file cold: O_DIRECT with 1, 2 and 4 I/O threads and
 * one buffered sequential reader (the calibration's own measurement, 8 MiB requests); the
 * best is the storage bandwidth the I/O bound uses.
 */
export function measureStorage(path: string): { direct: number[]; buffered: number; best: number } {
  const direct = [1, 2, 4].map((threads) => measureReadBandwidth(path, true, { threads }));
  const buffered = measureReadBandwidth(path, false, { threads: 1 });
  evictFile(path);
  return { direct, buffered, best: Math.max(buffered, ...direct) };
}

interface RunOutcome {
  gen_tps: number | null;
  status: 'ok' | 'oom' | 'error' | 'timeout';
  max_usage_bytes: number;
  error?: string;
  stats?: Record<string, unknown>;
}

function outcome(r: CgroupRunResult): RunOutcome {
  const base = { max_usage_bytes: r.maxUsageBytes };
  if (r.oomKilled) return { ...base, gen_tps: null, status: 'oom' };
  if (r.timedOut) return { ...base, gen_tps: null, status: 'timeout' };
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    const j = JSON.parse(line);
    if (j.error) return { ...base, gen_tps: null, status: 'error', error: String(j.error) };
    return { ...base, gen_tps: j.gen_tps, status: 'ok', stats: j.stats };
  } catch {
    return { ...base, gen_tps: null, status: 'error', error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ') };
  }
}

function summarize(runs: RunOutcome[]): { gen_tps: number | null; status: string; max_usage_bytes: number } {
  const ok = runs.filter((r) => r.status === 'ok').map((r) => r.gen_tps!);
  const status = ok.length > 0 ? 'ok' : (runs[0]?.status ?? 'error');
  return { gen_tps: ok.length ? round(median(ok)) : null, status, max_usage_bytes: Math.max(0, ...runs.map((r) => r.max_usage_bytes)) };
}

export async function runBudgetSweep(path: string, o: SweepOptions): Promise<SweepOutput> {
  const support = memoryCgroupSupport();
  if (!support.ok) throw new Error(`--budget-sweep needs memory cgroups: ${support.reason}`);
  const fileBytes = statSync(path).size;
  const dist = fileURLToPath(new URL('.', import.meta.url));
  const ctx = 512;
  const bw = measureStorage(path);
  o.onLog(`storage: O_DIRECT (1/2/4 threads) ${bw.direct.map((b) => (b / 1e9).toFixed(2)).join('/')} GB/s, buffered ${(bw.buffered / 1e9).toFixed(2)} GB/s`);
  const rows: Array<Record<string, unknown>> = [];
  for (const pct of BUDGETS) {
    const budget = Math.floor((fileBytes * pct) / 100);
    const limit = budget + 64 * MiB;
    const flex: RunOutcome[] = [];
    const llama: RunOutcome[] = [];
    // Generous: a cold 7B run at a small budget reads the model a few times per token.
    const timeoutMs = 15 * 60_000;
    for (let r = 0; r < o.runs; r++) {
      evictFile(path);
      const f = await runInMemoryCgroup(
        process.execPath,
        [`${dist}flexinfer-child.js`, path, String(o.threads), String(ctx), String(o.promptTokens), String(o.genTokens), String(budget), o.kv ?? 'vtensor'],
        limit,
        { timeoutMs },
      );
      flex.push(outcome(f));
      if (!o.noLlamaCpp) {
        evictFile(path);
        const l = await runInMemoryCgroup(process.execPath, [`${dist}llamacpp-child.js`, path, String(o.threads), String(ctx), String(o.promptTokens), String(o.genTokens)], limit, { timeoutMs });
        llama.push(outcome(l));
      }
      o.onLog(
        `budget ${pct}%: flexinfer ${fmtRun(flex.at(-1)!)}` + (o.noLlamaCpp ? '' : ` | llama.cpp ${fmtRun(llama.at(-1)!)}`),
      );
    }
    const fs = summarize(flex);
    const ls = o.noLlamaCpp ? null : summarize(llama);
    // The bound: storage bandwidth / bytes flexinfer streams per token (from its own stats).
    const streamedPerToken = Number(flex.find((x) => x.stats)?.stats?.['weights.bytesReadPerToken'] ?? findNumber(flex.find((x) => x.stats)?.stats, 'bytesReadPerToken') ?? NaN);
    const bound = Number.isFinite(streamedPerToken) && streamedPerToken > 0 ? round(bw.best / streamedPerToken) : null;
    rows.push({
      budget_percent: pct,
      budget_bytes: budget,
      cgroup_limit_bytes: limit,
      flexinfer: fs,
      llamacpp: ls,
      ratio: ratio(fs.gen_tps, ls?.gen_tps),
      flexinfer_streamed_bytes_per_token: Number.isFinite(streamedPerToken) ? streamedPerToken : null,
      flexinfer_io_bound_tps: bound,
      flexinfer_fraction_of_bound: bound && fs.gen_tps ? round(fs.gen_tps / bound, 3) : null,
    });
  }
  const result = { model: path, file_bytes: fileBytes, threads: o.threads, gen_tokens: o.genTokens, runs: o.runs, storage_bytes_per_sec: bw, rows };
  const cell = (v: unknown): string => (v == null ? '-' : String(v));
  let table = `${path}: generation tokens/s under a memory budget (cgroup limit = budget + 64 MiB, cold page cache), median of ${o.runs}\n`;
  table += 'budget   flexinfer  llama.cpp   ratio   flexinfer I/O bound  (% of bound)\n';
  for (const r of rows as Array<Record<string, any>>) {
    const f = r.flexinfer.gen_tps ?? r.flexinfer.status;
    const l = r.llamacpp ? (r.llamacpp.gen_tps ?? r.llamacpp.status) : '-';
    table += `${String(r.budget_percent + '%').padEnd(8)} ${cell(f).padStart(9)} ${cell(l).padStart(10)} ${cell(r.ratio).padStart(7)} ${cell(r.flexinfer_io_bound_tps).padStart(20)}  ${r.flexinfer_fraction_of_bound != null ? (r.flexinfer_fraction_of_bound * 100).toFixed(0) + '%' : '-'}\n`;
  }
  const svg = renderLinePlot({
    title: 'Generation speed under a memory budget',
    xLabel: 'memory budget (% of model file)',
    yLabel: 'tokens/s',
    xTicks: BUDGETS.map((b) => `${b}%`),
    series: [
      { name: 'flexinfer', values: rows.map((r: any) => r.flexinfer.gen_tps) },
      ...(o.noLlamaCpp ? [] : [{ name: 'llama.cpp (mmap)', values: rows.map((r: any) => r.llamacpp?.gen_tps ?? null) }]),
      { name: 'flexinfer I/O bound', values: rows.map((r: any) => r.flexinfer_io_bound_tps), dashed: true },
    ],
    notes: rows.flatMap((r: any, i) => [
      ...(r.flexinfer.status !== 'ok' ? [{ series: 'flexinfer', x: i, text: r.flexinfer.status.toUpperCase() }] : []),
      ...(r.llamacpp && r.llamacpp.status !== 'ok' ? [{ series: 'llama.cpp (mmap)', x: i, text: r.llamacpp.status.toUpperCase() }] : []),
    ]),
  });
  return { result, table, svg };
}

function fmtRun(r: RunOutcome): string {
  return r.status === 'ok' ? `${r.gen_tps!.toFixed(2)} tok/s (peak ${(r.max_usage_bytes / MiB).toFixed(0)} MiB)` : `${r.status}${r.error ? ` (${r.error})` : ''}`;
}

/** Finds a numeric field by name anywhere in a nested stats object. */
function findNumber(obj: unknown, key: string): number | undefined {
  if (!obj || typeof obj !== 'object') return undefined;
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (k === key && typeof v === 'number') return v;
    const inner = findNumber(v, key);
    if (inner !== undefined) return inner;
  }
  return undefined;
}
