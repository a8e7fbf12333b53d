/**
 * `flexinfer bench MODEL --kv-sweep`: what virtual-tensor KV buys.
 *
 *   (a) memory: peak KV bytes for N = 1, 4, 16, 64 concurrent sequences with lognormal
 *       lengths (maxContext 4096), vtensor vs contiguous, with real mappings (src/kv);
 *       and decode tokens/s of the real engine with N sequences, vtensor vs contiguous.
 *   (b) multi-turn chat, 10 turns of ~100 tokens: time to first token per turn with prefix
 *       reuse vs recompute, and llama.cpp (node-llama-cpp) holding the same conversation.
 *   (c) mapping time left on the critical path, per generated token.
 */
import { readGgufSync } from '../gguf/reader.js';
import { modelConfigFromGguf } from '../models/registry.js';
import { runKvMemoryBench } from '../kv/index.js';
import { loadModel, type Model } from '../index.js';
import { median, ratio, round } from './stats.js';
import { renderLinePlot } from './svg.js';
import { benchPromptTokens } from './speed.js';
import { loadLlamaCpp, openLlamaCpp } from './llamacpp.js';
import type { SweepOptions, SweepOutput } from './sweeps.js';

const CONCURRENCY = [1, 4, 16, 64];
const TURNS = 10;
const USER_TOKENS = 50;
const REPLY_TOKENS = 50;

/** Aggregate decode tokens/s of N concurrent greedy generations. */
async function decodeSpeed(model: Model, n: number, genTokens: number): Promise<{ tps: number; mapMsPerToken: number | null }> {
  const before = await model.stats();
  const jobs = Array.from({ length: n }, (_, i) =>
    model.complete(benchPromptTokens(32, model.info.vocabSize, 100 + i), { maxTokens: genTokens, temperature: 0, ignoreEos: true }),
  );
  const results = await Promise.all(jobs);
  const after = await model.stats();
  // In one batch every sequence advances once per step: the sum of per-sequence rates is the aggregate.
  const tps = results.reduce((a, r) => a + r.timings.genTokensPerSec, 0);
  const tokens = results.reduce((a, r) => a + r.tokens.length, 0);
  const mapMs = numberAt(after, 'mapMsOnCriticalPath');
  const mapMs0 = numberAt(before, 'mapMsOnCriticalPath');
  return { tps, mapMsPerToken: mapMs != null && mapMs0 != null && tokens > 0 ? (mapMs - mapMs0) / tokens : null };
}

/** TTFT (ms) of each turn of a synthetic 10-turn chat held on one model. */
async function chatTtft(model: Model, seedBase: number): Promise<number[]> {
  let history: Uint32Array = new Uint32Array(0);
  const out: number[] = [];
  for (let t = 0; t < TURNS; t++) {
    const user = benchPromptTokens(USER_TOKENS, model.info.vocabSize, seedBase + t);
    const prompt = concat(history, user);
    const r = await model.complete(prompt, { maxTokens: REPLY_TOKENS, temperature: 0, ignoreEos: true });
    out.push(r.timings.timeToFirstTokenMs);
    history = concat(prompt, Uint32Array.from(r.tokens));
  }
  return out;
}

function concat(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function numberAt(obj: unknown, key: string): number | null {
  if (!obj || typeof obj !== 'object') return null;
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (k === key && typeof v === 'number') return v;
    const inner = numberAt(v, key);
    if (inner != null) return inner;
  }
  return null;
}

