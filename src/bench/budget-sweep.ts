/**
 * `flexinfer bench MODEL --budget-sweep`: generation tokens/s at 100/75/50/25% of the model
 * file size, flexinfer vs llama.cpp (mmap), each run in its own process inside a cgroup-v1
 * memory limit of budget + 64 MiB, with the model file evicted from the page cache before
 * every run.
 *
 * The storage is measured beside every budget point, before and after its runs, with the
 * same probes each time (probe.ts: O_DIRECT at depths 1..32, buffered with 1, 4, 8 and 16 pieces in
 * flight; and fio's sequential read where fio is installed): the virtual disk's speed changes
 * within minutes, so a figure measured once at the start says little about a run ten minutes
 * later. Per budget point:
 *
 *   best path rate  = the best probe path's mean of its before and after figures
 *   streamed rate   = flexinfer's bytes read per token x its median tokens/s (of run time)
 *   % of best path  = streamed rate / best path rate          (target >= 85%)
 *   % of O_DIRECT   = streamed rate / the best O_DIRECT path's rate (outside the cgroup)
 *   % in cgroup     = streamed rate / the best path of the same probes run INSIDE the budget's
 *                     cgroup by a process holding the budget in anonymous memory (probe-child.ts):
 *                     the paths a run can use at its budget (buffered reads there get only the
 *                     page-cache room the run leaves). Both comparisons are printed; the outside
 *                     one stays the device's figure.
 *   % of layout     = streamed rate / the best layout probe: the same paths, in the same cgroup,
 *                     reading exactly the streamed ranges of a run at this budget in its order
 *                     (no compute). Below the sequential probes: what the file's layout costs
 *                     (reads broken at resident tensors); below the layout probe: the engine.
 *   % of sustained  = streamed rate / the best sustained probe: O_DIRECT@16/32 reading the
 *                     run's whole pass as many times as a run generates tokens (as many bytes
 *                     as it streams then, seconds rather than the short probes' 40-60 ms), in
 *                     the same cgroup, no compute: what the device gives this pattern over a
 *                     run's length, stalls included (probe-child.ts).
 *   disk/streamed   = bytes the block device read during generation (sysfs) / bytes streamed
 *                     then (1.0: no read-ahead past the streamed ranges)
 *   I/O bound       = best path rate / bytes read per token    (tokens/s if reads never paused)
 *
 * The flexinfer runs start from a calibration made of the "before" probes (a cache directory
 * of the sweep's own), as a user's run would from a fresh one. A run killed for memory is
 * reported as "oom", never dropped.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidOptionError } from '../errors.js';
import { evictFromPageCache } from '../native/io.js';
import { calibrationFromProbes, measureComputeBytesPerSec, saveCalibration } from '../weights/calibrate.js';
import { ggmlTypeInfo } from '../gguf/ggml-type.js';
import { memoryCgroupSupport, runInMemoryCgroup, type CgroupRunResult } from '../weights/cgroup.js';
import { dominantType } from '../weights/create.js';
import { bestProbe, pathName, probeReadPaths, type ProbeResult, type RangeLayout, type ReadPath } from '../weights/probe.js';
import { readGgufSync } from '../gguf/reader.js';
import { fioSequentialRead, type FioResult } from './fio.js';
import { median, ratio, round } from './stats.js';
import { renderLinePlot } from './svg.js';
import type { SweepOptions, SweepOutput } from './sweeps.js';
import { mergeMoeSweeps } from './moe-sweep.js';

const MiB = 1024 * 1024;
export const BUDGETS = [100, 75, 50, 25];
/** Bytes each probe reads (and fio's job size). */
const PROBE_BYTES = 256 * MiB;

/** Evicts a file from the page cache (posix_fadvise DONTNEED over the whole file). */
export function evictFile(path: string): void {
  evictFromPageCache(path);
}

