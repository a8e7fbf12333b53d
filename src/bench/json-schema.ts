/**
 * `flexinfer bench MODEL --json-schema`: decode tokens/s with a JSON-Schema constraint against
 * unconstrained decoding, flexinfer and llama.cpp (its GBNF grammar made from the same schema by
 * node-llama-cpp) on the same file in the same run; the grammar mask's share of flexinfer's
 * decode time per token; grammar compile times. Medians of `runs`.
 */
import { loadModel } from '../engine/model.js';
import { loadLlamaCpp } from './llamacpp.js';

/**
 * The schema measured: 64 bounded integers, a boolean and an enum (long enough to decode `genTokens`
 * inside the structure, where the mask is computed for every token).
 */
export const BENCH_SCHEMA = {
  type: 'object',
  properties: {
    values: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 999 }, minItems: 64, maxItems: 64 },
    ok: { type: 'boolean' },
    mode: { enum: ['fast', 'slow'] },
  },
  required: ['values', 'ok', 'mode'],
  additionalProperties: false,
} as const;

const PROMPT = 'Return the data as JSON:';

export interface JsonSchemaBenchResult {
  model: string;
  vocab_size: number;
  threads: number;
  runs: number;
  gen_tokens: number;
  /** Grammar engine start (vocabulary) and compile times, ms. */
  grammar_start_ms: number;
  compile_ms: Record<string, number>;
  flexinfer: { free_tps: number; json_tps: number; ratio: number; mask_ms_per_token: number; decode_ms_per_token: number; mask_share: number };
  llamacpp?: { free_tps: number; json_tps: number; ratio: number };
  llamacpp_error?: string;
  /** flexinfer's constrained decode speed over llama.cpp's (GBNF). */
  flexinfer_vs_llamacpp_json?: number;
}

const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

type GrammarCounters = { compiles: number; compileMs: number; masks: number; maskMs: number };

