/**
 * `flexinfer bench MODEL --kv-sweep`: the three KV layouts measured in one run, the comparison
 * the vTensor paper makes (vTensor against vLLM's PagedAttention), plus the contiguous baseline.
 *
 *   (a) memory: peak KV bytes for N = 1, 4, 16, 64 concurrent sequences with lognormal lengths
 *       (maxContext 4096), with real mappings / blocks / slots (src/kv/bench-memory.ts);
 *   (k) attention kernels: decode at context 512 .. 32k for 1 and 16 sequences, and the
 *       prefix-prefill case, over each layout's real memory (bench/kv-kernels.ts);
 *   (e) end to end: decode throughput of the engine with 1, 4, 16 sequences and 16 sequences
 *       sharing a system prompt; time to first token of a 10-turn chat with prefix reuse, per
 *       layout, against recomputing and llama.cpp (bench/kv-engine.ts);
 *   (m) KV management cost: vTensor's chunk mapping against paged block-table upkeep (ensure
 *       and commit per token in (a), and what the engine waited for per token in (e)).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { readGgufSync } from '../gguf/reader.js';
import { InvalidOptionError } from '../errors.js';
import { modelConfigFromGguf } from '../models/registry.js';
import { runKvMemoryBench, type KvMemoryBenchRow } from '../kv/index.js';
import { median, ratio, round } from './stats.js';
import { composePlots, renderLinePlot } from './svg.js';
import { runKernelBench } from './kv-kernels.js';
import { runChatTtft, runEngineDecode, TURNS } from './kv-engine.js';
import { llamaCppKvCaches, loadLlamaCpp } from './llamacpp.js';
import type { SweepOptions, SweepOutput } from './sweeps.js';

const CONCURRENCY = [1, 4, 16, 64];
/** llama.cpp's KV is measured up to 16 sequences (64 x 4096 cells is beyond most models' training context). */
const LLAMACPP_KV_SEQUENCES = [1, 4, 16];
const MiB = 1024 * 1024;

/** llama.cpp's KV bytes for N sequences of up to maxContext tokens each. */
type LlamaKv = Map<number, number>;

function memoryRows(mem: KvMemoryBenchRow[], llamaKv?: LlamaKv, concurrency = CONCURRENCY) {
  return concurrency.map((n) => {
    const at = (layout: string) => mem.find((r) => r.layout === layout && r.numSequences === n)!;
    const v = at('vtensor');
    const p = at('paged');
    const c = at('contiguous');
    const nowindow = mem.find((r) => r.layout === 'vtensor-nowindow' && r.numSequences === n);
    const llamacpp = llamaKv?.get(n);
    const perToken = (r: KvMemoryBenchRow) => round((r.ensureMs + r.commitMs) / r.totalTokens, 5);
    return {
      sequences: n,
      tokens: v.totalTokens,
      live_bytes: v.liveBytes,
      vtensor_bytes: v.peakMappedBytes,
      ...(v.chunkBytes !== undefined && { vtensor_chunk_bytes: v.chunkBytes }),
      paged_bytes: p.peakMappedBytes,
      contiguous_bytes: c.peakMappedBytes,
      // Sliding-window models: vTensor with window unmapping off (what the window alone saves),
      // and llama.cpp's own KV allocation for the same sequences (its SWA cache is window-sized).
      ...(nowindow && { vtensor_nowindow_bytes: nowindow.peakMappedBytes }),
      ...(llamacpp !== undefined && { llamacpp_bytes: llamacpp, vtensor_vs_llamacpp: ratio(v.peakMappedBytes, llamacpp) }),
      vtensor_vs_contiguous: ratio(v.peakMappedBytes, c.peakMappedBytes),
      paged_vs_vtensor: ratio(p.peakMappedBytes, v.peakMappedBytes),
      vtensor_fragmentation_percent: round(v.fragmentationPercent),
      paged_fragmentation_percent: round(p.fragmentationPercent),
      // KV management per token while the sequences grow (ensure + commit), ms.
      vtensor_ms_per_token: perToken(v),
      paged_ms_per_token: perToken(p),
      contiguous_ms_per_token: perToken(c),
    };
  });
}

