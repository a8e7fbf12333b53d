/**
 * End-to-end part of `flexinfer bench --kv-sweep`: the real engine (worker, scheduler, model)
 * with each KV layout, the three loaded side by side and taking turns inside every run, so a
 * noisy machine slows them alike.
 *
 * - Decode throughput: N = 1, 4, 16 concurrent greedy generations from short prompts, and 16
 *   generations that share a long system prompt (cached once, then reused by all: the prefix
 *   sharing both vTensor and paged attention are built for). Aggregate tokens/s, and the
 *   KV-management time the scheduler waited for per generated token (vTensor: chunk mapping;
 *   paged: block-table upkeep; both from the manager's critical-path timer).
 * - Multi-turn chat: time to first token of every turn of a 10-turn conversation, reusing the
 *   previous turns' K/V from the prefix cache, per layout; plus recomputing everything, and
 *   llama.cpp holding the same conversation.
 */
import { loadModel, type Model } from '../index.js';
import { KV_LAYOUTS, type KvLayout } from '../kv/layouts.js';
import { median, ratio, round } from './stats.js';
import { benchPromptTokens } from './speed.js';
import { loadLlamaCpp, openLlamaCpp } from './llamacpp.js';

export const TURNS = 10;
const USER_TOKENS = 50;
const REPLY_TOKENS = 50;
/** Shared system prompt of the prefix-sharing decode case. */
const SYSTEM_TOKENS = 1024;

export interface EngineBenchOptions {
  threads: number;
  runs: number;
  genTokens: number;
  noLlamaCpp: boolean;
  onLog: (line: string) => void;
}

export interface EngineDecodeRow {
  case: string;
  sequences: number;
  vtensor_tps: number;
  paged_tps: number;
  contiguous_tps: number;
  /** Median over runs of vtensor / paged throughput (> 1: vtensor faster, as the paper's 1.86x). */
  vtensor_vs_paged: number | null;
  /** KV management on the critical path per generated token (map / block-table upkeep), ms. */
  vtensor_kv_ms_per_token: number | null;
  paged_kv_ms_per_token: number | null;
}

export interface ChatTurnRow {
  turn: number;
  vtensor_ttft_ms: number;
  paged_ttft_ms: number;
  contiguous_ttft_ms: number;
  recompute_ttft_ms: number;
  llamacpp_ttft_ms: number | null;
}

