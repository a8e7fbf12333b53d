/**
 * Command-line pieces shared by the commands: number options with clear errors, and the
 * model-loading and sampling flags that run, chat, serve and bench have in common.
 */
import { readFileSync } from 'node:fs';
import { InvalidOptionError } from '../errors.js';
import { parseMemoryBudget } from '../weights/budget.js';
import type { GenerateOptions, LoadModelOptions } from '../index.js';
import { KV_LAYOUTS, type KvLayout } from '../kv/layouts.js';
import { MAX_LOOKAHEAD } from '../weights/expert-scheduler.js';
import { MAX_CONTEXT_SIZE } from '../engine/model.js';

/**
 * A numeric flag's value, or undefined when absent. Errors name the flag and say what is
 * wanted: "--top-p: must be in [0, 1], got '2'".
 */
export function numberOption(flag: string, v: string | undefined, limits: { min?: number; max?: number; integer?: boolean } = {}): number | undefined {
  if (v === undefined) return undefined;
  const name = `--${flag}`;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidOptionError(name, `must be a number, got '${v}'`);
  if (limits.integer && !Number.isInteger(n)) throw new InvalidOptionError(name, `must be an integer, got '${v}'`);
  const { min, max } = limits;
  if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
    throw new InvalidOptionError(name, max === undefined ? `must be at least ${min}, got '${v}'` : `must be in [${min ?? '-inf'}, ${max}], got '${v}'`);
  }
  return n;
}

/** parseArgs specs of the flags that say how to load a model. */
export const MODEL_FLAGS = {
  threads: { type: 'string', short: 't' },
  'ctx-size': { type: 'string', short: 'c' },
  'memory-budget': { type: 'string' },
  kv: { type: 'string' },
  'memory-pool': { type: 'string' },
  'kv-floor': { type: 'string' },
  'expert-cache': { type: 'string' },
  'expert-policy': { type: 'string' },
  'no-expert-prefetch': { type: 'boolean' },
  'expert-lookahead': { type: 'string' },
} as const;

/** Help lines of the MoE flags of MODEL_FLAGS. */
export const EXPERT_FLAGS_HELP = `      --expert-cache MODE  MoE models under a budget: auto (default), global or per-layer
      --expert-policy P    MoE expert-cache eviction: least-stale (default), lfu or lru
      --no-expert-prefetch MoE: do not read the next layer's predicted experts ahead
      --expert-lookahead N MoE: predict and read the experts of the next N layers (1-4, default 1)
`;

/** parseArgs specs of the flags that say how to generate. */
export const SAMPLING_FLAGS = {
  'n-predict': { type: 'string', short: 'n' },
  temp: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  'repeat-penalty': { type: 'string' },
  seed: { type: 'string' },
  'json-schema': { type: 'string' },
  grammar: { type: 'string' },
} as const;

type FlagValues = Record<string, string | boolean | undefined>;