/** One measurement of the storage: every probe path, and fio's figure (null without fio). */
export interface StorageMeasurement {
  at: string;
  probes: ProbeResult[];
  best: ProbeResult;
  fio: FioResult | null;
}

/** Probes every read path of the streaming engine on the file, and fio's sequential read. */
export function measureStorage(path: string): StorageMeasurement {
  const probes = probeReadPaths(path, { bytes: PROBE_BYTES });
  const best = bestProbe(probes)!;
  const fio = fioSequentialRead(path, PROBE_BYTES);
  evictFile(path);
  return { at: new Date().toISOString(), probes, best, fio };
}

/** One line for a log: every probe's rate and fio's, GB/s. */
export function describeStorage(s: Pick<StorageMeasurement, 'probes'> & { fio?: FioResult | null }): string {
  const gbs = (b: number) => (b / 1e9).toFixed(2);
  return `${s.probes.map((p) => `${pathName(p)} ${gbs(p.bytesPerSec)}`).join(', ')}${s.fio ? `; fio ${gbs(s.fio.bytesPerSec)}` : ''} GB/s`;
}

/** The layout probes of an in-cgroup measurement for a log line ('' without them). */
function describeLayout(m: CgroupStorageMeasurement): string {
  const l = m.layout;
  if (!l) return '';
  const mib = (b: number) => (b / MiB).toFixed(1);
  const sustained = l.sustained?.length ? `; the whole pass over and over (sustained): ${describeStorage({ probes: l.sustained })}` : '';
  return `\n  layout of a run's pass: ${mib(l.bytes)} MiB in ${l.ranges} tensors, ${l.runs} contiguous runs (mean ${mib(l.meanRunBytes)} MiB), ${l.gaps} gaps (${mib(l.gapBytes)} MiB skipped); reading it: ${describeStorage({ probes: l.probes })}${sustained}`;
}

/** The probes run inside a budget's cgroup, under the run's conditions (probe-child.ts). */
export interface CgroupStorageMeasurement {
  at: string;
  probes: ProbeResult[];
  /** Anonymous memory the probe process held while probing (the run's resident share). */
  held_bytes: number;
  /**
   * The layout probes: the same paths reading exactly the streamed ranges of a run at this
   * budget, in its order, no compute; and how those ranges lie in the file (probe.ts rangeLayout).
   */
  layout?: RangeLayout & { probes: ProbeResult[]; sustained?: ProbeResult[] };
  /** Why the probes could not run (then probes is empty). */
  error?: string;
}

/**
 * The same probes inside the budget's cgroup (limit = budget + 64 MiB), in a process that
 * first holds `budget` bytes of anonymous memory as a budgeted run does: buffered reads then
 * get only the page-cache room a run would leave them. The probes outside (measureStorage) stay
 * the device's figure; these are what the run can reach at its budget. With `layout`, also
 * the layout probes over the streamed ranges of a run at this budget (its context size, and the
 * calibration its runs plan with).
 */
