/**
 * Token sampling: penalties, top-k, top-p, min-p, temperature, seeded draws.
 *
 * NOTE: the order follows llama.cpp's default sampler chain (common/sampling.cpp):
 *   penalties -> top-k -> top-p -> min-p -> temperature -> draw
 * so top-p and min-p look at the untempered distribution, as they do there. Temperature 0
 * (or below) is greedy: the argmax after penalties.
 */
import { InvalidOptionError } from '../errors.js';

/** Sampling settings of one request. */
export interface SamplingOptions {
  /** 0 = greedy. Default 0.8. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off. Default 40. */
  topK?: number;
  /** Keep the smallest set of tokens whose probability sums to at least p; 1 = off. Default 0.95. */
  topP?: number;
  /** Drop tokens less likely than minP * (probability of the best token); 0 = off. Default 0.05. */
  minP?: number;
  /** Divide positive / multiply negative logits of recently seen tokens; 1 = off (default, as in llama.cpp). */
  repeatPenalty?: number;
  /** How many recent tokens the penalties look at; -1 = all. Default 64. */
  repeatLastN?: number;
  /** Subtracted once from the logit of every recent token. Default 0. */
  presencePenalty?: number;
  /** Subtracted per occurrence from the logit of every recent token. Default 0. */
  frequencyPenalty?: number;
  /** Seed of the random draws; same seed -> same output. Default: random. */
  seed?: number;
}

/** Options after defaults and validation. */
export type ResolvedSamplingOptions = Required<SamplingOptions>;

export const DEFAULT_SAMPLING: Readonly<Omit<ResolvedSamplingOptions, 'seed'>> = {
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  // llama.cpp's default since 2024 (and node-llama-cpp's): no repetition penalty.
  repeatPenalty: 1.0,
  repeatLastN: 64,
  presencePenalty: 0,
  frequencyPenalty: 0,
};

