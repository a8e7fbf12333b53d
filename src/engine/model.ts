/**
 * The main-thread side of a loaded model: tokenizer (sync tokenize/detokenize), option
 * validation, and request plumbing to the engine worker (streaming chunks, results, logits).
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { readGguf, type GgufFile } from '../gguf/reader.js';
import { modelConfigFromGguf } from '../models/registry.js';
import type { ModelConfig } from '../models/config.js';
import { tokenizerFromGguf } from '../tokenizer/index.js';
import { ContextOverflowError, InvalidOptionError, ModelDisposedError } from '../errors.js';
import { parseMemoryBudget } from '../weights/budget.js';
import { resolveSamplingOptions, type SamplingOptions, type TokenLogprob } from './sampling.js';
import { checkGrammarSpec, type GrammarSpec } from '../grammar/engine.js';
import type { FinishedGeneration, Pooling } from './scheduler.js';
import { KV_LAYOUTS, type KvLayout } from '../kv/layouts.js';
import { MAX_LOOKAHEAD } from '../weights/expert-scheduler.js';
import { deserializeError, type FromWorker, type ToWorker, type WorkerInit } from './protocol.js';
import { isHubUri, pullModel, type PullOptions } from '../hub/pull.js';
import { assertNotSplit } from '../gguf/split.js';

type Tokenizer = ReturnType<typeof tokenizerFromGguf>;

/** Options of loadModel(). */
export interface LoadModelOptions {
  /** Compute threads (default: all cores). */
  threads?: number;
  /**
   * Tokens one sequence can hold (default min(the file's context length, 4096); under a
   * memoryBudget too small for that default's KV, the largest multiple of 256 tokens (>= 256)
   * the budget holds: see info.contextSize). A given contextSize is never changed.
   */
  contextSize?: number;
  /** Most sequences computed at once (default 4). */
  parallel?: number;
  /** Memory budget: bytes, or a string like "2GiB" / "75%". */
  memoryBudget?: string | number;
  /** KV cache layout (default 'vtensor': memory mapped as sequences grow; 'paged': vLLM's blocks; 'contiguous': max-context slots). */
  kv?: KvLayout;
  /** Reuse the KV of cached prompt prefixes across requests (default true). */
  prefixCache?: boolean;
  /**
   * How a memory budget is split (with the vtensor layout): 'elastic' (default) keeps a KV
   * floor and lets resident weights and KV chunks share the rest while the model runs (weights
   * are demoted to streamed when KV grows and promoted back when it shrinks); 'static'
   * reserves KV for `parallel` full-context sequences at load.
   */
  memoryPool?: 'elastic' | 'static';
  /** Elastic KV floor: KV memory no weight may take (bytes or "64MiB"; default one full-context sequence). */
  kvFloor?: string | number;
  /** Mixture-of-Experts models under a budget: how the expert cache works. */
  experts?: ExpertOptions;
  onProgress?: (p: { loadedBytes: number; totalBytes: number }) => void;
  signal?: AbortSignal;
  /**
   * How `hf:OWNER/REPO/FILE.gguf` paths are pulled (cache directory, token, progress, offline);
   * see pullModel. A local path ignores it.
   */
  pull?: PullOptions;
}

/** Expert-cache options of a MoE model (ignored for dense models). */
export interface ExpertOptions {
  /** 'global' (one pool of slots), 'per-layer', or 'auto' (default: the planner's cost model). */
  cache?: 'auto' | 'global' | 'per-layer';
  /** Eviction policy: 'least-stale' (default), 'lfu' (aged counts) or 'lru'. */
  policy?: 'lru' | 'lfu' | 'least-stale';
  /** Read the next layer's predicted experts while a layer computes (default true). */
  prefetch?: boolean;
  /** Layers whose experts are predicted and read ahead, 1-4 (default 1). */
  lookahead?: number;
}

