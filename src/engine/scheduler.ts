/**
 * Continuous-batching scheduler: owns the request queues, builds one batch per step from the
 * decode rows of all running sequences plus a bounded chunk of prefill, runs ONE forward pass,
 * samples, and reports text, tokens and logits through callbacks.
 *
 * NOTE (policy):
 * - Admission is FCFS by KV space: the head of the queue is admitted when the KV manager can
 *   hold its tokens (a prefix-cache hit via kv.matchPrefix() saves the matched part); if not,
 *   it and everything behind it waits. At most `maxRunning` sequences run at once.
 * - Admission also looks ahead (layouts that map on demand, kv.countRoom()): while others run,
 *   a sequence is admitted only if the pool could give every running sequence and the newcomer
 *   their next tokens (the rest of their max tokens, at most `admitAheadTokens` each), counted
 *   without mapping anything, from free chunks, weights the elastic pool may demote, and
 *   cached prefixes that no waiting request will hit. So the pool is not filled with
 *   sequences it cannot carry to the end, which would pause or preempt later, and the prompts
 *   the next requests reuse stay cached. (16 streams of 512-token prompts + 32 tokens at 50%
 *   of tinyllama: KV holds 8 such sequences to the end; admitting 12 sent 3 back, paused 2 for
 *   ~30 passes and left a tail of short passes: 206 passes over the sweep against 182, 0.92x
 *   of the static split. Reserving the room by mapping it instead evicted the next requests'
 *   cached prompts: 14.38 against 18.79 tok/s. Counting it: 8 at once, 182 passes, 1.13x of
 *   static, median of 3 runs, README "Admission that counts ahead".)
 * - A request behind the head never holds the head back: when the head does not fit while
 *   the cached prompts of all the next requests are kept, it keeps those of the nearest ones
 *   that still let it in (the farthest go first). Keeping them all ran one sequence at a time:
 *   16 streams of 1024-token prompts after the 8-stream phase (a scheduler-only replay with
 *   the bench's pools) ran the first three alone, 32 passes each, because every cached block
 *   was some later request's prompt: 203 passes against 134 now (static split 140 -> 132), for
 *   ~900 more prompt tokens recomputed.
 * - Each step takes every decoding sequence's single row first (latency), then fills the
 *   rest of `maxRows` with prefill chunks in admission order. The logit rows of one step are
 *   bounded by `maxLogitRows` (evaluate with allLogits is chunked by it).
 * - When a running sequence cannot grow (ensure() false), it first PAUSES: it gets no rows
 *   this step while the others run, and takes its row again once a finished sequence has
 *   freed chunks (no new sequence is admitted while one is paused, so freed chunks go to it).
 *   First, while the newest running sequence has computed nothing (admitted, prefill not
 *   started), it is preempted: that frees its chunks at no cost. Then a pause is allowed
 *   only while at least as many sequences decode in the step as wait, and one of them is due
 *   to finish within what is left of `maxPauseSteps` consecutive paused steps (else nothing
 *   would free chunks in time). Otherwise the newest running sequence is preempted and the
 *   step rebuilt (which may pause fewer). A preempted sequence's KV is released and it is
 *   requeued at the head to recompute its tokens (prompt + generated so far) later; its
 *   sampler and emitted text are kept, so the output does not change. Pausing saves that
 *   recompute when the pool is full of sequences about to finish (16 streams of 512-token
 *   prompts at 50% of tinyllama: one 512-token prompt recomputed per pass, the gap to the
 *   static split). maxPauseSteps 0: preempt the newest at once, as before.
 * - A finished generation commits its tokens and releases with cachePrefix=true, so a chat's
 *   next turn (same prefix) reuses the K/V. Aborted sequences free their KV at once.
 */
import type { KvManager, SeqId, SequenceEnd } from '../kv/index.js';
import type { Batch } from '../models/transformer.js';
import { Sampler, tokenLogprob, type SamplingOptions, type TokenLogprob } from './sampling.js';
import { maskWords, type TokenConstraint } from './constraint.js';
import { StopMatcher } from './stop.js';
import { InvalidOptionError, KvCapacityError } from '../errors.js';

/** What the scheduler needs of the model. */
export interface ForwardModel {
  readonly maxRows: number;
  readonly maxLogitRows: number;
  forward(batch: Batch): Float32Array;
  /** The final-normed hidden states of the last forward's logit rows [numLogitRows, dim] (embeddings). */
  hiddenStates?(numLogitRows: number): Float32Array;
}