function concat(...parts: Uint32Array[]): Uint32Array {
  const out = new Uint32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
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

/** Aggregate decode tokens/s of greedy generations of all prompts at once, and KV ms per token. */
async function decodeOnce(model: Model, prompts: Uint32Array[], genTokens: number): Promise<{ tps: number; kvMsPerToken: number | null }> {
  const before = numberAt(await model.stats(), 'mapMsOnCriticalPath');
  const results = await Promise.all(prompts.map((p) => model.complete(p, { maxTokens: genTokens, temperature: 0, ignoreEos: true })));
  const after = numberAt(await model.stats(), 'mapMsOnCriticalPath');
  // In one batch every sequence advances once per step: the sum of per-sequence rates is the aggregate.
  const tps = results.reduce((a, r) => a + r.timings.genTokensPerSec, 0);
  const tokens = results.reduce((a, r) => a + r.tokens.length, 0);
  return { tps, kvMsPerToken: before != null && after != null && tokens > 0 ? (after - before) / tokens : null };
}

/** Decode throughput of the three layouts (see file comment). */
export async function runEngineDecode(path: string, o: EngineBenchOptions): Promise<EngineDecodeRow[]> {
  const models = {} as Record<KvLayout, Model>;
  try {
    for (const layout of KV_LAYOUTS) models[layout] = await loadModel(path, { threads: o.threads, kv: layout, parallel: 16, contextSize: 2048 });
    const vocab = models.vtensor.info.vocabSize;
    const system = benchPromptTokens(SYSTEM_TOKENS, vocab, 4242);
    const cases: Array<{ name: string; prompts: (run: number) => Uint32Array[]; warm?: Uint32Array }> = [
      ...[1, 4, 16].map((n) => ({ name: `${n} x 32-token prompts`, prompts: (run: number) => Array.from({ length: n }, (_, i) => benchPromptTokens(32, vocab, 100 + 97 * run + i)) })),
      {
        name: `16 x (shared ${SYSTEM_TOKENS}-token system prompt + 16)`,
        prompts: (run: number) => Array.from({ length: 16 }, (_, i) => concat(system, benchPromptTokens(16, vocab, 5000 + 97 * run + i))),
        warm: concat(system, benchPromptTokens(1, vocab, 1)),
      },
    ];
    for (const layout of KV_LAYOUTS) await decodeOnce(models[layout], [benchPromptTokens(8, vocab, 1)], 4); // warm-up
    const rows: EngineDecodeRow[] = [];
    for (const c of cases) {
      const tps: Record<KvLayout, number[]> = { vtensor: [], paged: [], contiguous: [] };
      const kvMs: Record<KvLayout, number[]> = { vtensor: [], paged: [], contiguous: [] };
      for (let r = 0; r < o.runs; r++) {
        for (let i = 0; i < KV_LAYOUTS.length; i++) {
          const layout = KV_LAYOUTS[(r + i) % KV_LAYOUTS.length]!;
          // The system prompt is computed once and cached; the measured generations reuse it.
          if (c.warm) await models[layout].complete(c.warm, { maxTokens: 1, temperature: 0 });
          const s = await decodeOnce(models[layout], c.prompts(r), o.genTokens);
          tps[layout].push(s.tps);
          if (s.kvMsPerToken != null) kvMs[layout].push(s.kvMsPerToken);
          o.onLog(`(e) decode ${c.name}, ${layout}: ${s.tps.toFixed(1)} tok/s`);
        }
      }
      rows.push({
        case: c.name,
        sequences: c.prompts(0).length,
        vtensor_tps: round(median(tps.vtensor)),
        paged_tps: round(median(tps.paged)),
        contiguous_tps: round(median(tps.contiguous)),
        vtensor_vs_paged: ratio(median(tps.vtensor.map((v, i) => v / tps.paged[i]!)), 1),
        vtensor_kv_ms_per_token: kvMs.vtensor.length ? round(median(kvMs.vtensor), 4) : null,
        paged_kv_ms_per_token: kvMs.paged.length ? round(median(kvMs.paged), 4) : null,
      });
    }
    return rows;
  } finally {
    for (const m of Object.values(models)) await m.dispose();
  }
}

/** TTFT of every turn of a 10-turn chat, per layout with reuse, recomputed, and llama.cpp. */
export async function runChatTtft(path: string, o: EngineBenchOptions): Promise<{ turns: ChatTurnRow[]; llamacppError?: string }> {
  const ctx = (USER_TOKENS + REPLY_TOKENS) * TURNS + 64;
  const engines: Array<[string, Model]> = [];
  try {
    for (const layout of KV_LAYOUTS) engines.push([layout, await loadModel(path, { threads: o.threads, kv: layout, parallel: 1, contextSize: ctx })]);
    engines.push(['recompute', await loadModel(path, { threads: o.threads, kv: 'vtensor', parallel: 1, contextSize: ctx, prefixCache: false })]);
    const vocab = engines[0]![1].info.vocabSize;
    const history = new Map<string, Uint32Array>(engines.map(([name]) => [name, new Uint32Array(0)]));
    const ttft = new Map<string, number[]>(engines.map(([name]) => [name, []]));
    for (let t = 0; t < TURNS; t++) {
      const user = benchPromptTokens(USER_TOKENS, vocab, 500 + t);
      for (let i = 0; i < engines.length; i++) {
        const [name, model] = engines[(t + i) % engines.length]!;
        const prompt = concat(history.get(name)!, user);
        const r = await model.complete(prompt, { maxTokens: REPLY_TOKENS, temperature: 0, ignoreEos: true });
        ttft.get(name)!.push(r.timings.timeToFirstTokenMs);
        history.set(name, concat(prompt, Uint32Array.from(r.tokens)));
      }
      o.onLog(`(e) chat turn ${t + 1}: ${engines.map(([name]) => `${name} ${ttft.get(name)![t]!.toFixed(0)} ms`).join(', ')}`);
    }
    let llama: number[] | null = null;
    let llamacppError: string | undefined;
    if (!o.noLlamaCpp) {
      const h = await loadLlamaCpp();
      if ('error' in h) llamacppError = h.error;
      else {
        // llama.cpp keeps the conversation in one sequence and evaluates only each turn's new tokens.
        const s = await openLlamaCpp(h, path, { threads: o.threads, contextSize: ctx });
        llama = [];
        try {
          for (let t = 0; t < TURNS; t++) {
            const r = await s.generateGreedy(Array.from(benchPromptTokens(USER_TOKENS, vocab, 500 + t)), REPLY_TOKENS);
            llama.push(r.promptSec * 1000);
          }
        } finally {
          await s.dispose();
        }
      }
    }
    const at = (name: string, t: number) => round(ttft.get(name)![t]!);
    const turns = Array.from({ length: TURNS }, (_, t) => ({
      turn: t + 1,
      vtensor_ttft_ms: at('vtensor', t),
      paged_ttft_ms: at('paged', t),
      contiguous_ttft_ms: at('contiguous', t),
      recompute_ttft_ms: at('recompute', t),
      llamacpp_ttft_ms: llama ? round(llama[t]!) : null,
    }));
    return { turns, ...(llamacppError ? { llamacppError } : {}) };
  } finally {
    for (const [, m] of engines) await m.dispose();
  }
}