/** Options of one generation. */
export interface GenerateOptions {
  /** Most tokens to generate (default: until the context is full). */
  maxTokens?: number;
  /** 0 = greedy; default 0.8. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  repeatPenalty?: number;
  repeatLastN?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Generation stops before the first occurrence of any of these; the stop text is not emitted. */
  stop?: string[];
  /** Keep generating past end-of-generation tokens (EOS, <|eot_id|>...): for benchmarks. Default false. */
  ignoreEos?: boolean;
  /** Prepend BOS to a string prompt (default: what the model file says). */
  addBos?: boolean;
  /**
   * Structured output: the text is JSON valid against this JSON Schema (generation ends when
   * the value is complete; finishReason 'length' means it was cut short and is not complete).
   * A schema keyword the grammar cannot enforce throws UnsupportedSchemaError.
   */
  jsonSchema?: object | boolean;
  /** Constrains the text to a GBNF / EBNF grammar (llama.cpp's notation; start rule `root`). */
  grammar?: string;
  /** The general form of the two options above (also `{ type: 'json_object' }`: any JSON object). */
  constraint?: GrammarSpec;
  /**
   * Log-probabilities of the generated tokens (in chunks and the result), with this many most
   * likely alternatives per token (0-20; 0: the chosen token's only). From the model's logits
   * before penalties, masks and temperature, as OpenAI reports them.
   */
  logprobs?: number;
  signal?: AbortSignal;
}

/** A piece of streamed output. */
export interface GenerateChunk {
  text: string;
  tokens: number[];
  /** With GenerateOptions.logprobs: one entry per token of `tokens`. */
  logprobs?: TokenLogprob[];
}

/** The outcome of a generation. */
export type GenerateResult = FinishedGeneration;

/** A running generation: its chunks as they come, and its result. */
export type Generation = AsyncIterable<GenerateChunk> & { result: Promise<GenerateResult> };

/** Facts about a loaded model. */
export interface ModelInfo {
  path: string;
  architecture: string;
  name: string;
  fileSize: number;
  numLayers: number;
  dim: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  ffnDim: number;
  vocabSize: number;
  /** Context length the model was trained with. */
  trainContextSize: number;
  /**
   * Tokens one sequence can hold in this engine: the contextSize given, else min(the file's
   * context length, 4096), else (under a memoryBudget that cannot hold that much KV) the
   * largest multiple of 256 tokens, at least 256, that it holds.
   */
  contextSize: number;
  parallel: number;
  threads: number;
  kv: KvLayout;
  bosId: number | null;
  eosId: number | null;
  chatTemplate: string | null;
  /**
   * How embed() pools token states: the file's `<arch>.pooling_type` (1 mean, 2 cls, 3 last),
   * else 'last' (decoder models, as llama.cpp's last-token embeddings).
   */
  pooling: Pooling;
}