/** What the scheduler needs of the tokenizer. */
export interface SchedulerTokenizer {
  isEog(id: number): boolean;
  createDecoder(options?: { continuation?: boolean }): { push(id: number): string; flush(): string };
}

export type FinishReason = 'stop' | 'length' | 'eog' | 'abort';

/** Timings of one generation, milliseconds and tokens per second. */
export interface GenerationTimings {
  promptMs: number;
  genMs: number;
  promptTokensPerSec: number;
  genTokensPerSec: number;
  timeToFirstTokenMs: number;
  /** Time between each generated token and the one before it (one entry per token after the first). */
  interTokenMs: number[];
}

/** What a finished generation reports. */
export interface FinishedGeneration {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  cachedPromptTokens: number;
  timings: GenerationTimings;
  /** Per generated token, when asked for (GenerateOptions.logprobs). */
  logprobs?: TokenLogprob[];
}

/** How an embedding pools its tokens' hidden states (GGUF `<arch>.pooling_type`: 1 mean, 2 cls, 3 last). */
export type Pooling = 'mean' | 'cls' | 'last';

/** Callbacks through which the scheduler reports progress. */
export interface SchedulerEvents {
  /** New tokens of a generation and the text that became safe to emit (may be ''). */
  chunk(id: number, text: string, tokens: number[], logprobs?: TokenLogprob[]): void;
  done(id: number, result: FinishedGeneration): void;
  /** Logits of an evaluate request: [numRows, vocab]. */
  logits(id: number, logits: Float32Array, numRows: number): void;
  /** A request that can never run (its K/V does not fit even alone) was dropped. */
  failed(id: number, error: Error): void;
}

export interface SchedulerOptions {
  model: ForwardModel;
  kv: KvManager;
  tokenizer: SchedulerTokenizer;
  vocabSize: number;
  /** Largest number of tokens one sequence holds (prompt + generated). */
  contextSize: number;
  /** Most sequences running at once. */
  maxRunning: number;
  /** Reuse cached prefixes across requests (default true; false recomputes every prompt). */
  prefixCache?: boolean;
  /**
   * Most consecutive steps a sequence that cannot grow its KV waits for others to free chunks
   * before the newest is preempted (default DEFAULT_MAX_PAUSE_STEPS; 0: preempt at once).
   */
  maxPauseSteps?: number | undefined;
  /**
   * Admission look-ahead, tokens (see the NOTE; default DEFAULT_ADMIT_AHEAD_TOKENS; 0: the
   * prompt alone, as do layouts without kv.countRoom()). Alone, the prompt is enough.
   */
  admitAheadTokens?: number | undefined;
  events: SchedulerEvents;
}

/**
 * Default bound of a KV pause, in steps. A pause pays off when a sequence due to finish within
 * it frees its chunks; 64 steps covers the short generations of chat and benchmark traffic
 * (32-token answers) while a paused stream's latency stays bounded.
 */
export const DEFAULT_MAX_PAUSE_STEPS = 64;

/**
 * Default admission look-ahead, tokens: the next 256 tokens of every running sequence must fit
 * before another is admitted. It covers whole answers of chat and benchmark traffic (32-512
 * tokens) and one 256-token chunk of growth for longer ones, which then grow into what the
 * sequences finishing before them free (or pause, or preempt, as before).
 */
export const DEFAULT_ADMIT_AHEAD_TOKENS = 256;

/** FLEXINFER_KV_PAUSE_STEPS=N sets maxPauseSteps (0: preempt at once, as before; for comparisons). */
export function maxPauseStepsFromEnv(value = process.env.FLEXINFER_KV_PAUSE_STEPS): number | undefined {
  return wholeFromEnv('FLEXINFER_KV_PAUSE_STEPS', value, 'steps');
}

/** FLEXINFER_ADMIT_AHEAD=N sets admitAheadTokens (0: the prompt alone, as before; for comparisons). */
export function admitAheadFromEnv(value = process.env.FLEXINFER_ADMIT_AHEAD): number | undefined {
  return wholeFromEnv('FLEXINFER_ADMIT_AHEAD', value, 'tokens');
}

function wholeFromEnv(name: string, value: string | undefined, unit: string): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidOptionError(name, `expected a whole number of ${unit} >= 0, got '${value}'`);
  return n;
}