function checkNumber(name: string, v: unknown, min: number, max: number, integer = false): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    const kind = integer ? 'an integer' : 'a number';
    throw new InvalidOptionError(name, `must be ${kind} in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
}

/** Applies defaults and validates; throws InvalidOptionError naming the bad option. */
export function resolveSamplingOptions(options: SamplingOptions = {}): ResolvedSamplingOptions {
  const o = { ...DEFAULT_SAMPLING, seed: Math.floor(Math.random() * 0x1_0000_0000), ...stripUndefined(options) };
  checkNumber('temperature', o.temperature, 0, 100);
  checkNumber('topK', o.topK, 0, 1e9, true);
  checkNumber('topP', o.topP, 0, 1);
  checkNumber('minP', o.minP, 0, 1);
  checkNumber('repeatPenalty', o.repeatPenalty, 0.01, 100);
  checkNumber('repeatLastN', o.repeatLastN, -1, 1e9, true);
  checkNumber('presencePenalty', o.presencePenalty, -100, 100);
  checkNumber('frequencyPenalty', o.frequencyPenalty, -100, 100);
  checkNumber('seed', o.seed, 0, Number.MAX_SAFE_INTEGER, true);
  return o;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/**
 * Seeded PRNG: splitmix64 seeding into xoshiro128**, drawing uniform floats in [0, 1).
 * Small, fast and good enough for sampling; not for cryptography.
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    // splitmix32 over the two halves of the seed gives four well-mixed state words.
    let x = (seed >>> 0) ^ Math.floor(seed / 0x1_0000_0000);
    const next = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32 random bits. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Samples tokens for one sequence. Keeps its own RNG state and the token history the
 * penalties need (the prompt is added with `accept` too, as llama.cpp does).
 */
export class Sampler {
  readonly options: ResolvedSamplingOptions;
  private readonly rng: Rng;
  private readonly history: number[] = [];
  // Reused scratch: candidate ids and their logits / probabilities.
  private ids = new Int32Array(0);
  private vals = new Float32Array(0);

  constructor(options: SamplingOptions = {}) {
    this.options = resolveSamplingOptions(options);
    this.rng = new Rng(this.options.seed);
  }

  /** Records tokens (prompt or generated) for the repetition penalties. */
  accept(tokens: ArrayLike<number>): void {
    for (let i = 0; i < tokens.length; i++) this.history.push(tokens[i]!);
    // Keep the history bounded; the penalties look at the last repeatLastN only.
    const keep = this.options.repeatLastN < 0 ? Infinity : Math.max(this.options.repeatLastN, 1) * 4;
    if (this.history.length > keep + 4096) this.history.splice(0, this.history.length - keep);
  }

  /**
   * Picks the next token from `logits[offset, offset + vocabSize)`. Does not modify logits.
   * With `mask` (a token bitmask, see engine/constraint.ts) only the tokens it allows can be
   * picked: the others' logits become -Infinity before any other step, so top-k / top-p /
   * min-p and the draw see the allowed tokens only.
   * Does not record the picked token: call accept([token]) once it is kept.
   */
  sample(logits: Float32Array, vocabSize: number, offset = 0, mask?: Int32Array): number {
    const o = this.options;
    if (this.ids.length < vocabSize) {
      this.ids = new Int32Array(vocabSize);
      this.vals = new Float32Array(vocabSize);
    }
    const vals = this.vals;
    for (let i = 0; i < vocabSize; i++) vals[i] = logits[offset + i]!;
    if (mask) applyMask(vals, vocabSize, mask);
    this.applyPenalties(vals, vocabSize);

    if (o.temperature <= 0) return argmaxOf(vals, vocabSize);

    // Candidates: all tokens, then narrowed by top-k / top-p / min-p.
    const ids = this.ids;
    for (let i = 0; i < vocabSize; i++) ids[i] = i;
    let n = vocabSize;
    if (o.topK > 0 && o.topK < n) n = selectTopK(ids, vals, n, o.topK);
    if (o.topP < 1) n = this.nucleus(ids, vals, n, o.topP);
    if (o.minP > 0) n = keepMinP(ids, vals, n, o.minP);

    // Temperature, softmax over the survivors, draw.
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, vals[ids[i]!]!);
    let sum = 0;
    const probs = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const p = Math.exp((vals[ids[i]!]! - max) / o.temperature);
      probs[i] = p;
      sum += p;
    }
    let r = this.rng.nextFloat() * sum;
    let last = ids[0]!;
    for (let i = 0; i < n; i++) {
      if (probs[i]! === 0) continue; // a masked token (logit -Infinity) is never drawn
      last = ids[i]!;
      r -= probs[i]!;
      if (r < 0) return last;
    }
    return last; // rounding left r >= 0: the last token with probability > 0
  }

  private applyPenalties(vals: Float32Array, vocabSize: number): void {
    const o = this.options;
    if (o.repeatPenalty === 1 && o.presencePenalty === 0 && o.frequencyPenalty === 0) return;
    const lastN = o.repeatLastN < 0 ? this.history.length : Math.min(o.repeatLastN, this.history.length);
    if (lastN === 0) return;
    const counts = new Map<number, number>();
    for (let i = this.history.length - lastN; i < this.history.length; i++) {
      const t = this.history[i]!;
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    for (const [t, count] of counts) {
      if (t < 0 || t >= vocabSize) continue;
      let v = vals[t]!;
      // llama.cpp: divide positive logits, multiply negative ones, so the penalty always lowers.
      v = v > 0 ? v / o.repeatPenalty : v * o.repeatPenalty;
      v -= count * o.frequencyPenalty + (count > 0 ? o.presencePenalty : 0);
      vals[t] = v;
    }
  }

  /** Keeps the smallest most-likely set whose probability (untempered) sums to >= p. */
  private nucleus(ids: Int32Array, vals: Float32Array, n: number, p: number): number {
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, vals[ids[i]!]!);
    let total = 0;
    for (let i = 0; i < n; i++) total += Math.exp(vals[ids[i]!]! - max);
    // Sort only the tokens above a probability floor; if they already sum to >= p, the
    // nucleus lies inside them (every excluded token is less likely than every included one).
    let floor = Math.log(1e-4);
    for (;;) {
      let m = 0;
      let mass = 0;
      for (let i = 0; i < n; i++) {
        const id = ids[i]!;
        const lp = vals[id]! - max;
        if (lp >= floor) {
          const tmp = ids[m]!;
          ids[m] = id;
          ids[i] = tmp;
          mass += Math.exp(lp);
          m++;
        }
      }
      if (mass / total >= p || m === n) {
        const sub = Array.from(ids.subarray(0, m)).sort((a, b) => vals[b]! - vals[a]! || a - b);
        let cum = 0;
        let keep = 0;
        for (const id of sub) {
          ids[keep++] = id;
          cum += Math.exp(vals[id]! - max) / total;
          if (cum >= p) break;
        }
        return Math.max(keep, 1);
      }
      floor *= 2; // widen: more tokens needed to reach p
    }
  }
}

/** Sets vals[t] = -Infinity for every token t the bitmask does not allow. */
export function applyMask(vals: Float32Array, vocabSize: number, mask: Int32Array): void {
  const words = (vocabSize + 31) >>> 5;
  for (let w = 0; w < words; w++) {
    const bits = mask[w]!;
    if (bits === -1) continue; // all 32 allowed
    const base = w << 5;
    const end = Math.min(base + 32, vocabSize);
    for (let t = base; t < end; t++) if ((bits & (1 << (t - base))) === 0) vals[t] = -Infinity;
  }
}

/** Index of the largest value (first one on ties), as llama.cpp's greedy sampler. */
export function argmaxOf(vals: Float32Array, n: number, offset = 0): number {
  let best = 0;
  let bestVal = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = vals[offset + i]!;
    if (v > bestVal) {
      bestVal = v;
      best = i;
    }
  }
  return best;
}

/** Moves the k largest candidates (ties: lower id first) to ids[0, k); returns k. */
function selectTopK(ids: Int32Array, vals: Float32Array, n: number, k: number): number {
  // A partial sort through a small min-heap of size k: O(n log k).
  const heap = new Int32Array(k);
  let size = 0;
  const less = (a: number, b: number): boolean => vals[a]! < vals[b]! || (vals[a] === vals[b] && a > b);
  const siftDown = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let s = i;
      if (l < size && less(heap[l]!, heap[s]!)) s = l;
      if (r < size && less(heap[r]!, heap[s]!)) s = r;
      if (s === i) return;
      const t = heap[i]!;
      heap[i] = heap[s]!;
      heap[s] = t;
      i = s;
    }
  };
  for (let i = 0; i < n; i++) {
    const id = ids[i]!;
    if (size < k) {
      heap[size] = id;
      let j = size++;
      while (j > 0) {
        const parent = (j - 1) >> 1;
        if (!less(heap[j]!, heap[parent]!)) break;
        const t = heap[j]!;
        heap[j] = heap[parent]!;
        heap[parent] = t;
        j = parent;
      }
    } else if (less(heap[0]!, id)) {
      heap[0] = id;
      siftDown(0);
    }
  }
  const sorted = Array.from(heap.subarray(0, size)).sort((a, b) => vals[b]! - vals[a]! || a - b);
  for (let i = 0; i < sorted.length; i++) ids[i] = sorted[i]!;
  return sorted.length;
}

/** Keeps candidates with probability >= minP * max probability (order kept). */
function keepMinP(ids: Int32Array, vals: Float32Array, n: number, minP: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, vals[ids[i]!]!);
  const threshold = max + Math.log(minP);
  let m = 0;
  for (let i = 0; i < n; i++) {
    const id = ids[i]!;
    if (vals[id]! >= threshold) ids[m++] = id;
  }
  return Math.max(m, 1);
}

/** A generated token's log-probability and the most likely tokens at its position (OpenAI's logprobs). */
export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The `numTop` most likely tokens, most likely first. */
  top: Array<{ token: number; logprob: number }>;
}

/**
 * log-softmax of `logits[offset, offset + vocabSize)` at `token`, and the `numTop` most likely
 * tokens. NOTE: computed from the model's logits as the sampler received them, before
 * penalties, masks and temperature, as OpenAI reports logprobs (of the model's distribution,
 * not of the sampling settings).
 */
export function tokenLogprob(logits: Float32Array, vocabSize: number, offset: number, token: number, numTop: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < vocabSize; i++) max = Math.max(max, logits[offset + i]!);
  let sum = 0;
  for (let i = 0; i < vocabSize; i++) sum += Math.exp(logits[offset + i]! - max);
  const logZ = max + Math.log(sum);
  // The numTop largest (numTop <= 20): a small sorted list, descending.
  const topIds: number[] = [];
  const topVals: number[] = [];
  for (let i = 0; i < vocabSize && numTop > 0; i++) {
    const v = logits[offset + i]!;
    if (topIds.length === numTop && v <= topVals[numTop - 1]!) continue;
    let k = topIds.length === numTop ? numTop - 1 : topIds.length;
    while (k > 0 && topVals[k - 1]! < v) k--;
    topIds.splice(k, 0, i);
    topVals.splice(k, 0, v);
    if (topIds.length > numTop) {
      topIds.pop();
      topVals.pop();
    }
  }
  return { token, logprob: logits[offset + token]! - logZ, top: topIds.map((t, k) => ({ token: t, logprob: topVals[k]! - logZ })) };
}