/** A loaded model (see loadModel). */
export interface Model {
  readonly info: ModelInfo;
  tokenize(text: string, options?: { addBos?: boolean; special?: boolean }): Uint32Array;
  /** `continuation`: the tokens follow earlier text (keeps a SentencePiece first token's leading space). */
  detokenize(tokens: ArrayLike<number>, options?: { continuation?: boolean }): string;
  generate(prompt: string | Uint32Array, options?: GenerateOptions): Generation;
  /**
   * `n` choices from one prompt (OpenAI's `n`): the prompt is computed once and its K/V forked
   * for the other choices (shared chunks). Choice i > 0 samples with seed + i.
   */
  generateChoices(prompt: string | Uint32Array, n: number, options?: GenerateOptions): Generation[];
  complete(prompt: string | Uint32Array, options?: GenerateOptions): Promise<GenerateResult>;
  /**
   * The embedding of a text: the final-normed hidden states of its tokens pooled as
   * `info.pooling` says (or `pooling`), L2-normalized unless `normalize` is false. [dim]
   */
  embed(input: string | Uint32Array, options?: { pooling?: Pooling; normalize?: boolean }): Promise<Float32Array>;
  /** Logits of the last token, or of every token with allLogits: [n or 1, vocab]. */
  evaluate(tokens: Uint32Array, options?: { allLogits?: boolean }): Promise<Float32Array>;
  /** Engine statistics; `history` adds the memory split over time (pool.history). */
  stats(options?: { history?: boolean }): Promise<Record<string, unknown>>;
  /**
   * The error that stopped the engine (e.g. ModelFileChangedError: the model file changed
   * under a streaming model), or null while it can serve. Every later request fails with it.
   */
  failure(): Error | null;
  dispose(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export const MAX_BATCH_ROWS = 512;
/** The largest contextSize loadModel accepts (the CLI's --ctx-size too). */
export const MAX_CONTEXT_SIZE = 1 << 22;
/** The most sequences decoded together (parallel / --parallel). */
export const MAX_PARALLEL = 256;

/** The context a load takes without contextSize: min(the file's context length, 4096) (a budget may fit it lower: context-fit.ts). */
export function defaultContextSize(trainContextSize: number): number {
  return Math.min(trainContextSize > 0 ? trainContextSize : 4096, 4096);
}

function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidOptionError(name, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** The constraint of a generation from its options (at most one of jsonSchema / grammar / constraint). */
function grammarSpecOf(options: GenerateOptions): GrammarSpec | null {
  const given = (['jsonSchema', 'grammar', 'constraint'] as const).filter((k) => options[k] !== undefined);
  if (given.length > 1) throw new InvalidOptionError(given[1]!, `cannot be combined with ${given[0]}; give one constraint`);
  let spec: GrammarSpec | null = null;
  if (options.jsonSchema !== undefined) {
    if (typeof options.jsonSchema !== 'boolean' && (typeof options.jsonSchema !== 'object' || options.jsonSchema === null)) {
      throw new InvalidOptionError('jsonSchema', 'must be a JSON Schema object');
    }
    spec = { type: 'json_schema', schema: options.jsonSchema };
  } else if (options.grammar !== undefined) {
    if (typeof options.grammar !== 'string') throw new InvalidOptionError('grammar', 'must be a string of GBNF / EBNF rules');
    spec = { type: 'grammar', grammar: options.grammar };
  } else if (options.constraint !== undefined) spec = options.constraint;
  if (spec) checkGrammarSpec(spec); // typed errors here, before the request is queued
  return spec;
}

function checkExpertOptions(o: ExpertOptions | undefined): ExpertOptions | null {
  if (o === undefined) return null;
  if (o === null || typeof o !== 'object') throw new InvalidOptionError('experts', 'must be an object');
  if (o.cache !== undefined && !['auto', 'global', 'per-layer'].includes(o.cache)) throw new InvalidOptionError('experts.cache', `must be auto, global or per-layer, got ${JSON.stringify(o.cache)}`);
  if (o.policy !== undefined && !['lru', 'lfu', 'least-stale'].includes(o.policy)) throw new InvalidOptionError('experts.policy', `must be lru, lfu or least-stale, got ${JSON.stringify(o.policy)}`);
  if (o.prefetch !== undefined && typeof o.prefetch !== 'boolean') throw new InvalidOptionError('experts.prefetch', `must be a boolean, got ${JSON.stringify(o.prefetch)}`);
  if (o.lookahead !== undefined && !(Number.isInteger(o.lookahead) && o.lookahead >= 1 && o.lookahead <= MAX_LOOKAHEAD)) {
    throw new InvalidOptionError('experts.lookahead', `must be an integer from 1 to ${MAX_LOOKAHEAD}, got ${JSON.stringify(o.lookahead)}`);
  }
  return { ...o };
}

/** Loads a GGUF model: validates, reads the header and tokenizer here, weights in the worker. */
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<Model> {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidOptionError('path', 'must be a non-empty string');
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  const threads = checkInt('threads', options.threads ?? availableParallelism(), 1, 1024);
  const parallel = checkInt('parallel', options.parallel ?? 4, 1, MAX_PARALLEL);
  const kv = options.kv ?? 'vtensor';
  const prefixCache = options.prefixCache ?? true;
  if (typeof prefixCache !== 'boolean') throw new InvalidOptionError('prefixCache', `must be a boolean, got ${JSON.stringify(prefixCache)}`);
  if (!KV_LAYOUTS.includes(kv as KvLayout)) throw new InvalidOptionError('kv', `must be one of ${KV_LAYOUTS.join(', ')}, got ${JSON.stringify(kv)}`);
  if (options.contextSize !== undefined) checkInt('contextSize', options.contextSize, 1, MAX_CONTEXT_SIZE);
  const memoryPool = options.memoryPool ?? 'elastic';
  if (memoryPool !== 'elastic' && memoryPool !== 'static') throw new InvalidOptionError('memoryPool', `must be 'elastic' or 'static', got ${JSON.stringify(memoryPool)}`);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new InvalidOptionError('onProgress', 'must be a function');
  const signal = options.signal;
  signal?.throwIfAborted();

  if (isHubUri(path)) path = (await pullModel(path, { ...(signal ? { signal } : {}), ...options.pull })).path;
  const file = await readGguf(path);
  assertNotSplit(file);
  const config = modelConfigFromGguf(file);
  const tokenizer = tokenizerFromGguf(file);
  // The default context may shrink to what a memory budget holds (engine/context-fit.ts).
  const defaultContext = options.contextSize === undefined;
  let contextSize = options.contextSize ?? defaultContextSize(config.contextLength);
  // Validated here (typed error in the caller's thread); the worker's planner splits it.
  if (options.memoryBudget !== undefined) parseMemoryBudget(options.memoryBudget, file.fileSize, 'memoryBudget');
  if (options.kvFloor !== undefined) parseMemoryBudget(options.kvFloor, file.fileSize, 'kvFloor');
  signal?.throwIfAborted();

  const experts = checkExpertOptions(options.experts);
  const init: WorkerInit = { path, threads, contextSize, contextFit: defaultContext, parallel, kv, memoryBudget: options.memoryBudget ?? null, maxBatchRows: MAX_BATCH_ROWS, prefixCache, memoryPool, kvFloor: options.kvFloor ?? null, experts };
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      cleanup();
      void worker.terminate();
      reject(abortError(signal!));
    };
    const onMessage = (msg: FromWorker): void => {
      if (msg.type === 'progress') options.onProgress?.({ loadedBytes: msg.loadedBytes, totalBytes: msg.totalBytes });
      else if (msg.type === 'ready') {
        contextSize = msg.contextSize;
        cleanup();
        resolve();
      } else if (msg.type === 'error') {
        cleanup();
        void worker.terminate();
        reject(deserializeError(msg.error));
      }
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new Error(`engine worker exited with code ${code} while loading`));
    };
    const cleanup = (): void => {
      signal?.removeEventListener('abort', onAbort);
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
  const info: ModelInfo = {
    path,
    architecture: config.architecture,
    name: file.getString('general.name', ''),
    fileSize: file.fileSize,
    numLayers: config.numLayers,
    dim: config.dim,
    numHeads: config.numHeads,
    numKvHeads: config.numKvHeads,
    headDim: config.headDim,
    ffnDim: config.ffnDim,
    vocabSize: config.vocabSize,
    trainContextSize: config.contextLength,
    contextSize,
    parallel,
    threads,
    kv,
    bosId: tokenizer.bosId ?? null,
    eosId: tokenizer.eosId ?? null,
    chatTemplate: tokenizer.chatTemplate ?? null,
    pooling: poolingOf(file.get(`${config.architecture}.pooling_type`)),
  };
  return new EngineModel(worker, info, tokenizer, config, file);
}

/** GGUF pooling_type -> Pooling (0 = none and absent: last token, for decoder models). */
function poolingOf(v: unknown): Pooling {
  return v === 1 ? 'mean' : v === 2 ? 'cls' : 'last';
}

/** Per-request state on the main thread. */
interface Pending {
  chunks: GenerateChunk[];
  wake: (() => void) | null;
  finished: boolean;
  resolve(value: unknown): void;
  reject(err: unknown): void;
  onChunk?: (c: GenerateChunk) => void;
}

class EngineModel implements Model {
  readonly info: ModelInfo;
  private readonly worker: Worker;
  private readonly tokenizer: Tokenizer;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private disposed = false;
  private failure_: Error | null = null;
  private disposeWaiter: (() => void) | null = null;

  constructor(worker: Worker, info: ModelInfo, tokenizer: Tokenizer, _config: ModelConfig, _file: GgufFile) {
    this.worker = worker;
    this.info = info;
    this.tokenizer = tokenizer;
    worker.on('message', (msg: FromWorker) => this.onMessage(msg));
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => {
      if (!this.disposed) this.fail(new ModelDisposedError(`the engine worker exited (code ${code}); load the model again`));
      this.disposeWaiter?.();
    });
    // The worker must not keep the process alive when the user forgets dispose().
    worker.unref();
  }

  tokenize(text: string, options: { addBos?: boolean; special?: boolean } = {}): Uint32Array {
    const o: { addBos?: boolean; parseSpecial?: boolean } = { parseSpecial: options.special ?? false };
    if (options.addBos !== undefined) o.addBos = options.addBos;
    return this.tokenizer.encode(text, o);
  }

  detokenize(tokens: ArrayLike<number>, options: { continuation?: boolean } = {}): string {
    return this.tokenizer.decode(Array.from(tokens), options.continuation ? { continuation: true } : {});
  }

  generate(prompt: string | Uint32Array, options: GenerateOptions = {}): Generation {
    return this.generateChoices(prompt, 1, options)[0]!;
  }

  generateChoices(prompt: string | Uint32Array, n: number, options: GenerateOptions = {}): Generation[] {
    this.checkUsable();
    const tokens = typeof prompt === 'string' ? this.tokenize(prompt, { special: true, ...(options.addBos !== undefined ? { addBos: options.addBos } : {}) }) : prompt;
    if (!(tokens instanceof Uint32Array)) throw new InvalidOptionError('prompt', 'must be a string or a Uint32Array of token ids');
    this.checkTokens(tokens);
    const maxTokens = checkInt('maxTokens', options.maxTokens ?? this.info.contextSize, 0, Number.MAX_SAFE_INTEGER);
    const stop = options.stop ?? [];
    if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string')) throw new InvalidOptionError('stop', 'must be an array of strings');
    if (options.ignoreEos !== undefined && typeof options.ignoreEos !== 'boolean') throw new InvalidOptionError('ignoreEos', 'must be a boolean');
    const sampling: SamplingOptions = {};
    for (const k of ['temperature', 'topK', 'topP', 'minP', 'seed', 'repeatPenalty', 'repeatLastN', 'presencePenalty', 'frequencyPenalty'] as const) {
      if (options[k] !== undefined) sampling[k] = options[k];
    }
    const resolved = resolveSamplingOptions(sampling); // throws InvalidOptionError; fixes the seed here
    const numChoices = checkInt('n', n, 1, 64);
    const grammar = grammarSpecOf(options);
    const logprobs = options.logprobs === undefined ? -1 : checkInt('logprobs', options.logprobs, 0, 20);

    const ids = Array.from({ length: numChoices }, () => this.nextId++);
    const choices = ids.map((id) => this.generationHandle(id, options.signal));
    // Choice i > 0 draws with seed + i: with a seed, n choices are different and reproducible.
    const forks = ids.slice(1).map((id, i) => ({ id, sampling: { ...resolved, seed: (resolved.seed + i + 1) % Number.MAX_SAFE_INTEGER } }));
    this.post({ type: 'generate', id: ids[0]!, prompt: tokens, maxTokens, sampling: resolved, stop, ignoreEos: options.ignoreEos === true, grammar, logprobs, forks });
    return choices;
  }

  /** The streaming handle of generation `id` (its chunks, result and abort wiring). */
  private generationHandle(id: number, signal: AbortSignal | undefined): Generation {
    const p: Pending = { chunks: [], wake: null, finished: false, resolve: () => {}, reject: () => {} };
    const result = new Promise<GenerateResult>((resolve, reject) => {
      p.resolve = resolve as (v: unknown) => void;
      p.reject = reject;
    });
    result.catch(() => {}); // the iterator also reports failures; do not crash on an unobserved result
    this.track(id, p);
    if (signal) {
      const onAbort = (): void => this.post({ type: 'abort', id });
      if (signal.aborted) queueMicrotask(onAbort);
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        void result.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => {});
      }
    }

