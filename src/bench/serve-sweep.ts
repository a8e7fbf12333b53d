/**
 * `flexinfer bench MODEL --serve-sweep`: aggregate generation tokens/s and time to first
 * token (median, p95) with 1, 4, 8, 16 concurrent streams, flexinfer (its HTTP server) vs
 * llama.cpp (node-llama-cpp, same number of sequences), without a budget and at 50% of the
 * model file (or the first of --budgets) (cgroup limit = budget + 64 MiB, cold page cache). Each configuration runs in
 * its own process (src/bench/serve-child.ts).
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { memoryCgroupSupport, runInMemoryCgroup } from '../weights/cgroup.js';
import { evictFile } from './budget-sweep.js';
import { ratio, round } from './stats.js';
import { renderLinePlot } from './svg.js';
import type { SweepOptions, SweepOutput } from './sweeps.js';

const STREAMS = [1, 4, 8, 16];
const MiB = 1024 * 1024;

interface ChildRow {
  streams: number;
  aggregate_tps: number;
  /** Decode only: sum of each stream's tokens/s after its first token. */
  decode_tps: number;
  ttft_ms_p50: number;
  ttft_ms_p95: number;
}

async function runChild(args: string[], limitBytes: number | null): Promise<{ rows?: ChildRow[]; prompt_tps?: number; error?: string }> {
  let stdout: string;
  let note = '';
  if (limitBytes != null) {
    const r = await runInMemoryCgroup(process.execPath, args, limitBytes, { timeoutMs: 30 * 60_000 });
    stdout = r.stdout;
    if (r.oomKilled) return { error: 'oom' };
    if (r.timedOut) return { error: 'timeout' };
    note = r.stderr;
  } else {
    stdout = await new Promise<string>((resolve) => {
      const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (note += d));
      c.on('close', () => resolve(out));
    });
  }
  try {
    return JSON.parse(stdout.trim().split('\n').pop() ?? '');
  } catch {
    return { error: (note || stdout).trim().split('\n').slice(-2).join(' | ') || 'no output' };
  }
}

export async function runServeSweep(path: string, o: SweepOptions): Promise<SweepOutput> {
  const child = fileURLToPath(new URL('./serve-child.js', import.meta.url));
  const fileBytes = statSync(path).size;
  // The budgeted configuration: 50% of the file, or the first of --budgets.
  const pct = o.budgets?.[0] ?? 50;
  const limited = `${pct}%`;
  const half = Math.floor((fileBytes * pct) / 100);
  const cg = memoryCgroupSupport();
  const configs: Array<{ engine: 'flexinfer' | 'llamacpp'; budget: string }> = [
    { engine: 'flexinfer', budget: '100%' },
    { engine: 'flexinfer', budget: limited },
    ...(o.noLlamaCpp ? [] : [{ engine: 'llamacpp' as const, budget: '100%' }, { engine: 'llamacpp' as const, budget: limited }]),
  ];
  const results: Record<string, { rows?: ChildRow[]; prompt_tps?: number; error?: string }> = {};
  for (const c of configs) {
    const key = `${c.engine}@${c.budget}`;
    if (c.budget === limited && !cg.ok) {
      results[key] = { error: `not measured: ${cg.reason}` };
      continue;
    }
    evictFile(path);
    const args = [child, c.engine, path, String(o.threads), String(o.genTokens), STREAMS.join(','), c.budget === limited && c.engine === 'flexinfer' ? String(half) : '-'];
    o.onLog(`serve sweep: ${key} ...`);
    results[key] = await runChild(args, c.budget === limited ? half + 64 * MiB : null);
    o.onLog(`serve sweep: ${key}: ${results[key]!.error ?? results[key]!.rows!.map((r) => `${r.streams}x ${r.aggregate_tps} tok/s`).join(', ')}`);
  }
  const at = (key: string, n: number): ChildRow | undefined => results[key]?.rows?.find((r) => r.streams === n);
  const rows = STREAMS.map((n) => ({
    streams: n,
    ...Object.fromEntries(configs.map((c) => [`${c.engine}@${c.budget}`, at(`${c.engine}@${c.budget}`, n) ?? null])),
  }));
  const scale = (key: string, n: number): number | null => ratio(at(key, n)?.aggregate_tps, at(key, 1)?.aggregate_tps);
  const result = {
    model: path,
    file_bytes: fileBytes,
    threads: o.threads,
    gen_tokens: o.genTokens,
    rows,
    errors: Object.fromEntries(Object.entries(results).filter(([, v]) => v.error).map(([k, v]) => [k, v.error])),
    scaling_8_vs_1: Object.fromEntries(configs.map((c) => [`${c.engine}@${c.budget}`, scale(`${c.engine}@${c.budget}`, 8)])),
    // Batched decode through the server against the same server's prompt processing (128-token prompt).
    flexinfer_prompt_tps: results['flexinfer@100%']?.prompt_tps ?? null,
    flexinfer_decode_16_vs_prompt: ratio(at('flexinfer@100%', 16)?.decode_tps, results['flexinfer@100%']?.prompt_tps),
  };
  let table = `${path}: serving, aggregate generation tokens/s [decode only] (TTFT p50/p95 ms), ${o.genTokens} tokens per stream\n`;
  table += 'streams ' + configs.map((c) => `${c.engine}@${c.budget}`.padStart(34)).join('') + '\n';
  for (const n of STREAMS) {
    table += String(n).padEnd(8);
    for (const c of configs) {
      const r = at(`${c.engine}@${c.budget}`, n);
      table += (r ? `${r.aggregate_tps.toFixed(1)} [${r.decode_tps?.toFixed(1) ?? '-'}] (${round(r.ttft_ms_p50, 0)}/${round(r.ttft_ms_p95, 0)})` : (results[`${c.engine}@${c.budget}`]?.error ?? '-')).padStart(34);
    }
    table += '\n';
  }
  table += `8 streams vs 1: ${Object.entries(result.scaling_8_vs_1).map(([k, v]) => `${k} ${v ?? '-'}x`).join(', ')}\n`;
  table += `flexinfer, no budget: prompt processing ${result.flexinfer_prompt_tps?.toFixed(1) ?? '-'} tok/s; 16 streams decode at ${result.flexinfer_decode_16_vs_prompt ?? '-'}x of it\n`;
  const svg = renderLinePlot({
    title: 'Serving: aggregate generation tokens/s',
    xLabel: 'concurrent streams',
    yLabel: 'tokens/s (all streams)',
    xTicks: STREAMS.map(String),
    series: configs.map((c) => ({ name: `${c.engine} ${c.budget === '100%' ? 'no budget' : `${c.budget} budget`}`, values: STREAMS.map((n) => at(`${c.engine}@${c.budget}`, n)?.aggregate_tps ?? null), dashed: c.budget === limited })),
  });
  return { result, table, svg };
}