const pad = (s: string | number | null, n: number) => String(s ?? '-').padStart(n);

/** Parts of the sweep; each can run alone (`--kv-parts`) and be merged later (`--kv-merge`). */
export const KV_SWEEP_PARTS = ['memory', 'kernels', 'decode', 'chat'] as const;
export type KvSweepPart = (typeof KV_SWEEP_PARTS)[number];

type MemoryRow = ReturnType<typeof memoryRows>[number];
type KernelResult = ReturnType<typeof runKernelBench>;
type ChatResult = Awaited<ReturnType<typeof runChatTtft>>;

/** The measured data of a (possibly partial) sweep, as written to the JSON result. */
export interface KvSweepData {
  model: string;
  shape: { numLayers: number; kvDim: number; maxContext: number; layerWindows?: number[] };
  attention: { numHeads: number; numKvHeads: number; headDim: number };
  /** When and how long each part ran (parts merged from earlier runs keep their own). */
  parts: Partial<Record<KvSweepPart, { started: string; seconds: number; threads: number; runs: number }>>;
  memory?: MemoryRow[];
  /** One conversation grown to the full context (where sliding windows matter most). */
  memory_long?: MemoryRow;
  kernel_decode?: KernelResult['decode'];
  kernel_prefix_prefill?: KernelResult['prefix_prefill'];
  engine_decode?: Awaited<ReturnType<typeof runEngineDecode>>;
  multi_turn?: ChatResult['turns'];
  skipped?: string[];
  llamacpp_error?: string;
  /** Why llama.cpp's KV size is missing from the memory part. */
  llamacpp_kv_error?: string;
}

const PART_KEYS: Record<KvSweepPart, Array<keyof KvSweepData>> = {
  memory: ['memory', 'memory_long', 'llamacpp_kv_error'],
  kernels: ['kernel_decode', 'kernel_prefix_prefill', 'skipped'],
  decode: ['engine_decode'],
  chat: ['multi_turn', 'llamacpp_error'],
};

/** Parses `--kv-parts` (comma-separated; default all). */
export function parseKvParts(list: string | undefined): KvSweepPart[] {
  if (list === undefined) return [...KV_SWEEP_PARTS];
  const parts = list.split(',').map((x) => x.trim()).filter((x) => x !== '');
  for (const x of parts) {
    if (!(KV_SWEEP_PARTS as readonly string[]).includes(x)) throw new InvalidOptionError('--kv-parts', `unknown part '${x}'; choose from ${KV_SWEEP_PARTS.join(', ')}`);
  }
  return parts as KvSweepPart[];
}

/** Reads an earlier (partial) --kv-sweep JSON result of the same model for --kv-merge. */
function readPartial(file: string, expect: KvSweepData): KvSweepData {
  let d: KvSweepData;
  try {
    d = JSON.parse(readFileSync(file, 'utf8')) as KvSweepData;
  } catch (e) {
    throw new InvalidOptionError('--kv-merge', `${file}: not a readable JSON file (${(e as Error).message})`);
  }
  if (!d || typeof d !== 'object' || typeof d.parts !== 'object' || d.shape == null || d.attention == null) {
    throw new InvalidOptionError('--kv-merge', `${file}: not a --kv-sweep result (no parts / shape / attention)`);
  }
  if (JSON.stringify(d.shape) !== JSON.stringify(expect.shape) || JSON.stringify(d.attention) !== JSON.stringify(expect.attention)) {
    throw new InvalidOptionError('--kv-merge', `${file}: measured on another model shape (${JSON.stringify(d.attention)}), not ${basename(expect.model)}'s`);
  }
  return d;
}

/**
 * Copies into `data` the parts the earlier results hold (a later file's part replaces an
 * earlier one's), except the parts this run measures itself. @internal
 */
export function mergeKvParts(data: KvSweepData, earlier: KvSweepData[], run: readonly KvSweepPart[]): void {
  for (const d of earlier) {
    for (const part of KV_SWEEP_PARTS) {
      if (d.parts[part] === undefined || run.includes(part)) continue;
      data.parts[part] = d.parts[part];
      for (const k of PART_KEYS[part]) (data as unknown as Record<string, unknown>)[k] = d[k];
    }
  }
}