export async function measureStorageInCgroup(path: string, budget: number, limit: number, dist: string, layout?: { contextSize: number; cacheDir: string; passes?: number }): Promise<CgroupStorageMeasurement> {
  evictFile(path);
  const args = [`${dist}probe-child.js`, path, String(PROBE_BYTES), String(budget), ...(layout ? [String(layout.contextSize), ...(layout.passes ? [String(layout.passes)] : [])] : [])];
  const r = await runInMemoryCgroup(process.execPath, args, limit, { timeoutMs: 5 * 60_000, ...(layout ? { env: { ...process.env, FLEXINFER_CACHE_DIR: layout.cacheDir } } : {}) });
  evictFile(path);
  const at = new Date().toISOString();
  if (r.oomKilled) return { at, probes: [], held_bytes: 0, error: 'oom' };
  try {
    const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
    if (j.error) return { at, probes: [], held_bytes: 0, error: String(j.error) };
    return { at, probes: j.probes, held_bytes: j.held_bytes, ...(j.layout ? { layout: j.layout } : {}) };
  } catch {
    return { at, probes: [], held_bytes: 0, error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ') || 'no output' };
  }
}

/**
 * The best path measured beside a budget point: for every path (of those `filter` keeps), the
 * mean of its figure before and after the runs; the highest mean.
 */
export function bestBeside(before: { probes: ProbeResult[] }, after: { probes: ProbeResult[] }, filter: (p: ReadPath) => boolean = () => true): { path: string; bytesPerSec: number } {
  let best = { path: '', bytesPerSec: 0 };
  for (const b of before.probes.filter(filter)) {
    const a = after.probes.find((p) => p.direct === b.direct && p.depth === b.depth);
    const mean = a ? (a.bytesPerSec + b.bytesPerSec) / 2 : b.bytesPerSec;
    if (mean > best.bytesPerSec) best = { path: pathName(b), bytesPerSec: mean };
  }
  return best;
}

/**
 * What kind of disk day an O_DIRECT figure into 4 KiB pages says (DESIGN.md: O_DIRECT 1.2-2.7
 * GB/s, cold buffered 0.6-3.8 GB/s seen on this virtual disk): fast from 2.4 GB/s, slow under
 * 1.6 GB/s. Rows pass fio's sequential O_DIRECT read where fio ran (its buffers are 4 KiB
 * pages, as the engine's were when these bounds were set), else their best O_DIRECT probe.
 * Not the probes where fio ran: they read into 2 MiB pages since the read buffers moved there
 * (read-buffer.ts) and take 5-7 GB/s on any day; buffered probes ride the kernel's read-ahead
 * (the 2026-12-06 04:00 sweep was labelled "fast" by them at 1.40-1.95 GB/s O_DIRECT).
 */
export function diskDay(bytesPerSec: number): 'fast' | 'middling' | 'slow' {
  return bytesPerSec >= 2.4e9 ? 'fast' : bytesPerSec >= 1.6e9 ? 'middling' : 'slow';
}

interface RunOutcome {
  gen_tps: number | null;
  status: 'ok' | 'oom' | 'error' | 'timeout';
  max_usage_bytes: number;
  error?: string;
  stats?: Record<string, unknown>;
  peak_rss_bytes?: number;
  major_faults?: number;
  /** Bytes the device read during generation (after the first token), and the bytes streamed then. */
  disk_read_bytes_gen?: number;
  streamed_bytes_gen?: number;
  gen_passes?: number;
}

function outcome(r: CgroupRunResult): RunOutcome {
  const base = { max_usage_bytes: r.maxUsageBytes };
  if (r.oomKilled) return { ...base, gen_tps: null, status: 'oom' };
  if (r.timedOut) return { ...base, gen_tps: null, status: 'timeout' };
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    const j = JSON.parse(line);
    if (j.error) return { ...base, gen_tps: null, status: 'error', error: String(j.error) };
    const streamed = (st: any) => (st?.weights?.streaming ? st.weights.streaming.directBytes + st.weights.streaming.bufferedBytes : undefined);
    const gen = streamed(j.stats) !== undefined && streamed(j.stats_first_token) !== undefined ? streamed(j.stats) - streamed(j.stats_first_token) : undefined;
    return {
      ...base,
      gen_tps: j.gen_tps,
      status: 'ok',
      stats: j.stats,
      peak_rss_bytes: j.peak_rss_bytes,
      major_faults: j.major_faults,
      ...(typeof j.disk_read_bytes_gen === 'number' && gen !== undefined ? { disk_read_bytes_gen: j.disk_read_bytes_gen, streamed_bytes_gen: gen, gen_passes: Math.max(1, (j.tokens?.length ?? 1) - 1) } : {}),
    };
  } catch {
    return { ...base, gen_tps: null, status: 'error', error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ') };
  }
}

function summarize(runs: RunOutcome[]): { gen_tps: number | null; status: string; max_usage_bytes: number; peak_rss_bytes: number | null; major_faults: number | null; runs: Array<number | string> } {
  const ok = runs.filter((r) => r.status === 'ok');
  const status = ok.length > 0 ? 'ok' : (runs[0]?.status ?? 'error');
  const med = (f: (r: RunOutcome) => number | undefined) => {
    const v = ok.map(f).filter((x): x is number => typeof x === 'number');
    return v.length ? median(v) : null;
  };
  return {
    gen_tps: ok.length ? round(median(ok.map((r) => r.gen_tps!)), 3) : null,
    status,
    max_usage_bytes: Math.max(0, ...runs.map((r) => r.max_usage_bytes)),
    // The process's own peak (the cgroup's figure adds page cache) and major faults, medians.
    peak_rss_bytes: med((r) => r.peak_rss_bytes),
    major_faults: med((r) => r.major_faults),
    runs: runs.map((r) => (r.status === 'ok' ? round(r.gen_tps!, 3) : r.status)),
  };
}

/** The streaming figures of a flexinfer run's stats (weights.streaming), medians over runs. */
function streamingFigures(runs: RunOutcome[]): Record<string, unknown> | null {
  const st = runs.map((r) => (r.stats?.['weights'] as { streaming?: Record<string, any> } | undefined)?.streaming).filter((s) => s !== undefined) as Record<string, any>[];
  if (st.length === 0) return null;
  const m = (f: (s: Record<string, any>) => number) => round(median(st.map(f)), 3);
  return {
    bytes_read_per_token: m((s) => s.bytesReadPerToken),
    io_wait_sec_per_token: m((s) => s.ioWaitSecPerToken),
    compute_sec_per_token: m((s) => s.computeSecPerToken ?? 0),
    read_bytes_per_sec: m((s) => s.readBytesPerSec),
    direct_bytes_per_sec: m((s) => s.pathRates?.direct?.bytesPerSec ?? 0),
    buffered_bytes_per_sec: m((s) => s.pathRates?.buffered?.bytesPerSec ?? 0),
    direct_share: m((s) => s.directBytes / Math.max(1, s.directBytes + s.bufferedBytes)),
    mean_reads_in_flight: m((s) => s.meanReadsInFlight),
    path_switches: m((s) => s.pathSwitches),
    final_path: st.map((s) => `${s.readPath?.direct ? 'direct' : 'buffered'}@${s.readPath?.depth}`),
    engine: st[0]!.engine,
    buffered_reads: st[0]!.bufferedReads ?? null,
    ...diskFigures(runs),
  };
}

/**
 * What the device read during generation (sysfs, block-device.ts) against what the engine
 * streamed then, medians over runs: 1.0 = the disk read exactly the streamed bytes; more =
 * read-ahead past them (or another process reading the same disk).
 */
function diskFigures(runs: RunOutcome[]): Record<string, number> {
  const d = runs.filter((r) => r.disk_read_bytes_gen !== undefined && r.streamed_bytes_gen! > 0);
  if (d.length === 0) return {};
  return {
    disk_read_bytes_per_token: round(median(d.map((r) => r.disk_read_bytes_gen! / r.gen_passes!)), 0),
    disk_bytes_per_streamed_byte: round(median(d.map((r) => r.disk_read_bytes_gen! / r.streamed_bytes_gen!)), 3),
  };
}

export async function runBudgetSweep(path: string, o: SweepOptions): Promise<SweepOutput> {
  const support = memoryCgroupSupport();
  if (!support.ok) throw new Error(`--budget-sweep needs memory cgroups: ${support.reason}`);
  const fileBytes = statSync(path).size;
  const dist = fileURLToPath(new URL('.', import.meta.url));
  const ctx = 512;
  const budgets = o.budgets ?? BUDGETS;
  // The children's calibration cache: written from each point's "before" probes.
  const cacheDir = mkdtempSync(join(tmpdir(), 'flexinfer-sweep-cache-'));
  const computeType = dominantType(readGgufSync(path));
  const computeBytesPerSec = measureComputeBytesPerSec(computeType);
  const rows: Array<Record<string, any>> = [];
  try {
    for (const pct of budgets) {
      const budget = Math.floor((fileBytes * pct) / 100);
      const limit = budget + 64 * MiB;
      const before = measureStorage(path);
      o.onLog(`budget ${pct}%: storage before: ${describeStorage(before)}`);
      writeSweepCalibration(cacheDir, path, before, computeBytesPerSec, computeType);
      const layout = { contextSize: ctx, cacheDir, passes: o.genTokens };
      const cgBefore = await measureStorageInCgroup(path, budget, limit, dist, layout);
      o.onLog(`budget ${pct}%: storage before, in the budget's cgroup: ${cgBefore.error ?? describeStorage(cgBefore)}${describeLayout(cgBefore)}`);
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
          { timeoutMs, env: { ...process.env, FLEXINFER_CACHE_DIR: cacheDir } },
        );
        flex.push(outcome(f));
        if (!o.noLlamaCpp) {
          evictFile(path);
          // --llamacpp-timeout: a slow-disk day can make llama.cpp's runs long; a timed-out run is
          // reported as "timeout" and left out of its median (which can then only flatter llama.cpp).
          const l = await runInMemoryCgroup(process.execPath, [`${dist}llamacpp-child.js`, path, String(o.threads), String(ctx), String(o.promptTokens), String(o.genTokens)], limit, { timeoutMs: o.llamaCppTimeoutMs ?? timeoutMs });
          llama.push(outcome(l));
        }
        o.onLog(`budget ${pct}%: flexinfer ${fmtRun(flex.at(-1)!)}` + (o.noLlamaCpp ? '' : ` | llama.cpp ${fmtRun(llama.at(-1)!)}`));
      }
      const after = measureStorage(path);
      o.onLog(`budget ${pct}%: storage after:  ${describeStorage(after)}`);
      const cgAfter = await measureStorageInCgroup(path, budget, limit, dist, layout);
      o.onLog(`budget ${pct}%: storage after, in the budget's cgroup:  ${cgAfter.error ?? describeStorage(cgAfter)}${describeLayout(cgAfter)}`);
      const fs = summarize(flex);
      const ls = o.noLlamaCpp ? null : summarize(llama);
      const stream = streamingFigures(flex);
      const perToken = stream ? Number(stream['bytes_read_per_token']) : 0;
      const best = bestBeside(before, after);
      const streamedRate = perToken > 0 && fs.gen_tps ? perToken * fs.gen_tps : null;
      const fio = [before.fio, after.fio].filter((f): f is FioResult => f !== null);
      const fioRate = fio.length ? median(fio.map((f) => f.bytesPerSec)) : null;
      rows.push({
        budget_percent: pct,
        budget_bytes: budget,
        cgroup_limit_bytes: limit,
        flexinfer: fs,
        llamacpp: ls,
        ratio: ratio(fs.gen_tps, ls?.gen_tps),
        flexinfer_streaming: stream,
        flexinfer_streamed_bytes_per_token: perToken || null,
        storage: { before, after, in_cgroup: { before: cgBefore, after: cgAfter }, best_path: best.path, best_path_bytes_per_sec: round(best.bytesPerSec, 0), fio_bytes_per_sec: fioRate !== null ? round(fioRate, 0) : null, disk_day: diskDay(fioRate ?? (bestBeside(before, after, (p) => p.direct).bytesPerSec || best.bytesPerSec)) },
        flexinfer_streamed_bytes_per_sec: streamedRate !== null ? round(streamedRate, 0) : null,
        flexinfer_fraction_of_best_path: streamedRate !== null ? round(streamedRate / best.bytesPerSec, 3) : null,
        flexinfer_io_bound_tps: perToken > 0 ? round(best.bytesPerSec / perToken) : null,
      });
    }
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
  return budgetSweepOutput({ model: path, file_bytes: fileBytes, threads: o.threads, gen_tokens: o.genTokens, prompt_tokens: o.promptTokens, runs: o.runs, compute_bytes_per_sec: computeBytesPerSec }, rows);
}

