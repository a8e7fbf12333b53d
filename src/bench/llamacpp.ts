/**
 * llama.cpp as the peer in benchmarks and the reference in tests, through node-llama-cpp
 * (a pinned dev dependency: node-llama-cpp@3.21.1 with its prebuilt CPU binary
 * @node-llama-cpp/linux-x64). Loaded lazily; when it is not installed, callers get a reason
 * instead of an exception so flexinfer's half of a benchmark still runs.
 */

// The node-llama-cpp module is typed loosely here: it is an optional peer at run time.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

export interface LlamaCppHandle {
  /** The node-llama-cpp module. */
  lib: Any;
  /** A CPU-only Llama instance. */
  llama: Any;
  version: string;
}

let cached: Promise<LlamaCppHandle | { error: string }> | undefined;

/**
 * Loads node-llama-cpp with its prebuilt CPU binary: no GPU, no build, no download.
 * Returns `{ error }` (the reason) when it is not available.
 */
export function loadLlamaCpp(): Promise<LlamaCppHandle | { error: string }> {
  cached ??= (async () => {
    try {
      const lib: Any = await import('node-llama-cpp');
      const llama = await lib.getLlama({
        gpu: false,
        build: 'never',
        skipDownload: true,
        progressLogs: false,
        logLevel: lib.LlamaLogLevel.error,
      });
      let version = 'unknown';
      try {
        const { createRequire } = await import('node:module');
        version = createRequire(import.meta.url)('node-llama-cpp/package.json').version;
      } catch {
        /* version is informational */
      }
      return { lib, llama, version };
    } catch (err) {
      return { error: `node-llama-cpp is not available (${(err as Error).message?.split('\n')[0]}); install the dev dependencies with \`npm install\`` };
    }
  })();
  return cached;
}

/** A loaded model + context + sequence of llama.cpp, for one benchmark or test. */
export interface LlamaCppSession {
  tokenize(text: string, special?: boolean): number[];
  /** Runs the tokens through the model (prompt processing); returns seconds. */
  prefill(tokens: number[]): Promise<number>;
  /** Greedy generation of n tokens after `tokens`; returns the tokens and seconds per token stage. */
  /** Greedy, or sampled with `sample` (llama.cpp's sampler chain at that temperature and seed). */
  generateGreedy(tokens: number[], n: number, sample?: { temperature: number; seed: number }): Promise<{ tokens: number[]; promptSec: number; genSec: number }>;
  /** Forgets the sequence's history (KV) so the next call starts fresh. */
  clear(): Promise<void>;
  dispose(): Promise<void>;
}

export interface LlamaCppSessionOptions {
  threads: number;
  contextSize: number;
  /** Default true (llama.cpp's default): the model is mmapped, not read into memory. */
  useMmap?: boolean;
  batchSize?: number;
  /** Parallel sequences in the context (for serving benchmarks). */
  sequences?: number;
}

/** Opens a model in llama.cpp (CPU, flash attention off, f16 KV: its defaults). */
export async function openLlamaCpp(handle: LlamaCppHandle, modelPath: string, options: LlamaCppSessionOptions): Promise<LlamaCppSession> {
  const model = await handle.llama.loadModel({ modelPath, useMmap: options.useMmap ?? true, gpuLayers: 0 });
  const context = await model.createContext({
    contextSize: options.contextSize,
    threads: options.threads,
    batchSize: options.batchSize ?? 512,
    flashAttention: false,
    sequences: options.sequences ?? 1,
  });
  const sequence = context.getSequence();
  return {
    tokenize: (text, special = true) => Array.from(model.tokenize(text, special) as number[]),
    async prefill(tokens) {
      const t0 = performance.now();
      await sequence.evaluateWithoutGeneratingNewTokens(tokens);
      return (performance.now() - t0) / 1000;
    },
    async generateGreedy(tokens, n, sample) {
      const out: number[] = [];
      const t0 = performance.now();
      let tFirst = t0;
      for await (const token of sequence.evaluate(tokens, sample ?? { temperature: 0 })) {
        if (out.length === 0) tFirst = performance.now();
        out.push(token as number);
        if (out.length >= n) break;
      }
      const t1 = performance.now();
      return { tokens: out, promptSec: (tFirst - t0) / 1000, genSec: (t1 - tFirst) / 1000 };
    },
    async clear() {
      await sequence.clearHistory();
    },
    async dispose() {
      await context.dispose();
      await model.dispose();
    },
  };
}

/** One KV cache llama.cpp created (a sliding-window model gets two: non-SWA and SWA). */
export interface LlamaCppKvCache {
  /** Cells per stream (llama.cpp gives each sequence its own stream). */
  cells: number;
  layers: number;
  /** Sequences (streams) the cache holds. */
  sequences: number;
  /** Bytes of the whole cache, every stream. */
  bytes: number;
}

/** llama.cpp's log line for each KV cache it allocates (llama-kv-cache.cpp). */
const KV_SIZE_LINE = /size\s*=\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers,\s*(\d+)\s*\/\s*(\d+) seqs\)/;

/**
 * The KV caches llama.cpp allocates for each count in `sequences` of up to `contextSize` tokens each
 * (node-llama-cpp's contextSize is per sequence: it asks llama.cpp for contextSize x sequences
 * cells, one stream per sequence), read from its own log lines ("llama_kv_cache: size = X MiB (N cells, L layers,
 * ...)", one per cache: a sliding-window model has a non-SWA and a SWA cache). The context is
 * created with node-llama-cpp's defaults (f16 K/V, flash attention off, swaFullCache false),
 * then disposed. @internal
 */
export async function llamaCppKvCaches(handle: LlamaCppHandle, modelPath: string, contextSize: number, sequences: readonly number[]): Promise<LlamaCppKvCache[][]> {
  const { llama, lib } = handle;
  const saved = { level: llama.logLevel, logger: llama.logger };
  let caches: LlamaCppKvCache[] = [];
  const out: LlamaCppKvCache[][] = [];
  llama.logLevel = lib.LlamaLogLevel.info;
  llama.logger = (_level: unknown, message: string) => {
    const m = KV_SIZE_LINE.exec(message);
    if (m) caches.push({ cells: Number(m[2]), layers: Number(m[3]), sequences: Number(m[5]), bytes: Math.round(Number(m[1]) * 1024 * 1024) });
  };
  try {
    // One model load; one context per sequence count.
    const model = await llama.loadModel({ modelPath, useMmap: true, gpuLayers: 0 });
    try {
      for (const n of sequences) {
        caches = [];
        const context = await model.createContext({ contextSize, sequences: n, threads: 1, flashAttention: false, ignoreMemorySafetyChecks: true });
        await context.dispose();
        if (caches.length === 0) throw new Error(`llama.cpp logged no KV cache size for ${modelPath} (its log format changed?)`);
        out.push(caches);
      }
    } finally {
      await model.dispose();
    }
  } finally {
    llama.logLevel = saved.level;
    llama.logger = saved.logger;
  }
  return out;
}