/** One request's state while queued or running. */
interface Sequence {
  id: number;
  kind: 'generate' | 'evaluate';
  /** Keep generating past end-of-generation tokens (benchmarks). */
  ignoreEos: boolean;
  tokens: Uint32Array; // [contextSize]: prompt, then generated tokens
  numTokens: number;
  numPrompt: number;
  /** Positions [0, numComputed) hold K/V in the cache. */
  numComputed: number;
  seq: SeqId | null;
  // generate
  maxTokens: number;
  numGenerated: number;
  sampler: Sampler | null;
  /** Alternatives per token in logprobs; -1: no logprobs. */
  numLogprobs: number;
  logprobs: TokenLogprob[];
  numLogprobsSent: number;
  /** n > 1: the other choices, forked from this sequence's KV once its prompt is computed. */
  forks: Sequence[];
  /** A fork waiting for its parent's prompt (not queued). */
  forkParent: Sequence | null;
  /** Allowed-token constraint (structured output), or null. */
  constraint: TokenConstraint | null;
  stop: StopMatcher | null;
  decoder: { push(id: number): string; flush(): string } | null;
  text: string;
  cachedPromptTokens: number;
  /** Consecutive steps this sequence got no rows because its KV could not grow. */
  pausedSteps: number;
  // evaluate
  allLogits: boolean;
  logits: Float32Array | null; // [numTokens or 1, vocab]
  /** An embedding request: how its rows' hidden states are pooled into `logits` ([dim]). */
  pooling: Pooling | null;
  // timings (performance.now())
  tSubmit: number;
  tAdmit: number;
  tFirstToken: number;
  tLastToken: number;
  interTokenMs: number[];
}

/** Per-step record of a sequence's rows in the batch. */
interface Slice {
  s: Sequence;
  firstPos: number;
  numRows: number;
  logitStart: number; // index of its first logit row in the step's logits
  numLogitRows: number;
}

/** Continuous-batching scheduler (see NOTE at the top of the file). */
export class Scheduler {
  private readonly o: SchedulerOptions;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly byId = new Map<number, Sequence>();
  private readonly batch: Batch;
  private numSteps = 0;
  private numRowsTotal = 0;
  private numPreemptions = 0;
  /** Sequence-steps paused because KV could not grow, and the longest pause (steps). */
  private numPauses = 0;
  private longestPause = 0;
  private readonly maxPauseSteps: number;
  private readonly admitAheadTokens: number;
  /** Most sequences running at once, and the most before the first preemption. */
  private peakRunning = 0;
  private peakRunningBeforePreemption = 0;
  // Prompt tokens of generations at their first admission, and how many of them the prefix
  // cache held (vLLM's prefix_cache_queries / prefix_cache_hits, in tokens).
  private numPrefixQueryTokens = 0;
  private numPrefixHitTokens = 0;
  /** Prompt tokens n > 1 choices took from their first choice by kv.fork instead of computing them. */
  private numForkedPromptTokens = 0;
  /** Token bitmask scratch for constrained sequences. */
  private readonly mask: Int32Array;

  constructor(options: SchedulerOptions) {
    this.o = options;
    this.maxPauseSteps = options.maxPauseSteps ?? DEFAULT_MAX_PAUSE_STEPS;
    if (!Number.isInteger(this.maxPauseSteps) || this.maxPauseSteps < 0) throw new RangeError(`maxPauseSteps must be a whole number >= 0, got ${options.maxPauseSteps}`);
    this.admitAheadTokens = options.admitAheadTokens ?? DEFAULT_ADMIT_AHEAD_TOKENS;
    if (!Number.isInteger(this.admitAheadTokens) || this.admitAheadTokens < 0) throw new RangeError(`admitAheadTokens must be a whole number >= 0, got ${options.admitAheadTokens}`);
    const { maxRows, maxLogitRows } = options.model;
    this.batch = {
      numRows: 0,
      tokens: new Int32Array(maxRows),
      positions: new Int32Array(maxRows),
      seqs: new Int32Array(maxRows),
      logitRows: new Int32Array(maxLogitRows),
      numLogitRows: 0,
    };
    this.mask = new Int32Array(maskWords(options.vocabSize));
  }

  /** True when nothing is queued or running. */
  get idle(): boolean {
    return this.waiting.length === 0 && this.running.length === 0;
  }

  /** Queues a generation. The prompt must be 1..contextSize tokens (checked by the caller). */
  submitGenerate(
    id: number,
    prompt: Uint32Array,
    options: { maxTokens: number; sampling: SamplingOptions; stop: string[]; ignoreEos?: boolean; constraint?: TokenConstraint; logprobs?: number; forks?: Array<{ id: number; sampling: SamplingOptions; constraint?: TokenConstraint }> },
  ): void {
    const s = this.newGeneration(id, prompt, options);
    for (const f of options.forks ?? []) {
      const child = this.newGeneration(f.id, prompt, { ...options, sampling: f.sampling, constraint: f.constraint });
      child.forkParent = s;
      s.forks.push(child);
      this.byId.set(child.id, child);
    }
    this.enqueue(s);
  }