    const abortRequest = (): void => this.post({ type: 'abort', id });
    const iterate = async function* (): AsyncGenerator<GenerateChunk> {
      try {
        for (;;) {
          while (p.chunks.length > 0) yield p.chunks.shift()!;
          if (p.finished) break;
          await new Promise<void>((r) => (p.wake = r));
        }
        await result; // rethrows a failure
      } finally {
        // The consumer left the loop early (break, throw): stop generating for it.
        if (!p.finished) abortRequest();
      }
    };
    return { [Symbol.asyncIterator]: iterate, result };
  }

  async complete(prompt: string | Uint32Array, options: GenerateOptions = {}): Promise<GenerateResult> {
    return this.generate(prompt, options).result;
  }

  async evaluate(tokens: Uint32Array, options: { allLogits?: boolean } = {}): Promise<Float32Array> {
    this.checkUsable();
    if (!(tokens instanceof Uint32Array)) throw new InvalidOptionError('tokens', 'must be a Uint32Array of token ids');
    this.checkTokens(tokens);
    const id = this.nextId++;
    return new Promise<Float32Array>((resolve, reject) => {
      this.track(id, { chunks: [], wake: null, finished: false, resolve: resolve as (v: unknown) => void, reject });
      this.post({ type: 'evaluate', id, tokens, allLogits: options.allLogits === true });
    });
  }

  async embed(input: string | Uint32Array, options: { pooling?: Pooling; normalize?: boolean } = {}): Promise<Float32Array> {
    this.checkUsable();
    const tokens = typeof input === 'string' ? this.tokenize(input, { special: true }) : input;
    if (!(tokens instanceof Uint32Array)) throw new InvalidOptionError('input', 'must be a string or a Uint32Array of token ids');
    this.checkTokens(tokens);
    const pooling = options.pooling ?? this.info.pooling;
    if (!['mean', 'cls', 'last'].includes(pooling)) throw new InvalidOptionError('pooling', `must be 'mean', 'cls' or 'last', got ${JSON.stringify(pooling)}`);
    const id = this.nextId++;
    const v = await new Promise<Float32Array>((resolve, reject) => {
      this.track(id, { chunks: [], wake: null, finished: false, resolve: resolve as (v: unknown) => void, reject });
      this.post({ type: 'embed', id, tokens, pooling });
    });
    if (options.normalize === false) return v;
    // L2-normalized, as llama-server's embeddings are by default.
    let norm = 0;
    for (const x of v) norm += x * x;
    norm = Math.sqrt(norm);
    if (norm > 0) for (let i = 0; i < v.length; i++) v[i]! /= norm;
    return v;
  }

  async stats(options: { history?: boolean } = {}): Promise<Record<string, unknown>> {
    this.checkUsable();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.track(id, { chunks: [], wake: null, finished: false, resolve: resolve as (v: unknown) => void, reject });
      this.post({ type: 'stats', id, history: options.history === true });
    });
  }

  failure(): Error | null {
    return this.failure_;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const exited = new Promise<void>((r) => (this.disposeWaiter = r));
    this.failAll(new ModelDisposedError());
    this.worker.ref(); // keep the process alive until the worker has let go of its memory
    this.post({ type: 'dispose' });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    await this.worker.terminate();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  // --- internals ---

  private checkUsable(): void {
    if (this.disposed) throw new ModelDisposedError();
    if (this.failure_) throw this.failure_;
  }

  private checkTokens(tokens: Uint32Array): void {
    if (tokens.length === 0) throw new InvalidOptionError('prompt', 'is empty (no tokens); give some text or set addBos');
    if (tokens.length > this.info.contextSize) throw new ContextOverflowError(tokens.length, this.info.contextSize);
    for (const t of tokens) {
      if (t >= this.info.vocabSize) throw new InvalidOptionError('prompt', `token id ${t} is outside the vocabulary [0, ${this.info.vocabSize})`);
    }
  }

  /** Keeps the process alive while requests are pending (the worker is unref'd when idle). */
  private track(id: number, p: Pending): void {
    if (this.pending.size === 0) this.worker.ref();
    this.pending.set(id, p);
  }

  private untrack(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
  }

  private post(msg: ToWorker): void {
    if (!this.disposed || msg.type === 'dispose') this.worker.postMessage(msg);
  }

  private onMessage(msg: FromWorker): void {
    if (msg.type === 'disposed') {
      this.disposeWaiter?.();
      return;
    }
    if (msg.type === 'progress' || msg.type === 'ready') return;
    if (msg.type === 'error' && msg.id === null) return this.fail(deserializeError(msg.error));
    const id = msg.id as number;
    const p = this.pending.get(id);
    if (!p) return;
    switch (msg.type) {
      case 'chunk': {
        const c = { text: msg.text, tokens: msg.tokens, ...(msg.logprobs ? { logprobs: msg.logprobs } : {}) };
        if (c.text.length > 0 || c.tokens.length > 0) p.chunks.push(c);
        break;
      }
      case 'done':
        this.untrack(id);
        p.finished = true;
        p.resolve(msg.result);
        break;
      case 'logits':
        this.untrack(id);
        p.resolve(msg.logits);
        break;
      case 'stats':
        this.untrack(id);
        p.resolve(msg.stats);
        break;
      case 'error':
        this.untrack(id);
        p.finished = true;
        p.reject(deserializeError(msg.error));
        break;
    }
    p.wake?.();
    p.wake = null;
  }

  private fail(err: Error): void {
    this.failure_ ??= err;
    this.failAll(err);
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      this.untrack(id);
      p.finished = true;
      p.reject(err);
      p.wake?.();
      p.wake = null;
    }
  }
}