/** What a budget sweep's JSON holds besides its rows. */
interface SweepMeta {
  model: string;
  file_bytes: number;
  threads: number;
  gen_tokens: number;
  prompt_tokens: number;
  runs: number;
  compute_bytes_per_sec: number;
}

/** The result (rows from the largest budget down, the monotonic check), its table and plot. */
function budgetSweepOutput(meta: SweepMeta, rows: Array<Record<string, any>>): SweepOutput {
  const ordered = rows.map(withBestDirect).sort((a, b) => b.budget_percent - a.budget_percent);
  // Tokens/s must fall as the budget shrinks: every larger budget at least as fast as every smaller one.
  const monotonic = ordered.every((r, i) => ordered.slice(i + 1).every((s) => r.flexinfer.gen_tps == null || s.flexinfer.gen_tps == null || r.flexinfer.gen_tps >= s.flexinfer.gen_tps));
  const result = { ...meta, rows: ordered, flexinfer_monotonic: monotonic };
  return { result, table: sweepTable(result), svg: sweepSvg(ordered, ordered.every((r) => r.llamacpp == null)) };
}

/**
 * A row with the best O_DIRECT path beside it, the best path measured inside the budget's
 * cgroup (when its probes ran) and the best layout probe (when they ran: the run's own ranges),
 * and the streamed rate's share of each (from its probes).
 */