  private newGeneration(id: number, prompt: Uint32Array, options: { maxTokens: number; sampling: SamplingOptions; stop: string[]; ignoreEos?: boolean; constraint?: TokenConstraint; logprobs?: number }): Sequence {
    const s = this.newSequence(id, 'generate', prompt);
    s.constraint = options.constraint ?? null;
    s.maxTokens = options.maxTokens;
    s.ignoreEos = options.ignoreEos ?? false;
    s.numLogprobs = options.logprobs ?? -1;
    s.sampler = new Sampler(options.sampling);
    s.sampler.accept(prompt);
    s.stop = new StopMatcher(options.stop);
    // Generated tokens continue the prompt: keep the first token's leading space.
    s.decoder = this.o.tokenizer.createDecoder({ continuation: true });
    return s;
  }

  /** Queues an evaluation: logits of the last token, or of every token with allLogits. */
  submitEvaluate(id: number, tokens: Uint32Array, allLogits: boolean): void {
    const s = this.newSequence(id, 'evaluate', tokens);
    s.allLogits = allLogits;
    s.logits = new Float32Array((allLogits ? tokens.length : 1) * this.o.vocabSize);
    this.enqueue(s);
  }

  /**
   * Queues an embedding: the final-normed hidden states of `tokens`, pooled (mean: every row;
   * cls: the first; last: the last), reported through events.logits as one [dim] row.
   */
  submitEmbed(id: number, tokens: Uint32Array, pooling: Pooling): void {
    if (!this.o.model.hiddenStates) throw new Error('this forward model has no hidden states');
    const s = this.newSequence(id, 'evaluate', tokens);
    s.pooling = pooling;
    s.allLogits = pooling !== 'last';
    this.enqueue(s);
  }

  /** Removes a request at once and frees its KV; a generation finishes with 'abort'. */
  abort(id: number): void {
    const s = this.byId.get(id);
    if (!s) return;
    this.remove(s, false);
    if (s.kind === 'generate') this.o.events.done(id, this.result(s, 'abort'));
  }

