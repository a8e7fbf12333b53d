/**
 * The default context under a memory budget. loadModel's contextSize defaults to
 * min(the file's context length, 4096); under a budget that cannot hold that much KV (Qwen3-0.6B
 * keeps 112 KiB of K/V per token, 455 MiB for one 4096-token sequence: more than the Q4_K_M
 * weights), a load without an explicit contextSize takes the largest context, in whole steps
 * of CONTEXT_STEP tokens and at least MIN_FITTED_CONTEXT, that the budget holds, as
 * node-llama-cpp's contextSize "auto" fits the context to the memory there is. An explicit
 * contextSize (or kvFloor, which sets the KV share itself) is never changed: a budget too small
 * for it is the caller's InsufficientMemoryError, as before.
 */
import { InsufficientMemoryError } from '../errors.js';
import type { GgufFile } from '../gguf/reader.js';
import type { ModelConfig } from '../models/config.js';
import { createEngineMemory, type EngineMemory } from './memory.js';
import type { WorkerInit } from './protocol.js';

/** A fitted context is a multiple of this many tokens. */
export const CONTEXT_STEP = 256;
/** The smallest context a load picks by itself; below it the budget error stands. */
export const MIN_FITTED_CONTEXT = 256;

/** Contexts a fitting load tries after `contextSize`, largest first. */
export function fittedContexts(contextSize: number): number[] {
  const out: number[] = [];
  for (let c = Math.floor((contextSize - 1) / CONTEXT_STEP) * CONTEXT_STEP; c >= MIN_FITTED_CONTEXT; c -= CONTEXT_STEP) out.push(c);
  return out;
}

/**
 * createEngineMemory at init.contextSize; when the context is the default (init.contextFit) and
 * the budget is too small for it, at the largest fitted context that loads. Each refused size
 * costs a plan, not a load: the planner refuses before any weight is read. When none fits, the
 * error is the smallest context's, whose minimum is the least memory the model runs in.
 */
export async function createFittedMemory(
  file: GgufFile,
  config: ModelConfig,
  init: WorkerInit,
  onProgress: (done: number, total: number) => void,
): Promise<{ memory: EngineMemory; contextSize: number }> {
  const at = async (contextSize: number) => ({ memory: await createEngineMemory(file, config, { ...init, contextSize }, onProgress), contextSize });
  if (init.contextFit !== true || init.memoryBudget === null || init.kvFloor !== null) return at(init.contextSize);
  let last: unknown;
  for (const ctx of [init.contextSize, ...fittedContexts(init.contextSize)]) {
    try {
      return await at(ctx);
    } catch (err) {
      if (!(err instanceof InsufficientMemoryError)) throw err;
      last = err;
    }
  }
  throw last;
}