function withBestDirect(row: Record<string, any>): Record<string, any> {
  const st = row.storage as { before?: StorageMeasurement; after?: StorageMeasurement; in_cgroup?: { before: CgroupStorageMeasurement; after: CgroupStorageMeasurement } } | undefined;
  if (!st?.before?.probes || !st.after?.probes) return row;
  const rate = row.flexinfer_streamed_bytes_per_sec as number | null | undefined;
  const share = (b: { bytesPerSec: number }) => (rate != null && b.bytesPerSec > 0 ? round(rate / b.bytesPerSec, 3) : null);
  const direct = bestBeside(st.before, st.after, (p) => p.direct);
  const inside = st.in_cgroup && st.in_cgroup.before.probes.length > 0 ? bestBeside(st.in_cgroup.before, st.in_cgroup.after) : null;
  const lb = st.in_cgroup?.before.layout;
  const la = st.in_cgroup?.after.layout;
  const layout = lb && la && lb.probes.length > 0 ? bestBeside(lb, la) : null;
  const sustained = lb?.sustained?.length && la?.sustained?.length ? bestBeside({ probes: lb.sustained }, { probes: la.sustained }) : null;
  return {
    ...row,
    storage: {
      ...row.storage,
      ...(direct.bytesPerSec > 0 ? { best_direct_path: direct.path, best_direct_path_bytes_per_sec: round(direct.bytesPerSec, 0) } : {}),
      ...(inside ? { best_in_cgroup_path: inside.path, best_in_cgroup_bytes_per_sec: round(inside.bytesPerSec, 0) } : {}),
      ...(layout ? { best_layout_path: layout.path, best_layout_bytes_per_sec: round(layout.bytesPerSec, 0), layout_runs: lb!.runs, layout_gaps: lb!.gaps } : {}),
      ...(sustained ? { best_sustained_path: sustained.path, best_sustained_bytes_per_sec: round(sustained.bytesPerSec, 0) } : {}),
    },
    ...(direct.bytesPerSec > 0 ? { flexinfer_fraction_of_best_direct_path: share(direct) } : {}),
    ...(inside ? { flexinfer_fraction_of_best_in_cgroup: share(inside) } : {}),
    ...(layout ? { flexinfer_fraction_of_best_layout: share(layout) } : {}),
    ...(sustained ? { flexinfer_fraction_of_best_sustained: share(sustained) } : {}),
  };
}