  /** Counters for stats(). */
  stats(): { running: number; waiting: number; steps: number; rows: number; preemptions: number; pauses: number; longestPause: number; peakRunning: number; peakRunningBeforePreemption: number; prefixQueryTokens: number; prefixHitTokens: number; forkedPromptTokens: number } {
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      steps: this.numSteps,
      rows: this.numRowsTotal,
      preemptions: this.numPreemptions,
      pauses: this.numPauses,
      longestPause: this.longestPause,
      peakRunning: this.peakRunning,
      peakRunningBeforePreemption: this.peakRunningBeforePreemption,
      prefixQueryTokens: this.numPrefixQueryTokens,
      prefixHitTokens: this.numPrefixHitTokens,
      forkedPromptTokens: this.numForkedPromptTokens,
    };
  }

  /**
   * Runs one step (admission, one forward pass, sampling). Returns the rows computed; 0 means
   * idle, or that a request which can never run was failed (call again while !idle).
   */
  step(): number {
    this.admit();
    const slices = this.buildBatch();
    if (this.batch.numRows === 0) {
      // Nothing runs and the queue head was not admitted: it does not fit even alone.
      if (this.running.length === 0 && this.waiting.length > 0) {
        const s = this.waiting[0]!;
        this.remove(s, false);
        this.o.events.failed(s.id, new KvCapacityError(s.numTokens));
      }
      return 0;
    }
    const logits = this.o.model.forward(this.batch);
    this.numSteps++;
    this.numRowsTotal += this.batch.numRows;
    for (const sl of slices) this.afterForward(sl, logits);
    return this.batch.numRows;
  }

  // --- admission and preemption ---

  private admit(): void {
    const kv = this.o.kv;
    // Chunks that come free belong to the paused sequences first.
    if (this.running.some((s) => s.pausedSteps > 0)) return;
    while (this.waiting.length > 0 && this.running.length < this.o.maxRunning) {
      const s = this.waiting[0]!;
      const tokens = s.tokens.subarray(0, s.numTokens);
      // Prefix reuse only for generations: an evaluation wants logits of every row it asked for.
      const reuse = s.kind === 'generate' && s.numTokens > 1 && this.o.prefixCache !== false;
      if (!this.roomAhead(s, reuse)) return;
      const match = reuse ? kv.matchPrefix(tokens) : null;
      const seq = match ? match.seq : kv.createSequence();
      if (seq === null) return; // no room for even an empty sequence: wait for one to finish
      // The whole prompt, unless the layout maps it pass by pass (sliding windows): then the
      // first chunk, and buildBatch() ensures each further chunk as it runs.
      const first = kv.mapsPerPass === true ? Math.min(s.numTokens, (match?.numTokens ?? 0) + this.o.model.maxRows) : s.numTokens;
      if (!kv.ensure(seq, first)) {
        kv.release(seq, match !== null); // give a matched prefix back to the cache
        return;
      }
      s.seq = seq;
      s.numComputed = match ? match.numTokens : 0;
      if (s.tAdmit === 0) {
        s.tAdmit = performance.now();
        s.cachedPromptTokens = s.numComputed;
        if (s.kind === 'generate' && this.o.prefixCache !== false) {
          this.numPrefixQueryTokens += s.numPrompt;
          this.numPrefixHitTokens += s.cachedPromptTokens;
        }
      }
      this.waiting.shift();
      this.running.push(s);
      this.peakRunning = Math.max(this.peakRunning, this.running.length);
      if (this.numPreemptions === 0) this.peakRunningBeforePreemption = this.peakRunning;
    }
  }

  /**
   * Whether KV could give every running sequence and the queue head `s` (its prompt matched in
   * the prefix cache when `reuse`) their next tokens (see aheadEnd), counted by kv.countRoom()
   * without mapping or evicting anything, keeping the cached prefixes of the requests waiting
   * behind s, as many of the nearest as still let s in. True when nothing else runs (alone,
   * the prompt is enough) and for layouts that do not count.
   */
  private roomAhead(s: Sequence, reuse: boolean): boolean {
    const countRoom = this.o.kv.countRoom?.bind(this.o.kv);
    if (!countRoom || this.admitAheadTokens === 0) return true;
    const ends: SequenceEnd[] = this.running.map((r) => ({ seq: r.seq!, numTokens: this.aheadEnd(r) }));
    ends.push({ seq: null, numTokens: this.aheadEnd(s), ...(reuse ? { prompt: s.tokens.subarray(0, s.numTokens) } : {}) });
    // The next few requests' prompts (those that could be admitted soon) stay cached.
    const wanted: Uint32Array[] = [];
    if (this.o.prefixCache !== false) {
      for (const w of this.waiting.slice(1, 1 + this.o.maxRunning)) {
        if (w.kind === 'generate' && w.numTokens > 1) wanted.push(w.tokens.subarray(0, w.numTokens));
      }
    }
    const fits = (k: number): boolean => {
      const room = countRoom(ends, wanted.slice(0, k));
      return room.neededChunks <= room.availableChunks;
    };
    // A request behind s never holds s back (see the NOTE): keep the cached prompts of the
    // nearest k that still let s in, the farthest ones' go first. Alone, s is let in with all
    // of them kept; if s does not fit even with none kept, s waits and all stay kept.
    let keep = wanted.length;
    let admit = this.running.length === 0 || fits(keep);
    if (!admit && keep > 0 && fits(0)) {
      let [lo, hi] = [0, keep - 1]; // fits(lo), and fits(k) is false for every k > hi
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (fits(mid)) lo = mid;
        else hi = mid - 1;
      }
      [keep, admit] = [lo, true];
    }
    this.o.kv.keepCached?.(wanted.slice(0, keep));
    return admit;
  }

  /**
   * Positions [0, end) a sequence will hold within the look-ahead: a generation computes its
   * tokens up to the last one it feeds back (the final sampled token never is), at most
   * admitAheadTokens past what it holds now; an evaluation, its tokens.
   */
  private aheadEnd(s: Sequence): number {
    if (s.kind !== 'generate') return s.numTokens;
    const rest = Math.max(0, s.maxTokens - s.numGenerated - 1);
    return Math.min(this.o.contextSize, s.numTokens + Math.min(rest, this.admitAheadTokens));
  }

  /** Preempts the newest running sequence: frees its KV and requeues it at the head. */
  private preemptNewest(): Sequence {
    const victim = this.running.pop()!;
    this.o.kv.release(victim.seq!, false);
    victim.seq = null;
    victim.numComputed = 0;
    victim.pausedSteps = 0;
    this.waiting.unshift(victim);
    this.numPreemptions++;
    return victim;
  }

  /** Steps s needs to finish if it gets its rows every step (prefill chunks, then one token a step). */
  private stepsToFinish(s: Sequence): number {
    const prefill = Math.ceil(Math.max(0, s.numTokens - s.numComputed - 1) / this.o.model.maxRows);
    return s.kind === 'generate' ? prefill + Math.max(1, s.maxTokens - s.numGenerated) : prefill + 1;
  }

  /**
   * After a step was built with `blocked` sequences that could not grow: true when they may
   * pause (another sequence runs and is due to finish within the pause still allowed to each).
   */
  private mayPause(blocked: Sequence[], slices: Slice[]): boolean {
    if (this.maxPauseSteps === 0) return false;
    // At least as many sequences must decode as wait: when most wait, chunks come back one
    // finished sequence at a time and the steps run a trickle of rows (16 streams of
    // 512-token prompts at 50% of tinyllama: 11 of 12 paused, 57 steps for 32 tokens).
    const decoding = slices.filter((sl) => sl.numRows === 1 && sl.s.numComputed + 1 === sl.s.numTokens);
    if (decoding.length < blocked.length) return false;
    const left = this.maxPauseSteps - Math.max(...blocked.map((s) => s.pausedSteps));
    return left > 0 && decoding.some((sl) => this.stepsToFinish(sl.s) <= left);
  }

  // --- batch building ---

  private buildBatch(): Slice[] {
    const b = this.batch;
    const { maxRows, maxLogitRows } = this.o.model;
    const kv = this.o.kv;
    b.numRows = 0;
    b.numLogitRows = 0;
    const slices: Slice[] = [];
    const blocked: Sequence[] = [];

    // Decode rows first: every running sequence with exactly one token to compute.
    for (const s of this.running) {
      if (s.numTokens - s.numComputed !== 1) continue;
      if (b.numRows >= maxRows || b.numLogitRows >= maxLogitRows) break;
      if (!kv.ensure(s.seq!, s.numTokens)) blocked.push(s);
      else slices.push(this.addRows(s, 1));
    }
    // Then prefill chunks, in admission order, within the row and logit-row budgets.
    for (const s of this.running) {
      if (s.numTokens - s.numComputed === 1) continue; // a decode row (placed, blocked, or no room)
      const remaining = s.numTokens - s.numComputed;
      let n = Math.min(remaining, maxRows - b.numRows);
      if (s.allLogits) n = Math.min(n, maxLogitRows - b.numLogitRows);
      else if (n === remaining && b.numLogitRows >= maxLogitRows) n = remaining - 1; // last row needs a logit row
      if (n <= 0) continue;
      if (!kv.ensure(s.seq!, s.numComputed + n)) blocked.push(s);
      else slices.push(this.addRows(s, n));
    }
    if (blocked.length === 0) {
      for (const sl of slices) sl.s.pausedSteps = 0;
      return slices;
    }
    // The newest gives its KV back (and the step is rebuilt) when that costs nothing (it has
    // computed nothing yet: admitted, its prefill not started) or when nothing frees chunks
    // in time for a pause.
    if (this.running[this.running.length - 1]!.numComputed === 0 || !this.mayPause(blocked, slices)) {
      this.preemptNewest();
      return this.buildBatch();
    }
    for (const sl of slices) sl.s.pausedSteps = 0;
    for (const s of blocked) {
      s.pausedSteps++;
      this.numPauses++;
      this.longestPause = Math.max(this.longestPause, s.pausedSteps);
    }
    return slices;
  }

  /** Appends rows [numComputed, numComputed + n) of s to the batch. */
  private addRows(s: Sequence, n: number): Slice {
    const b = this.batch;
    const first = s.numComputed;
    const end = first + n;
    const sl: Slice = { s, firstPos: first, numRows: n, logitStart: b.numLogitRows, numLogitRows: 0 };
    for (let p = first; p < end; p++) {
      const row = b.numRows++;
      b.tokens[row] = s.tokens[p]!;
      b.positions[row] = p;
      b.seqs[row] = s.seq!;
      if (s.allLogits || p === s.numTokens - 1) {
        b.logitRows[b.numLogitRows++] = row;
        sl.numLogitRows++;
      }
    }
    return sl;
  }

  // --- after the forward pass ---

  private afterForward(sl: Slice, logits: Float32Array): void {
    const s = sl.s;
    const V = this.o.vocabSize;
    s.numComputed += sl.numRows;
    this.o.kv.commit(s.seq!, s.tokens.subarray(0, s.numComputed));
    if (s.pooling) return this.poolRows(s, sl);
    if (s.kind === 'evaluate') {
      if (sl.numLogitRows > 0) {
        // allLogits: rows land at their positions; otherwise the one row is the last token's.
        const dst = s.allLogits ? sl.firstPos * V : 0;
        s.logits!.set(logits.subarray(sl.logitStart * V, (sl.logitStart + sl.numLogitRows) * V), dst);
      }
      if (s.numComputed === s.numTokens) {
        this.remove(s, false);
        this.o.events.logits(s.id, s.logits!, s.allLogits ? s.numTokens : 1);
      }
      return;
    }
    if (sl.numLogitRows === 0) return; // mid-prompt chunk
    if (s.forks.length > 0) this.startForks(s, logits, sl.logitStart * V);
    this.sampleNext(s, logits, sl.logitStart * V);
  }

  /** Embeddings: adds the slice's hidden states to s's pooled vector; reports it when complete. */
  private poolRows(s: Sequence, sl: Slice): void {
    const h = this.o.model.hiddenStates!(sl.logitStart + sl.numLogitRows).subarray();
    const dim = h.length / (sl.logitStart + sl.numLogitRows);
    s.logits ??= new Float32Array(dim);
    const out = s.logits;
    for (let r = 0; r < sl.numLogitRows; r++) {
      const pos = s.allLogits ? sl.firstPos + r : s.numTokens - 1;
      const row = h.subarray((sl.logitStart + r) * dim, (sl.logitStart + r + 1) * dim);
      if (s.pooling === 'mean') for (let i = 0; i < dim; i++) out[i] += row[i]! / s.numTokens;
      else if ((s.pooling === 'cls' && pos === 0) || (s.pooling === 'last' && pos === s.numTokens - 1)) out.set(row);
    }
    if (s.numComputed === s.numTokens) {
      this.remove(s, false);
      this.o.events.logits(s.id, out, 1);
    }
  }

  /**
   * n > 1: the prompt is computed once. Each fork maps the parent's prompt K/V (kv.fork: full
   * chunks shared, the partial tail copied) and draws its first token from the same logits
   * row with its own sampler; then it runs as a sequence of its own. A fork the pool cannot
   * hold now is queued and computes its prompt itself (prefix cache permitting).
   */
  private startForks(s: Sequence, logits: Float32Array, offset: number): void {
    const forks = s.forks;
    s.forks = [];
    for (const f of forks) {
      f.forkParent = null;
      const seq = this.o.kv.fork(s.seq!, s.numComputed);
      if (seq === null) {
        this.waiting.push(f);
        continue;
      }
      f.seq = seq;
      f.numComputed = s.numComputed;
      f.tAdmit = performance.now();
      f.cachedPromptTokens = f.numPrompt;
      this.numForkedPromptTokens += f.numPrompt;
      this.running.push(f);
      this.sampleNext(f, logits, offset);
    }
  }

  /** Samples s's next token from the logits at `offset`, emits it, checks stop conditions. */
  private sampleNext(s: Sequence, logits: Float32Array, offset: number): void {
    const now = performance.now();
    if (s.numGenerated >= s.maxTokens) return this.finish(s, 'length', []);
    const c = s.constraint;
    if (c) c.fillMask(this.mask);
    const token = s.sampler!.sample(logits, this.o.vocabSize, offset, c ? this.mask : undefined);
    const lp = s.numLogprobs >= 0 ? tokenLogprob(logits, this.o.vocabSize, offset, token, s.numLogprobs) : null;
    if (s.tFirstToken === 0) s.tFirstToken = now;
    if (c && !c.accept(token)) {
      // A bug in the constraint engine: fail this request, not the engine.
      this.remove(s, false);
      return this.o.events.failed(s.id, new Error(`the output constraint refused token ${token} that its own mask allowed`));
    }
    // A constrained output ends when the constraint says it is complete (its end token).
    if ((!s.ignoreEos || c?.done) && this.o.tokenizer.isEog(token)) return this.finish(s, 'eog', []);
    s.sampler!.accept([token]);
    s.tokens[s.numTokens++] = token;
    if (lp) s.logprobs.push(lp);
    s.numGenerated++;
    if (s.tLastToken !== 0) s.interTokenMs.push(now - s.tLastToken);
    s.tLastToken = now;
    const { text, stopped } = s.stop!.push(s.decoder!.push(token));
    if (stopped) return this.finish(s, 'stop', [token], text);
    if (s.numGenerated >= s.maxTokens || s.numTokens >= this.o.contextSize) return this.finish(s, 'length', [token], text);
    s.text += text;
    this.emitChunk(s, text, [token]);
  }

  /** Ends a generation: flushes held text, caches its KV prefix, reports the result. */
  private finish(s: Sequence, reason: FinishReason, lastTokens: number[], lastText = ''): void {
    let text = lastText;
    if (reason !== 'stop') {
      // Bytes still in the decoder and text held back for stop strings are emitted now.
      const tail = s.stop!.push(s.decoder!.flush());
      text += tail.stopped ? tail.text : tail.text + s.stop!.flush();
      if (tail.stopped) reason = 'stop';
    }
    s.text += text;
    if (text.length > 0 || lastTokens.length > 0) this.emitChunk(s, text, lastTokens);
    this.remove(s, true);
    this.o.events.done(s.id, this.result(s, reason));
  }

  private emitChunk(s: Sequence, text: string, tokens: number[]): void {
    if (s.numLogprobs < 0) return this.o.events.chunk(s.id, text, tokens);
    const fresh = s.logprobs.slice(s.numLogprobsSent);
    s.numLogprobsSent = s.logprobs.length;
    this.o.events.chunk(s.id, text, tokens, fresh);
  }

  private result(s: Sequence, reason: FinishReason): FinishedGeneration {
    const end = performance.now();
    const tFirst = s.tFirstToken || end;
    const promptMs = s.tAdmit ? tFirst - s.tAdmit : 0;
    const genMs = end - tFirst;
    const computedPrompt = s.numPrompt - s.cachedPromptTokens;
    return {
      text: s.text,
      tokens: Array.from(s.tokens.subarray(s.numPrompt, s.numTokens)),
      ...(s.numLogprobs >= 0 ? { logprobs: s.logprobs } : {}),
      finishReason: reason,
      promptTokens: s.numPrompt,
      cachedPromptTokens: s.cachedPromptTokens,
      timings: {
        promptMs,
        genMs,
        promptTokensPerSec: promptMs > 0 ? (computedPrompt * 1000) / promptMs : 0,
        // The first token comes out of the prompt pass; the rest are decode steps.
        genTokensPerSec: genMs > 0 && s.numGenerated > 1 ? ((s.numGenerated - 1) * 1000) / genMs : 0,
        timeToFirstTokenMs: s.tFirstToken ? s.tFirstToken - s.tSubmit : 0,
        interTokenMs: s.interTokenMs,
      },
    };
  }

  // --- bookkeeping ---

  private newSequence(id: number, kind: 'generate' | 'evaluate', prompt: Uint32Array): Sequence {
    if (this.byId.has(id)) throw new Error(`request id ${id} is already in use`);
    if (prompt.length < 1 || prompt.length > this.o.contextSize) throw new RangeError(`prompt of ${prompt.length} tokens (context ${this.o.contextSize})`);
    const tokens = new Uint32Array(kind === 'generate' ? this.o.contextSize : prompt.length);
    tokens.set(prompt);
    return {
      id, kind, tokens, numTokens: prompt.length, numPrompt: prompt.length, numComputed: 0, seq: null,
      maxTokens: 0, ignoreEos: false, numGenerated: 0, sampler: null, constraint: null, stop: null, decoder: null, text: '', cachedPromptTokens: 0, pausedSteps: 0,
      allLogits: false, logits: null, pooling: null, numLogprobs: -1, logprobs: [], numLogprobsSent: 0, forks: [], forkParent: null, tSubmit: performance.now(), tAdmit: 0, tFirstToken: 0, tLastToken: 0, interTokenMs: [],
    };
  }

  private enqueue(s: Sequence): void {
    this.byId.set(s.id, s);
    this.waiting.push(s);
  }

  /** Takes s out of the queues; frees (or, with cachePrefix, parks) its KV. */
  private remove(s: Sequence, cachePrefix: boolean): void {
    this.byId.delete(s.id);
    if (s.forkParent) {
      s.forkParent.forks.splice(s.forkParent.forks.indexOf(s), 1);
      s.forkParent = null;
    }
    // Forks that never started (their parent ended before its prompt was computed) run on their own.
    for (const f of s.forks) {
      f.forkParent = null;
      this.waiting.push(f);
    }
    s.forks = [];
    s.constraint?.dispose();
    const w = this.waiting.indexOf(s);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.indexOf(s);
    if (r >= 0) this.running.splice(r, 1);
    if (s.seq !== null) {
      this.o.kv.release(s.seq, cachePrefix && this.o.prefixCache !== false);
      s.seq = null;
    }
  }
}