export async function runKvSweep(path: string, o: SweepOptions): Promise<SweepOutput> {
  const config = modelConfigFromGguf(readGgufSync(path));
  const shape = { numLayers: config.numLayers, kvDim: config.numKvHeads * config.headDim, maxContext: 4096 };

  // (a) memory, with real mappings.
  o.onLog('(a) KV memory: vtensor vs contiguous ...');
  const mem = runKvMemoryBench({ shape, concurrency: CONCURRENCY });
  const memRows = CONCURRENCY.map((n) => {
    const v = mem.find((r) => r.layout === 'vtensor' && r.numSequences === n)!;
    const c = mem.find((r) => r.layout === 'contiguous' && r.numSequences === n)!;
    return { sequences: n, tokens: v.totalTokens, vtensor_bytes: v.peakMappedBytes, contiguous_bytes: c.peakMappedBytes, ratio: ratio(v.peakMappedBytes, c.peakMappedBytes), vtensor_fragmentation_percent: round(v.fragmentationPercent) };
  });

  // (a') decode speed of the real engine, both layouts (N up to 16: 64 prompts take minutes on 2 cores).
  const speedRows: Array<{ sequences: number; vtensor_tps: number; contiguous_tps: number; ratio: number | null; map_ms_per_token: number | null }> = [];
  const decodeN = [1, 4, 16];
  const speeds: Record<string, Record<number, number[]>> = { vtensor: {}, contiguous: {} };
  const mapPerToken: number[] = [];
  for (const layout of ['vtensor', 'contiguous'] as const) {
    const model = await loadModel(path, { threads: o.threads, kv: layout, parallel: 16, contextSize: 512 });
    try {
      await decodeSpeed(model, 1, 4); // warm-up
      for (const n of decodeN) {
        speeds[layout]![n] = [];
        for (let r = 0; r < o.runs; r++) {
          const s = await decodeSpeed(model, n, o.genTokens);
          speeds[layout]![n]!.push(s.tps);
          if (layout === 'vtensor' && s.mapMsPerToken != null) mapPerToken.push(s.mapMsPerToken);
          o.onLog(`(a) decode ${layout} N=${n}: ${s.tps.toFixed(1)} tok/s`);
        }
      }
    } finally {
      await model.dispose();
    }
  }
  for (const n of decodeN) {
    const v = median(speeds.vtensor![n]!);
    const c = median(speeds.contiguous![n]!);
    speedRows.push({ sequences: n, vtensor_tps: round(v), contiguous_tps: round(c), ratio: ratio(v, c), map_ms_per_token: null });
  }

  // (b) multi-turn chat: reuse vs recompute vs llama.cpp.
  o.onLog('(b) multi-turn chat ...');
  const ctx = (USER_TOKENS + REPLY_TOKENS) * TURNS + 64;
  const reuseModel = await loadModel(path, { threads: o.threads, kv: o.kv ?? 'vtensor', parallel: 1, contextSize: ctx });
  const reuse = await chatTtft(reuseModel, 500).finally(() => reuseModel.dispose());
  const recomputeModel = await loadModel(path, { threads: o.threads, kv: o.kv ?? 'vtensor', parallel: 1, contextSize: ctx, prefixCache: false });
  const recompute = await chatTtft(recomputeModel, 500).finally(() => recomputeModel.dispose());
  let llama: number[] | null = null;
  let llamaError: string | undefined;
  if (!o.noLlamaCpp) {
    const h = await loadLlamaCpp();
    if ('error' in h) llamaError = h.error;
    else {
      // llama.cpp keeps the conversation in one sequence and evaluates only each turn's new tokens.
      const s = await openLlamaCpp(h, path, { threads: o.threads, contextSize: ctx });
      llama = [];
      try {
        for (let t = 0; t < TURNS; t++) {
          const user = Array.from(benchPromptTokens(USER_TOKENS, 32000, 500 + t));
          const r = await s.generateGreedy(user, REPLY_TOKENS);
          llama.push(r.promptSec * 1000);
        }
      } finally {
        await s.dispose();
      }
    }
  }
  const turns = reuse.map((ms, i) => ({ turn: i + 1, reuse_ttft_ms: round(ms), recompute_ttft_ms: round(recompute[i]!), llamacpp_ttft_ms: llama ? round(llama[i]!) : null }));

  const result = {
    model: path,
    shape,
    memory: memRows,
    decode: speedRows,
    multi_turn: turns,
    turn10_speedup_reuse_vs_recompute: ratio(recompute[TURNS - 1], reuse[TURNS - 1]),
    mapping_ms_per_token_on_critical_path: mapPerToken.length ? round(median(mapPerToken), 4) : null,
    ...(llamaError ? { llamacpp_error: llamaError } : {}),
  };
  const MiB = 1024 * 1024;
  let table = `${path}: KV cache, vtensor vs contiguous (maxContext 4096)\n`;
  table += 'seqs  tokens   vtensor MiB  contiguous MiB  ratio\n';
  for (const r of memRows) table += `${String(r.sequences).padEnd(5)} ${String(r.tokens).padStart(6)} ${(r.vtensor_bytes / MiB).toFixed(1).padStart(12)} ${(r.contiguous_bytes / MiB).toFixed(1).padStart(15)} ${String(r.ratio).padStart(6)}\n`;
  table += '\nseqs  decode tok/s vtensor  contiguous  ratio\n';
  for (const r of speedRows) table += `${String(r.sequences).padEnd(5)} ${r.vtensor_tps.toFixed(1).padStart(20)} ${r.contiguous_tps.toFixed(1).padStart(11)} ${String(r.ratio).padStart(6)}\n`;
  table += '\nturn  TTFT ms: reuse  recompute  llama.cpp\n';
  for (const t of turns) table += `${String(t.turn).padEnd(5)} ${t.reuse_ttft_ms.toFixed(1).padStart(14)} ${t.recompute_ttft_ms.toFixed(1).padStart(10)} ${(t.llamacpp_ttft_ms?.toFixed(1) ?? '-').padStart(10)}\n`;
  table += `turn 10: reuse is ${result.turn10_speedup_reuse_vs_recompute}x faster than recompute; mapping on the critical path: ${result.mapping_ms_per_token_on_critical_path ?? '-'} ms/token\n`;
  const svg = renderLinePlot({
    title: 'KV cache bytes at peak (maxContext 4096)',
    xLabel: 'concurrent sequences',
    yLabel: 'MiB',
    xTicks: memRows.map((r) => String(r.sequences)),
    series: [
      { name: 'vtensor', values: memRows.map((r) => r.vtensor_bytes / MiB) },
      { name: 'contiguous', values: memRows.map((r) => r.contiguous_bytes / MiB) },
    ],
    logY: true,
  });
  return { result, table, svg };
}