/**
 * One sweep from the JSON of sweeps run in parts (`--budgets 75 --out p75.json`, one budget
 * point per quiet run): the rows of all parts, which must be of the same file and settings.
 * Each row keeps the storage probes measured beside it.
 */
export function mergeBudgetSweeps(parts: ReadonlyArray<{ name: string; json: unknown }>): SweepOutput {
  if (parts.length === 0) throw new InvalidOptionError('--merge', 'no sweep files given');
  // Mixture-of-Experts sweeps (moe-sweep.ts) have their own rows
  if (parts.every(({ json }) => typeof (json as { routing?: unknown })?.routing === 'string')) return mergeMoeSweeps(parts as Array<{ name: string; json: Record<string, any> }>);
  const keys: Array<keyof SweepMeta> = ['model', 'file_bytes', 'threads', 'gen_tokens', 'prompt_tokens', 'runs'];
  const metas = parts.map(({ name, json }) => {
    const j = json as Partial<SweepMeta> & { rows?: unknown };
    if (!j || typeof j !== 'object' || !Array.isArray(j.rows) || keys.some((k) => j[k] === undefined)) {
      throw new InvalidOptionError('--merge', `${name} is not the JSON of a budget sweep (flexinfer bench --budget-sweep --out FILE)`);
    }
    return j as SweepMeta & { rows: Array<Record<string, any>> };
  });
  const first = metas[0]!;
  metas.forEach((m, i) => {
    for (const k of keys) {
      if (m[k] !== first[k]) throw new InvalidOptionError('--merge', `${parts[i]!.name} has ${k} ${String(m[k])}, ${parts[0]!.name} has ${String(first[k])}: merge sweeps of one file with the same settings`);
    }
  });
  const rows = metas.flatMap((m) => m.rows);
  const seen = new Set<number>();
  for (const r of rows) {
    if (seen.has(r.budget_percent)) throw new InvalidOptionError('--merge', `budget ${r.budget_percent}% appears in more than one file`);
    seen.add(r.budget_percent);
  }
  const meta: SweepMeta = { ...first, compute_bytes_per_sec: median(metas.map((m) => m.compute_bytes_per_sec)) };
  return budgetSweepOutput(meta, rows);
}