/** llama.cpp's KV cache sizes for 1, 4, 16 sequences of up to maxContext tokens, or why not. */
async function measureLlamaCppKv(path: string, maxContext: number, onLog: (s: string) => void): Promise<LlamaKv | string> {
  const handle = await loadLlamaCpp();
  if ('error' in handle) return handle.error;
  const out: LlamaKv = new Map();
  try {
    const all = await llamaCppKvCaches(handle, path, maxContext, LLAMACPP_KV_SEQUENCES);
    for (const [i, n] of LLAMACPP_KV_SEQUENCES.entries()) {
      const caches = all[i]!;
      onLog(`    llama.cpp KV, ${n} x ${maxContext} tokens: ${caches.map((c) => `${c.layers} layers x ${c.sequences} x ${c.cells} cells ${(c.bytes / MiB).toFixed(1)} MiB`).join(' + ')}`);
      out.set(n, caches.reduce((a, c) => a + c.bytes, 0));
    }
  } catch (e) {
    return `llama.cpp KV size not measured: ${(e as Error).message.split('\n')[0]}`;
  }
  return out;
}

export async function runKvSweep(path: string, o: SweepOptions): Promise<SweepOutput> {
  const config = modelConfigFromGguf(readGgufSync(path));
  const kvDim = config.numKvHeads * config.headDim;
  const windows = config.layerWindows?.some((w) => w > 0) ? config.layerWindows : undefined;
  const shape = { numLayers: config.numLayers, kvDim, maxContext: 4096, ...(windows && { layerWindows: windows }) };
  const data: KvSweepData = {
    model: path,
    shape,
    attention: { numHeads: config.numHeads, numKvHeads: config.numKvHeads, headDim: config.headDim },
    parts: {},
  };
  const run = o.kvParts ?? [...KV_SWEEP_PARTS];
  mergeKvParts(data, (o.kvMerge ?? []).map((file) => readPartial(file, data)), run);
  const timed = async (part: KvSweepPart, fn: () => Promise<void> | void) => {
    if (!run.includes(part)) return;
    const started = new Date();
    const t0 = performance.now();
    await fn();
    data.parts[part] = { started: started.toISOString(), seconds: round((performance.now() - t0) / 1000, 1), threads: o.threads, runs: o.runs };
  };

  await timed('memory', async () => {
    o.onLog('(a) KV memory: vtensor vs paged vs contiguous ...');
    const llamaKv = o.noLlamaCpp ? undefined : await measureLlamaCppKv(path, shape.maxContext, o.onLog);
    if (typeof llamaKv === 'string') data.llamacpp_kv_error = llamaKv;
    const kv = typeof llamaKv === 'string' ? undefined : llamaKv;
    data.memory = memoryRows(runKvMemoryBench({ shape, concurrency: CONCURRENCY, headDim: config.headDim }), kv);
    const long = runKvMemoryBench({ shape, concurrency: [1], headDim: config.headDim, lengths: () => [{ prompt: 512, total: shape.maxContext }] });
    data.memory_long = memoryRows(long, kv, [1])[0];
  });
  await timed('kernels', () => {
    o.onLog('(k) attention kernels ...');
    const k = runKernelBench({ attn: data.attention, runs: Math.max(5, o.runs), onLog: o.onLog });
    data.kernel_decode = k.decode;
    data.kernel_prefix_prefill = k.prefix_prefill;
    if (k.skipped.length) data.skipped = k.skipped;
  });
  const engine = { threads: o.threads, runs: o.runs, genTokens: o.genTokens, noLlamaCpp: o.noLlamaCpp, onLog: o.onLog };
  await timed('decode', async () => {
    o.onLog('(e) engine decode ...');
    data.engine_decode = await runEngineDecode(path, engine);
  });
  await timed('chat', async () => {
    o.onLog('(e) multi-turn chat ...');
    const chat = await runChatTtft(path, engine);
    data.multi_turn = chat.turns;
    if (chat.llamacppError) data.llamacpp_error = chat.llamacppError;
  });
  return renderKvSweep(data);
}