export async function runJsonSchemaBench(
  path: string,
  options: { threads: number; runs: number; genTokens: number; noLlamaCpp: boolean; onLog?: (line: string) => void },
): Promise<JsonSchemaBenchResult> {
  const log = options.onLog ?? (() => {});
  const N = options.genTokens;
  const m = await loadModel(path, { threads: options.threads, parallel: 1, contextSize: 512 });
  const grammarStats = async (): Promise<GrammarCounters> => ((await m.stats()) as { grammar: GrammarCounters }).grammar;
  let result: JsonSchemaBenchResult;
  try {
    const t0 = performance.now();
    await m.complete(PROMPT, { maxTokens: 1, jsonSchema: { type: 'object', properties: { x: { type: 'integer' } } }, temperature: 1, seed: 1 });
    const startMs = performance.now() - t0;
    const compileMs: Record<string, number> = {};
    const schemas = { bench: BENCH_SCHEMA, string: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }, maxLength20: { type: 'object', properties: { city: { type: 'string', maxLength: 20 } }, required: ['city'] } };
    for (const [name, schema] of Object.entries(schemas)) {
      const g0 = await grammarStats();
      await m.complete(PROMPT, { maxTokens: 1, jsonSchema: schema, temperature: 1, seed: 1 });
      compileMs[name] = (await grammarStats()).compileMs - g0.compileMs;
    }
    const free: number[] = [];
    const json: number[] = [];
    const maskMs: number[] = [];
    const decodeMs: number[] = [];
    for (let r = 0; r < options.runs; r++) {
      const a = await m.complete(PROMPT, { maxTokens: N, temperature: 1, seed: 10 + r, ignoreEos: true });
      free.push(a.timings.genTokensPerSec);
      const s0 = await grammarStats();
      const b = await m.complete(PROMPT, { maxTokens: N, temperature: 1, seed: 10 + r, jsonSchema: BENCH_SCHEMA });
      const s1 = await grammarStats();
      if (b.tokens.length < N) log(`constrained run ${r} ended after ${b.tokens.length} tokens (${b.finishReason})`);
      json.push(b.timings.genTokensPerSec);
      maskMs.push((s1.maskMs - s0.maskMs) / Math.max(1, s1.masks - s0.masks));
      decodeMs.push(1000 / b.timings.genTokensPerSec);
      log(`run ${r + 1}/${options.runs}: flexinfer ${a.timings.genTokensPerSec.toFixed(1)} tok/s free, ${b.timings.genTokensPerSec.toFixed(1)} with the schema`);
    }
    result = {
      model: path,
      vocab_size: m.info.vocabSize,
      threads: options.threads,
      runs: options.runs,
      gen_tokens: N,
      grammar_start_ms: startMs,
      compile_ms: compileMs,
      flexinfer: {
        free_tps: median(free),
        json_tps: median(json),
        ratio: median(json) / median(free),
        mask_ms_per_token: median(maskMs),
        decode_ms_per_token: median(decodeMs),
        mask_share: median(maskMs) / median(decodeMs),
      },
    };
  } finally {
    await m.dispose();
  }
  if (options.noLlamaCpp) return { ...result, llamacpp_error: 'disabled with --no-llamacpp' };
  const h = await loadLlamaCpp();
  if ('error' in h) return { ...result, llamacpp_error: h.error };
  const lm = await h.llama.loadModel({ modelPath: path, gpuLayers: 0 });
  try {
    const ctx = await lm.createContext({ contextSize: 512, threads: options.threads, flashAttention: false });
    const seq = ctx.getSequence();
    const grammar = await h.llama.createGrammarForJsonSchema(BENCH_SCHEMA);
    const prompt = Array.from(lm.tokenize(PROMPT) as number[]);
    // Decode tokens/s after the first token (as flexinfer's genTokensPerSec).
    const decode = async (withGrammar: boolean, seed: number): Promise<number> => {
      await seq.clearHistory();
      const opts: Record<string, unknown> = { temperature: 1, seed };
      if (withGrammar) opts.grammarEvaluationState = new h.lib.LlamaGrammarEvaluationState({ model: lm, grammar });
      let n = 0;
      let tFirst = 0;
      for await (const t of seq.evaluate(prompt, opts)) {
        if (n === 0) tFirst = performance.now();
        if (++n >= N || (withGrammar && lm.isEogToken(t))) break;
      }
      return (n - 1) / ((performance.now() - tFirst) / 1000);
    };
    await decode(true, 1); // warm-up (grammar and context)
    const free: number[] = [];
    const json: number[] = [];
    for (let r = 0; r < options.runs; r++) {
      free.push(await decode(false, 10 + r));
      json.push(await decode(true, 10 + r));
      log(`run ${r + 1}/${options.runs}: llama.cpp ${free[r]!.toFixed(1)} tok/s free, ${json[r]!.toFixed(1)} with the GBNF grammar`);
    }
    await ctx.dispose();
    const llamacpp = { free_tps: median(free), json_tps: median(json), ratio: median(json) / median(free) };
    return { ...result, llamacpp, flexinfer_vs_llamacpp_json: result.flexinfer.json_tps / llamacpp.json_tps };
  } finally {
    await lm.dispose();
  }
}

/** The result as a table. */
export function jsonSchemaTable(r: JsonSchemaBenchResult): string {
  const f = r.flexinfer;
  let out = `${r.model}: ${r.gen_tokens} tokens decoded, ${r.threads} threads, vocabulary ${r.vocab_size}, median of ${r.runs}\n`;
  out += `engine      free tok/s  json_schema tok/s  ratio\n`;
  out += `flexinfer   ${f.free_tps.toFixed(1).padStart(10)}  ${f.json_tps.toFixed(1).padStart(17)}  ${f.ratio.toFixed(2)}x\n`;
  if (r.llamacpp) out += `llama.cpp   ${r.llamacpp.free_tps.toFixed(1).padStart(10)}  ${r.llamacpp.json_tps.toFixed(1).padStart(17)}  ${r.llamacpp.ratio.toFixed(2)}x (GBNF)\n`;
  out += `flexinfer mask: ${f.mask_ms_per_token.toFixed(3)} ms per token = ${(100 * f.mask_share).toFixed(1)}% of ${f.decode_ms_per_token.toFixed(2)} ms decode\n`;
  out += `grammar start ${r.grammar_start_ms.toFixed(0)} ms; compile ${Object.entries(r.compile_ms).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ')}\n`;
  if (!r.llamacpp) out += `llama.cpp not measured: ${r.llamacpp_error}\n`;
  return out;
}