/** The children's calibration cache: the "before" probes of this point and the compute figure. */
function writeSweepCalibration(cacheDir: string, path: string, before: StorageMeasurement, computeBytesPerSec: number, computeType: number): void {
  const saved = process.env.FLEXINFER_CACHE_DIR;
  process.env.FLEXINFER_CACHE_DIR = cacheDir;
  try {
    saveCalibration({ ...calibrationFromProbes(path, before.probes), computeBytesPerSec, computeType: ggmlTypeInfo(computeType)?.name ?? String(computeType) });
  } finally {
    if (saved === undefined) delete process.env.FLEXINFER_CACHE_DIR;
    else process.env.FLEXINFER_CACHE_DIR = saved;
  }
}

function sweepTable(result: { model: string; runs: number; rows: Array<Record<string, any>>; flexinfer_monotonic: boolean }): string {
  const cell = (v: unknown): string => (v == null ? '-' : String(v));
  const gbs = (b: number | null | undefined) => (b == null ? '-' : (b / 1e9).toFixed(2));
  const pct = (f: number | null | undefined) => (f == null ? '-' : `${(f * 100).toFixed(0)}%`);
  let t = `${result.model}: generation tokens/s under a memory budget (cgroup limit = budget + 64 MiB, cold page cache), median of ${result.runs}\n`;
  t += 'budget   flexinfer  llama.cpp   ratio  MiB/token  streamed GB/s  best path (GB/s)      % of best  best O_DIRECT (GB/s)  % of it  best in cgroup (GB/s)  % of it  best layout (GB/s)    % of it  sustained (GB/s)      % of it  disk/streamed  fio GB/s  day\n';
  for (const r of result.rows) {
    const f = r.flexinfer.gen_tps ?? r.flexinfer.status;
    const l = r.llamacpp ? (r.llamacpp.gen_tps ?? r.llamacpp.status) : '-';
    const s = r.storage;
    t +=
      `${String(r.budget_percent + '%').padEnd(8)} ${cell(f).padStart(9)} ${cell(l).padStart(10)} ${cell(r.ratio).padStart(7)}` +
      ` ${(r.flexinfer_streamed_bytes_per_token ? (r.flexinfer_streamed_bytes_per_token / MiB).toFixed(0) : '-').padStart(10)}` +
      ` ${gbs(r.flexinfer_streamed_bytes_per_sec).padStart(14)}  ${`${s.best_path} ${gbs(s.best_path_bytes_per_sec)}`.padEnd(20)}` +
      ` ${pct(r.flexinfer_fraction_of_best_path).padStart(9)}` +
      `  ${(s.best_direct_path ? `${s.best_direct_path} ${gbs(s.best_direct_path_bytes_per_sec)}` : '-').padEnd(20)} ${pct(r.flexinfer_fraction_of_best_direct_path).padStart(7)}` +
      `  ${(s.best_in_cgroup_path ? `${s.best_in_cgroup_path} ${gbs(s.best_in_cgroup_bytes_per_sec)}` : '-').padEnd(21)} ${pct(r.flexinfer_fraction_of_best_in_cgroup).padStart(7)}` +
      `  ${(s.best_layout_path ? `${s.best_layout_path} ${gbs(s.best_layout_bytes_per_sec)}` : '-').padEnd(20)} ${pct(r.flexinfer_fraction_of_best_layout).padStart(7)}` +
      `  ${(s.best_sustained_path ? `${s.best_sustained_path} ${gbs(s.best_sustained_bytes_per_sec)}` : '-').padEnd(20)} ${pct(r.flexinfer_fraction_of_best_sustained).padStart(7)}` +
      ` ${cell(r.flexinfer_streaming?.disk_bytes_per_streamed_byte).padStart(14)}` +
      ` ${gbs(s.fio_bytes_per_sec).padStart(9)}  ${s.disk_day}\n`;
  }
  t += `flexinfer tokens/s ${result.flexinfer_monotonic ? 'falls monotonically' : 'does NOT fall monotonically'} as the budget shrinks\n`;
  return t;
}