/** JSON result (with the summary of the parts present), table and SVG of the sweep's data. @internal */
export function renderKvSweep(data: KvSweepData): SweepOutput {
  const { model: path, memory: mem, kernel_decode: kDecode, kernel_prefix_prefill: kPrefill, engine_decode: decode, multi_turn: turns } = data;
  const later = turns?.slice(1); // turns that reuse a prefix
  const summary = {
    // The paper: attention kernels 3.15x (decode, vs vLLM's paged kernel) and 2.12x (prefix-prefill, vs SGLang's Triton kernel).
    ...(kDecode && { kernel_decode_vtensor_vs_paged: kDecode.map((r) => ({ context: r.context, sequences: r.sequences, speedup: r.vtensor_speedup_vs_paged })) }),
    ...(kPrefill && { kernel_prefix_prefill_vtensor_vs_paged: kPrefill.map((r) => ({ prefix: r.prefix, speedup: r.vtensor_speedup_vs_paged })) }),
    // The paper: 1.86x end to end and 2.42x in multi-turn chat.
    ...(decode && { decode_16_vtensor_vs_paged: decode.filter((r) => r.sequences === 16).map((r) => ({ case: r.case, speedup: r.vtensor_vs_paged })) }),
    ...(turns &&
      later && {
        chat_ttft_paged_over_vtensor_turns_2_10: ratio(median(later.map((t) => t.paged_ttft_ms / t.vtensor_ttft_ms)), 1),
        chat_ttft_turn10_recompute_over_vtensor: ratio(turns[TURNS - 1]!.recompute_ttft_ms, turns[TURNS - 1]!.vtensor_ttft_ms),
      }),
    ...(mem && { memory_paged_over_vtensor_at_16: mem.find((r) => r.sequences === 16)!.paged_vs_vtensor }),
    ...(data.memory_long && {
      memory_long_context: {
        vtensor_vs_contiguous: data.memory_long.vtensor_vs_contiguous,
        ...(data.memory_long.vtensor_nowindow_bytes !== undefined && { window_unmap_saved_bytes: data.memory_long.vtensor_nowindow_bytes - data.memory_long.vtensor_bytes }),
        ...(data.memory_long.vtensor_vs_llamacpp !== undefined && { vtensor_vs_llamacpp: data.memory_long.vtensor_vs_llamacpp }),
      },
    }),
  };
  const result = { ...data, summary };
  const config = data.attention;
  const measured = KV_SWEEP_PARTS.filter((part) => data.parts[part]);
  let table = `${path}: KV layouts, vtensor vs paged vs contiguous\n`;
  table += `parts: ${measured.map((part) => `${part} (${data.parts[part]!.started}, ${data.parts[part]!.seconds} s)`).join(', ')}\n`;
  if (mem) {
    const windows = data.shape.layerWindows?.filter((w) => w > 0);
    const extra = mem.some((r) => r.vtensor_nowindow_bytes !== undefined);
    const llama = mem.some((r) => r.llamacpp_bytes !== undefined);
    const mib = (b: number | undefined) => (b === undefined ? '-' : (b / MiB).toFixed(1));
    table += '\n(a) KV bytes at peak, lognormal lengths, maxContext 4096';
    if (windows?.length) table += `; ${windows.length} of ${data.shape.numLayers} layers slide (window ${[...new Set(windows)].join('/')})`;
    const chunks = mem.map((r) => r.vtensor_chunk_bytes).filter((c) => c !== undefined);
    if (chunks.length) table += `; vTensor chunks ${[...new Set(chunks.map((c) => `${c / 1024} KiB`))].join(' / ')} (as the engine sizes them for the pool)`;
    table += '\nseqs  tokens   live MiB  vtensor MiB  paged MiB  contiguous MiB  paged/vtensor';
    table += `${extra ? '  no-unmap MiB' : ''}${llama ? '  llama.cpp MiB  vtensor/llama.cpp' : ''}\n`;
    const line = (label: string, r: MemoryRow) =>
      `${label.padEnd(5)} ${pad(r.tokens, 6)} ${pad(mib(r.live_bytes), 10)} ${pad(mib(r.vtensor_bytes), 12)} ${pad(mib(r.paged_bytes), 10)} ${pad(mib(r.contiguous_bytes), 15)} ${pad(r.paged_vs_vtensor, 14)}` +
      `${extra ? pad(mib(r.vtensor_nowindow_bytes), 14) : ''}${llama ? `${pad(mib(r.llamacpp_bytes), 15)} ${pad(r.vtensor_vs_llamacpp ?? null, 18)}` : ''}\n`;
    for (const r of mem) table += line(String(r.sequences), r);
    if (data.memory_long) table += line('1 long', data.memory_long) + '(1 long: one conversation grown to the full context)\n';
  }
  if (kDecode) {
    table += `\n(k) decode attention, one layer (${config.numHeads} heads, ${config.numKvHeads} kv heads, headDim ${config.headDim}), ms per step\n`;
    table += 'context  seqs  vtensor    paged  contiguous  vtensor speed-up vs paged\n';
    for (const r of kDecode) table += `${pad(r.context, 7)} ${pad(r.sequences, 5)} ${pad(r.vtensor_ms.toFixed(3), 8)} ${pad(r.paged_ms.toFixed(3), 8)} ${pad(r.contiguous_ms.toFixed(3), 11)} ${pad(r.vtensor_speedup_vs_paged, 10)}x\n`;
  }
  if (kPrefill) {
    table += `\n(k) prefix-prefill attention (sequences x new rows over a cached prefix), ms; reuse = matchPrefix + ensure, ms\n`;
    table += 'prefix  rows     vtensor    paged  contiguous  speed-up  reuse: vtensor  paged  contiguous\n';
    for (const r of kPrefill) table += `${pad(r.prefix, 6)} ${pad(`${r.sequences}x${r.new_rows}`, 5)} ${pad(r.vtensor_ms.toFixed(2), 11)} ${pad(r.paged_ms.toFixed(2), 8)} ${pad(r.contiguous_ms.toFixed(2), 11)} ${pad(r.vtensor_speedup_vs_paged, 8)}x ${pad(r.vtensor_reuse_ms.toFixed(2), 15)} ${pad(r.paged_reuse_ms.toFixed(2), 6)} ${pad(r.contiguous_reuse_ms.toFixed(2), 11)}\n`;
  }
  if (decode) {
    table += '\n(e) engine decode, tokens/s (KV management on the critical path, ms per token)\n';
    for (const r of decode) table += `${r.case.padEnd(48)} vtensor ${r.vtensor_tps.toFixed(1)} (${r.vtensor_kv_ms_per_token ?? '-'})  paged ${r.paged_tps.toFixed(1)} (${r.paged_kv_ms_per_token ?? '-'})  contiguous ${r.contiguous_tps.toFixed(1)}  vtensor/paged ${r.vtensor_vs_paged}\n`;
  }
  if (turns) {
    table += '\n(e) multi-turn chat, TTFT ms\nturn  vtensor    paged  contiguous  recompute  llama.cpp\n';
    for (const t of turns) table += `${String(t.turn).padEnd(5)} ${pad(t.vtensor_ttft_ms.toFixed(1), 7)} ${pad(t.paged_ttft_ms.toFixed(1), 8)} ${pad(t.contiguous_ttft_ms.toFixed(1), 11)} ${pad(t.recompute_ttft_ms.toFixed(1), 10)} ${pad(t.llamacpp_ttft_ms?.toFixed(1) ?? null, 10)}\n`;
    table += `turns 2-10: paged TTFT / vtensor TTFT = ${summary.chat_ttft_paged_over_vtensor_turns_2_10} (median); turn 10: recompute / vtensor reuse = ${summary.chat_ttft_turn10_recompute_over_vtensor}\n`;
  }
  if (data.skipped?.length) table += `skipped: ${data.skipped.join('; ')}\n`;
  if (data.llamacpp_error) table += `llama.cpp not measured: ${data.llamacpp_error}\n`;
  if (data.llamacpp_kv_error) table += `${data.llamacpp_kv_error}\n`;

  const layoutSeries = <T>(rows: T[], get: (r: T, layout: 'vtensor' | 'paged' | 'contiguous') => number | null) =>
    (['vtensor', 'paged', 'contiguous'] as const).map((l) => ({ name: l, values: rows.map((r) => get(r, l)) }));
  const decodePanel = (rowsAll: NonNullable<typeof kDecode>, n: number) => {
    const rows = rowsAll.filter((r) => r.sequences === n);
    return renderLinePlot({
      title: `Decode attention kernel, ${n} sequence${n > 1 ? 's' : ''}`,
      xLabel: 'context (tokens)',
      yLabel: 'ms per step (one layer)',
      xTicks: rows.map((r) => String(r.context)),
      series: layoutSeries(rows, (r, l) => r[`${l}_ms`]),
      logY: true,
    });
  };
  const panels: string[] = [];
  if (kDecode) panels.push(...[...new Set(kDecode.map((r) => r.sequences))].map((n) => decodePanel(kDecode, n)));
  if (kPrefill) {
    panels.push(
      renderLinePlot({
        title: 'Prefix-prefill attention kernel',
        xLabel: 'cached prefix (tokens)',
        yLabel: 'ms per call',
        xTicks: kPrefill.map((r) => String(r.prefix)),
        series: layoutSeries(kPrefill, (r, l) => r[`${l}_ms`]),
        logY: true,
      }),
    );
  }
  if (mem) {
    panels.push(
      renderLinePlot({
        title: 'KV bytes at peak (lognormal lengths, maxContext 4096)',
        xLabel: 'concurrent sequences',
        yLabel: 'MiB',
        xTicks: mem.map((r) => String(r.sequences)),
        series: [
          ...layoutSeries(mem, (r, l) => r[`${l}_bytes`] / MiB),
          ...(mem.some((r) => r.vtensor_nowindow_bytes !== undefined) ? [{ name: 'vtensor, no window unmap', values: mem.map((r) => (r.vtensor_nowindow_bytes === undefined ? null : r.vtensor_nowindow_bytes / MiB)), dashed: true }] : []),
          ...(mem.some((r) => r.llamacpp_bytes !== undefined) ? [{ name: 'llama.cpp', values: mem.map((r) => (r.llamacpp_bytes === undefined ? null : r.llamacpp_bytes / MiB)) }] : []),
          { name: 'tokens', values: mem.map((r) => r.live_bytes / MiB), dashed: true },
        ],
        logY: true,
      }),
    );
  }
  if (turns) {
    panels.push(
      renderLinePlot({
        title: 'Multi-turn chat: time to first token',
        xLabel: 'turn',
        yLabel: 'ms',
        xTicks: turns.map((t) => String(t.turn)),
        series: [
          ...layoutSeries(turns, (t, l) => t[`${l}_ttft_ms`]),
          { name: 'recompute', values: turns.map((t) => t.recompute_ttft_ms), dashed: true },
          ...(turns[0]!.llamacpp_ttft_ms != null ? [{ name: 'llama.cpp', values: turns.map((t) => t.llamacpp_ttft_ms) }] : []),
        ],
        logY: true,
      }),
    );
  }
  if (mem) {
    panels.push(
      renderLinePlot({
        title: 'KV management per token (ensure + commit)',
        xLabel: 'concurrent sequences',
        yLabel: 'ms per token',
        xTicks: mem.map((r) => String(r.sequences)),
        series: layoutSeries(mem, (r, l) => r[`${l}_ms_per_token`]),
      }),
    );
  }
  if (decode) {
    panels.push(
      renderLinePlot({
        title: 'Engine decode throughput',
        xLabel: 'case',
        yLabel: 'tokens/s',
        xTicks: decode.map((r) => (r.case.includes('shared') ? '16 shared' : String(r.sequences))),
        series: layoutSeries(decode, (r, l) => r[`${l}_tps`]),
      }),
    );
  }
  const svg = panels.length > 0 ? composePlots(panels, 2) : '';
  return { result, table, svg };
}
