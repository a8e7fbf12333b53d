/**
 * `flexinfer bench MODEL`: prompt processing and generation tokens/s of flexinfer and of
 * llama.cpp (node-llama-cpp, CPU, same threads, mmap on) on the same file, in the same run,
 * alternating engines run by run; medians of R runs and the ratios.
 */
import { statSync } from 'node:fs';
import { loadModel, type Model } from '../index.js';
import { median, ratio, round } from './stats.js';
import { loadLlamaCpp, openLlamaCpp, type LlamaCppSession } from './llamacpp.js';
import { Rng } from '../engine/sampling.js';
import type { KvLayout } from '../kv/layouts.js';

export interface SpeedBenchOptions {
  threads: number;
  promptTokens: number;
  genTokens: number;
  runs: number;
  /** Skip the llama.cpp half. */
  noLlamaCpp?: boolean;
  memoryBudget?: string | number;
  kv?: KvLayout;
  onLog?: (line: string) => void;
}

export interface EngineSpeed {
  prompt_tps: number;
  gen_tps: number;
  prompt_tps_runs: number[];
  gen_tps_runs: number[];
}

export interface SpeedBenchResult {
  model: string;
  file_bytes: number;
  threads: number;
  prompt_tokens: number;
  gen_tokens: number;
  runs: number;
  flexinfer: EngineSpeed & { weight_gb_per_s: number };
  llamacpp: EngineSpeed | null;
  llamacpp_error?: string;
  llamacpp_version?: string;
  ratio: { prompt: number | null; gen: number | null };
}

/** Token ids both engines can take: ordinary vocabulary entries, seeded. */
export function benchPromptTokens(n: number, vocabSize: number, seed = 1): Uint32Array {
  const rng = new Rng(seed);
  const out = new Uint32Array(n);
  // Skip the first 300 ids (control and byte tokens in Llama/Qwen vocabularies).
  for (let i = 0; i < n; i++) out[i] = 300 + Math.floor(rng.nextFloat() * Math.max(1, Math.min(vocabSize, 30000) - 300));
  return out;
}

async function flexPrompt(model: Model, tokens: Uint32Array): Promise<number> {
  const t0 = performance.now();
  await model.evaluate(tokens);
  return tokens.length / ((performance.now() - t0) / 1000);
}

async function flexGen(model: Model, first: Uint32Array, n: number): Promise<number> {
  const r = await model.complete(first, { maxTokens: n, temperature: 0, ignoreEos: true });
  return r.timings.genTokensPerSec;
}

async function llamaPrompt(s: LlamaCppSession, tokens: Uint32Array): Promise<number> {
  await s.clear();
  const sec = await s.prefill(Array.from(tokens));
  return tokens.length / sec;
}

async function llamaGen(s: LlamaCppSession, first: Uint32Array, n: number): Promise<number> {
  await s.clear();
  const r = await s.generateGreedy(Array.from(first), n);
  // The first token's time is prompt processing; the rest is generation.
  return (r.tokens.length - 1) / r.genSec;
}

/** Runs the side-by-side speed benchmark. */
export async function runSpeedBench(path: string, o: SpeedBenchOptions): Promise<SpeedBenchResult> {
  const log = o.onLog ?? (() => {});
  const fileBytes = statSync(path).size;
  const contextSize = Math.max(256, o.promptTokens + o.genTokens + 16);
  const model = await loadModel(path, { threads: o.threads, contextSize, parallel: 1, memoryBudget: o.memoryBudget, kv: o.kv });
  let llama: LlamaCppSession | null = null;
  let llamaError: string | undefined;
  let llamaVersion: string | undefined;
  if (!o.noLlamaCpp) {
    const h = await loadLlamaCpp();
    if ('error' in h) llamaError = h.error;
    else {
      llamaVersion = h.version;
      llama = await openLlamaCpp(h, path, { threads: o.threads, contextSize });
    }
  }
  const prompt = benchPromptTokens(o.promptTokens, model.info.vocabSize);
  const first = prompt.subarray(0, 1);
  const f = { p: [] as number[], g: [] as number[] };
  const l = { p: [] as number[], g: [] as number[] };
  try {
    // One warm-up of each (page cache, thread pools), not counted.
    await flexGen(model, first, 4);
    if (llama) await llamaGen(llama, first, 4);
    for (let r = 0; r < o.runs; r++) {
      f.p.push(await flexPrompt(model, prompt));
      f.g.push(await flexGen(model, first, o.genTokens));
      if (llama) {
        l.p.push(await llamaPrompt(llama, prompt));
        l.g.push(await llamaGen(llama, first, o.genTokens));
      }
      log(
        `run ${r + 1}/${o.runs}: flexinfer pp ${f.p.at(-1)!.toFixed(1)} tg ${f.g.at(-1)!.toFixed(1)}` +
          (llama ? ` | llama.cpp pp ${l.p.at(-1)!.toFixed(1)} tg ${l.g.at(-1)!.toFixed(1)}` : ''),
      );
    }
  } finally {
    await model.dispose();
    await llama?.dispose();
  }
  const flex = { prompt_tps: round(median(f.p)), gen_tps: round(median(f.g)), prompt_tps_runs: f.p.map((x) => round(x)), gen_tps_runs: f.g.map((x) => round(x)) };
  const lc = llama || l.p.length ? { prompt_tps: round(median(l.p)), gen_tps: round(median(l.g)), prompt_tps_runs: l.p.map((x) => round(x)), gen_tps_runs: l.g.map((x) => round(x)) } : null;
  // Generation reads every weight once per token (token embeddings only by row).
  const weightBytes = fileBytes;
  return {
    model: path,
    file_bytes: fileBytes,
    threads: o.threads,
    prompt_tokens: o.promptTokens,
    gen_tokens: o.genTokens,
    runs: o.runs,
    flexinfer: { ...flex, weight_gb_per_s: round((flex.gen_tps * weightBytes) / 1e9) },
    llamacpp: lc,
    ...(llamaError ? { llamacpp_error: llamaError } : {}),
    ...(llamaVersion ? { llamacpp_version: llamaVersion } : {}),
    ratio: { prompt: ratio(flex.prompt_tps, lc?.prompt_tps), gen: ratio(flex.gen_tps, lc?.gen_tps) },
  };
}

/**
 * A benchmark child's own figures at its end: peak RSS and major page faults (a run at its
 * cgroup limit that refaults its own code or an mmapped model shows it here). @internal
 */
export function processFigures(): { peak_rss_bytes: number; major_faults: number } {
  const u = process.resourceUsage();
  return { peak_rss_bytes: u.maxRSS * 1024, major_faults: u.majorPageFault };
}