function sweepSvg(rows: Array<Record<string, any>>, noLlamaCpp: boolean): string {
  return renderLinePlot({
    title: 'Generation speed under a memory budget',
    xLabel: 'memory budget (% of model file)',
    yLabel: 'tokens/s',
    xTicks: rows.map((r) => `${r.budget_percent}%`),
    series: [
      { name: 'flexinfer', values: rows.map((r) => r.flexinfer.gen_tps) },
      ...(noLlamaCpp ? [] : [{ name: 'llama.cpp (mmap)', values: rows.map((r) => r.llamacpp?.gen_tps ?? null) }]),
      { name: 'I/O bound (best path beside the run)', values: rows.map((r) => r.flexinfer_io_bound_tps), dashed: true },
    ],
    notes: rows.flatMap((r, i) => [
      ...(r.flexinfer.status !== 'ok' ? [{ series: 'flexinfer', x: i, text: r.flexinfer.status.toUpperCase() }] : []),
      ...(r.llamacpp && r.llamacpp.status !== 'ok' ? [{ series: 'llama.cpp (mmap)', x: i, text: r.llamacpp.status.toUpperCase() }] : []),
    ]),
  });
}

function fmtRun(r: RunOutcome): string {
  return r.status === 'ok' ? `${r.gen_tps!.toFixed(2)} tok/s (peak ${(r.max_usage_bytes / MiB).toFixed(0)} MiB)` : `${r.status}${r.error ? ` (${r.error})` : ''}`;
}
