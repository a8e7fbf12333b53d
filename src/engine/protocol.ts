/**
 * Messages between the main thread (src/engine/model.ts) and the engine worker
 * (src/engine/worker.ts), and error (de)serialization across the thread boundary.
 * @internal
 */
import * as errors from '../errors.js';
import type { SamplingOptions, TokenLogprob } from './sampling.js';
import type { KvLayout } from '../kv/layouts.js';
import type { FinishedGeneration, Pooling } from './scheduler.js';
import type { GrammarSpec } from '../grammar/engine.js';
import type { ExpertOptions } from './model.js';

/** workerData of the engine worker. */
export interface WorkerInit {
  path: string;
  threads: number;
  contextSize: number;
  /** contextSize is the default, not the caller's: under a budget it may shrink to fit (context-fit.ts). */
  contextFit?: boolean;
  parallel: number;
  kv: KvLayout;
  /** As given to loadModel ("2GiB", "75%", bytes), or null for no budget (all resident). */
  memoryBudget: string | number | null;
  /** Rows per forward pass (decode rows + prefill chunk). */
  maxBatchRows: number;
  /** Reuse cached prefixes across requests. */
  prefixCache: boolean;
  /** Budget split: the elastic pool (default with vtensor) or a static KV reservation. */
  memoryPool: 'elastic' | 'static';
  /** Elastic KV floor as given to loadModel, or null for one full-context sequence. */
  kvFloor: string | number | null;
  /** MoE expert-cache options (null: defaults). */
  experts: ExpertOptions | null;
}

/** Main -> worker. */
export type ToWorker =
  | { type: 'generate'; id: number; prompt: Uint32Array; maxTokens: number; sampling: SamplingOptions; stop: string[]; ignoreEos: boolean; grammar: GrammarSpec | null; logprobs: number; forks: Array<{ id: number; sampling: SamplingOptions }> }
  | { type: 'evaluate'; id: number; tokens: Uint32Array; allLogits: boolean }
  | { type: 'embed'; id: number; tokens: Uint32Array; pooling: Pooling }
  | { type: 'abort'; id: number }
  | { type: 'stats'; id: number; history?: boolean }
  | { type: 'dispose' };

/** Worker -> main. */
export type FromWorker =
  | { type: 'progress'; loadedBytes: number; totalBytes: number }
  | { type: 'ready'; weights: Record<string, unknown>; contextSize: number }
  | { type: 'chunk'; id: number; text: string; tokens: number[]; logprobs?: TokenLogprob[] }
  | { type: 'done'; id: number; result: FinishedGeneration }
  | { type: 'logits'; id: number; logits: Float32Array; numRows: number }
  | { type: 'stats'; id: number; stats: Record<string, unknown> }
  | { type: 'error'; id: number | null; error: SerializedError }
  | { type: 'disposed' };

/** An error as plain data. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  fields: Record<string, unknown>;
}

/** Plain-data form of an error (own enumerable fields kept: code, numbers, ...). */
export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const fields: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(err)) {
      if (v === null || ['string', 'number', 'boolean'].includes(typeof v) || Array.isArray(v)) fields[k] = v;
    }
    return { name: err.name, message: err.message, stack: err.stack, fields };
  }
  return { name: 'Error', message: String(err), fields: {} };
}

/** Rebuilds an error; flexinfer's own classes come back as instances of themselves. */
export function deserializeError(e: SerializedError): Error {
  const cls = (errors as Record<string, unknown>)[e.name];
  const proto = typeof cls === 'function' && cls.prototype instanceof Error ? (cls.prototype as object) : Error.prototype;
  const err = Object.create(proto) as Error;
  Object.defineProperty(err, 'message', { value: e.message, writable: true, configurable: true });
  Object.defineProperty(err, 'name', { value: e.name, writable: true, configurable: true });
  if (e.stack) Object.defineProperty(err, 'stack', { value: e.stack, writable: true, configurable: true });
  Object.assign(err, e.fields);
  return err;
}