/** LoadModelOptions from MODEL_FLAGS values (the budget's syntax is checked here already). */
export function loadOptionsFrom(values: FlagValues): LoadModelOptions {
  const load: LoadModelOptions = {};
  const threads = numberOption('threads', values.threads as string | undefined, { min: 1, max: 1024, integer: true });
  if (threads !== undefined) load.threads = threads;
  const ctx = numberOption('ctx-size', values['ctx-size'] as string | undefined, { min: 1, max: MAX_CONTEXT_SIZE, integer: true });
  if (ctx !== undefined) load.contextSize = ctx;
  const kv = values.kv as string | undefined;
  if (kv !== undefined) {
    if (!(KV_LAYOUTS as readonly string[]).includes(kv)) throw new InvalidOptionError('--kv', `must be one of ${KV_LAYOUTS.join(', ')}, got '${kv}'`);
    load.kv = kv as KvLayout;
  }
  const expertCache = values['expert-cache'] as string | undefined;
  const expertPolicy = values['expert-policy'] as string | undefined;
  const lookahead = numberOption('expert-lookahead', values['expert-lookahead'] as string | undefined, { min: 1, max: MAX_LOOKAHEAD, integer: true });
  if (expertCache !== undefined || expertPolicy !== undefined || values['no-expert-prefetch'] === true || lookahead !== undefined) {
    if (expertCache !== undefined && !['auto', 'global', 'per-layer'].includes(expertCache)) throw new InvalidOptionError('--expert-cache', `must be auto, global or per-layer, got '${expertCache}'`);
    if (expertPolicy !== undefined && !['lru', 'lfu', 'least-stale'].includes(expertPolicy)) throw new InvalidOptionError('--expert-policy', `must be least-stale, lfu or lru, got '${expertPolicy}'`);
    load.experts = {
      ...(expertCache !== undefined ? { cache: expertCache as 'auto' | 'global' | 'per-layer' } : {}),
      ...(expertPolicy !== undefined ? { policy: expertPolicy as 'lru' | 'lfu' | 'least-stale' } : {}),
      ...(values['no-expert-prefetch'] === true ? { prefetch: false } : {}),
      ...(lookahead !== undefined ? { lookahead } : {}),
    };
  }
  const budget = values['memory-budget'] as string | undefined;
  if (budget !== undefined) {
    // Syntax only here (a percentage is of the file's size, which loadModel knows).
    parseMemoryBudget(budget, 2 ** 40, '--memory-budget');
    load.memoryBudget = budget;
  }
  const pool = values['memory-pool'] as string | undefined;
  if (pool !== undefined) {
    if (pool !== 'elastic' && pool !== 'static') throw new InvalidOptionError('--memory-pool', `must be elastic or static, got '${pool}'`);
    load.memoryPool = pool;
  }
  const floor = values['kv-floor'] as string | undefined;
  if (floor !== undefined) {
    parseMemoryBudget(floor, 2 ** 40, '--kv-floor');
    load.kvFloor = floor;
  }
  return load;
}

/** GenerateOptions from SAMPLING_FLAGS values. */
export function generateOptionsFrom(values: FlagValues, defaultMaxTokens: number): GenerateOptions {
  const get = (flag: keyof typeof SAMPLING_FLAGS): string | undefined => values[flag] as string | undefined;
  const gen: GenerateOptions = { maxTokens: numberOption('n-predict', get('n-predict'), { min: 1, integer: true }) ?? defaultMaxTokens };
  const set = <K extends keyof GenerateOptions>(key: K, v: GenerateOptions[K] | undefined): void => {
    if (v !== undefined) gen[key] = v;
  };
  set('temperature', numberOption('temp', get('temp'), { min: 0 }));
  set('topK', numberOption('top-k', get('top-k'), { min: 0, integer: true }));
  set('topP', numberOption('top-p', get('top-p'), { min: 0, max: 1 }));
  set('minP', numberOption('min-p', get('min-p'), { min: 0, max: 1 }));
  set('repeatPenalty', numberOption('repeat-penalty', get('repeat-penalty'), { min: 0 }));
  set('seed', numberOption('seed', get('seed'), { min: 0, integer: true }));
  const schemaFile = get('json-schema');
  const grammarFile = get('grammar');
  if (schemaFile !== undefined && grammarFile !== undefined) throw new InvalidOptionError('--grammar', 'cannot be combined with --json-schema; give one');
  if (schemaFile !== undefined) {
    try {
      gen.jsonSchema = JSON.parse(readFileSync(schemaFile, 'utf8')) as object;
    } catch (err) {
      throw new InvalidOptionError('--json-schema', `cannot read a JSON Schema from '${schemaFile}': ${(err as Error).message}`);
    }
  }
  if (grammarFile !== undefined) {
    try {
      gen.grammar = readFileSync(grammarFile, 'utf8');
    } catch (err) {
      throw new InvalidOptionError('--grammar', `cannot read '${grammarFile}': ${(err as Error).message}`);
    }
  }
  return gen;
}
