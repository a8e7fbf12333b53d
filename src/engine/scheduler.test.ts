/**
 * Scheduler policy with a fake model that reads its "K/V" through the real KV managers: the
 * fake writes each row's token into its sequence's K at the row's position and derives the
 * next token from ALL of the sequence's K rows [0, pos]. So a wrong position, a lost or stale
 * K/V row after preemption or prefix reuse, or a mixed-up sequence changes the output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, admitAheadFromEnv, maxPauseStepsFromEnv, type FinishedGeneration, type ForwardModel } from './scheduler.js';
import { StopMatcher } from './stop.js';
import { createKvManager, type KvManager } from '../kv/index.js';
import type { Batch } from '../models/transformer.js';
import { InvalidOptionError, KvCapacityError } from '../errors.js';

const V = 64;
const KV_DIM = 2048; // 4 KiB of f16 per token row: a 4 KiB chunk holds one token
const shape = { numLayers: 1, kvDim: KV_DIM, maxContext: 256 };

class FakeModel implements ForwardModel {
  readonly maxRows = 16;
  readonly maxLogitRows = 8;
  private readonly logits = new Float32Array(this.maxLogitRows * V);
  constructor(private readonly kv: KvManager) {}
  forward(b: Batch): Float32Array {
    this.logits.fill(0);
    // Write every row first (a real model stores K/V of the whole batch before attention).
    for (let r = 0; r < b.numRows; r++) this.kv.keys(b.seqs[r]!, 0)[b.positions[r]! * KV_DIM] = b.tokens[r]!;
    for (let i = 0; i < b.numLogitRows; i++) {
      const r = b.logitRows[i]!;
      const k = this.kv.keys(b.seqs[r]!, 0);
      let h = 17;
      for (let p = 0; p <= b.positions[r]!; p++) h = (Math.imul(h, 31) + k[p * KV_DIM]! + 1) >>> 0;
      this.logits[i * V + 1 + (h % (V - 1))] = 1; // never 0 (the EOG token)
    }
    return this.logits.subarray(0, b.numLogitRows * V);
  }
}

const tokenizer = {
  isEog: (id: number) => id === 0,
  createDecoder: () => ({ push: (id: number) => `<${id}>`, flush: () => '' }),
};

function run(kv: KvManager, maxRunning: number, prompts: number[][], maxTokens: number, stop: string[] = [], maxPauseSteps?: number, admitAheadTokens?: number) {
  const results = new Map<number, FinishedGeneration>();
  const texts = new Map<number, string>();
  const failures = new Map<number, Error>();
  const s = new Scheduler({
    model: new FakeModel(kv), kv, tokenizer, vocabSize: V, contextSize: shape.maxContext, maxRunning,
    ...(maxPauseSteps !== undefined ? { maxPauseSteps } : {}),
    ...(admitAheadTokens !== undefined ? { admitAheadTokens } : {}),
    events: {
      chunk: (id, text) => texts.set(id, (texts.get(id) ?? '') + text),
      done: (id, r) => results.set(id, r),
      logits: () => {},
      failed: (id, e) => failures.set(id, e),
    },
  });
  prompts.forEach((p, i) => s.submitGenerate(i, Uint32Array.from(p), { maxTokens, sampling: { temperature: 0, repeatPenalty: 1 }, stop }));
  let steps = 0;
  while (!s.idle) {
    s.step();
    assert.ok(++steps < 10_000, 'no progress');
  }
  return { failures, results: prompts.map((_, i) => results.get(i)!), texts: prompts.map((_, i) => texts.get(i) ?? ''), stats: s.stats() };
}

const PROMPTS = [
  [1, 2, 3, 4, 5],
  Array.from({ length: 40 }, (_, i) => (i * 7) % 60 + 1), // longer than one step's rows: chunked prefill
  [9, 9],
  [5, 4, 3, 2, 1, 7],
];

function roomy(): KvManager {
  return createKvManager({ layout: 'contiguous', shape, capacityBytes: 0, maxSequences: 8 });
}

test('continuous batching gives every sequence the tokens it gets alone', () => {
  const together = run(roomy(), 4, PROMPTS, 30);
  for (let i = 0; i < PROMPTS.length; i++) {
    const alone = run(roomy(), 1, [PROMPTS[i]!], 30);
    assert.deepEqual(together.results[i]!.tokens, alone.results[0]!.tokens, `prompt ${i}`);
    assert.equal(together.results[i]!.finishReason, 'length');
    assert.equal(together.results[i]!.tokens.length, 30);
  }
  assert.ok(together.stats.rows > together.stats.steps, 'steps should carry several rows');
});

test('a KV pool too small for all sequences preempts and recomputes without changing the output', () => {
  const expected = run(roomy(), 4, PROMPTS, 40).results.map((r) => r.tokens);
  // One chunk holds one token of K (or V): 200 chunks hold the longest sequence (80 tokens, 160
  // chunks) alone, but not all four (426 chunks).
  const kv = createKvManager({ layout: 'vtensor', shape, capacityBytes: 200 * 4096, chunkBytes: 4096 });
  const tight = run(kv, 4, PROMPTS, 40, [], 0, 0); // no pauses, no look-ahead: preempt at once
  assert.ok(tight.stats.preemptions > 0, 'expected preemptions with a tight KV pool');
  assert.equal(tight.stats.pauses, 0);
  assert.deepEqual(tight.results.map((r) => r.tokens), expected);
  kv.dispose();
});

test('a sequence that cannot grow pauses while another finishes, then resumes: same tokens, no recompute', () => {
  // Chunks of 16 tokens: the 40-token prompt + 30 generated need 5 chunks of K and 5 of V, the
  // 5-token one (5 + 30) 3 + 3; 14 chunks hold both until the longer one needs its 5th pair
  // while the shorter is a few tokens from done (it has room left in its last chunk).
  const prompts = [PROMPTS[1]!, PROMPTS[0]!];
  const expected = run(roomy(), 2, prompts, 30).results.map((r) => r.tokens);
  const kv = createKvManager({ layout: 'vtensor', shape, capacityBytes: 14 * 65536, chunkBytes: 65536 });
  const paused = run(kv, 2, prompts, 30, [], undefined, 0); // (no admission look-ahead, which would run them one after the other)
  assert.ok(paused.stats.pauses > 0, 'expected the longer sequence to pause mid-generation');
  assert.equal(paused.stats.preemptions, 0);
  assert.ok(paused.stats.longestPause <= 64);
  assert.deepEqual(paused.results.map((r) => r.tokens), expected);
  // The preempting scheduler gets the same tokens by recomputing.
  const preempted = run(kv, 2, prompts, 30, [], 0, 0);
  assert.ok(preempted.stats.preemptions > 0);
  assert.deepEqual(preempted.results.map((r) => r.tokens), expected);
  kv.dispose();
});

test('KV pauses over random arrival / length traces: all finish with their tokens, bounded pauses, never over the pool', () => {
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  let tracesWithPauses = 0;
  for (let trace = 0; trace < 40; trace++) {
    const numRequests = 2 + rand(7);
    const reqs = Array.from({ length: numRequests }, (_, i) => ({
      prompt: Array.from({ length: 1 + rand(40) }, () => 1 + rand(V - 1)),
      maxTokens: 1 + rand(50),
      arrival: rand(30), // step at which it is submitted
      id: i,
    }));
    const longest = Math.max(...reqs.map((r) => r.prompt.length + r.maxTokens));
    // Chunks of 1, 4 or 16 tokens; room for the longest alone (K and V), up to twice that.
    const chunkTokens = [1, 4, 16][rand(3)]!;
    const alone = 2 * Math.ceil(longest / chunkTokens);
    const capacity = alone + rand(alone + 1);
    const maxPauseSteps = [0, 1, 4, 64][rand(4)]!;
    const admitAheadTokens = [0, 0, 8, 64][rand(4)]!;
    const maxRunning = 1 + rand(6);
    const reference = new Map<number, number[]>();
    for (const r of reqs) reference.set(r.id, run(roomy(), 1, [r.prompt], r.maxTokens).results[0]!.tokens);

    const kv = createKvManager({ layout: 'vtensor', shape, capacityBytes: capacity * chunkTokens * 4096, chunkBytes: chunkTokens * 4096 });
    const done = new Map<number, FinishedGeneration>();
    const s = new Scheduler({
      model: new FakeModel(kv), kv, tokenizer, vocabSize: V, contextSize: shape.maxContext, maxRunning, maxPauseSteps, admitAheadTokens,
      events: { chunk: () => {}, done: (id, r) => done.set(id, r), logits: () => {}, failed: (id, e) => assert.fail(`trace ${trace}: request ${id} failed: ${e.message}`) },
    });
    const label = `trace ${trace} (capacity ${capacity} chunks, maxRunning ${maxRunning}, maxPauseSteps ${maxPauseSteps}, admitAheadTokens ${admitAheadTokens})`;
    let pending = [...reqs];
    for (let step = 0; pending.length > 0 || !s.idle; step++) {
      for (const r of pending.filter((q) => q.arrival <= step)) s.submitGenerate(r.id, Uint32Array.from(r.prompt), { maxTokens: r.maxTokens, sampling: { temperature: 0, repeatPenalty: 1 }, stop: [] });
      pending = pending.filter((q) => q.arrival > step);
      s.step();
      const st = kv.stats();
      assert.ok(st.mappedBytes <= st.capacityBytes, `${label}: ${st.mappedBytes} bytes mapped over the pool's ${st.capacityBytes}`);
      assert.ok(s.stats().longestPause <= maxPauseSteps, `${label}: a pause of ${s.stats().longestPause} steps`);
      assert.ok(step < 5000, `${label}: no progress (deadlock)`);
    }
    for (const r of reqs) assert.deepEqual(done.get(r.id)?.tokens, reference.get(r.id), `${label}: request ${r.id}`);
    if (maxPauseSteps === 0) assert.equal(s.stats().pauses, 0, label);
    if (s.stats().pauses > 0) tracesWithPauses++;
    kv.dispose();
  }
  assert.ok(tracesWithPauses >= 5, `only ${tracesWithPauses} traces paused a sequence`);
});

test('admitAheadTokens: a generation waits until its next tokens fit too, so the tight pool neither pauses nor preempts; same output', () => {
  const expected = run(roomy(), 4, PROMPTS, 40).results.map((r) => r.tokens);
  const kv = createKvManager({ layout: 'vtensor', shape, capacityBytes: 200 * 4096, chunkBytes: 4096 });
  const ahead = run(kv, 4, PROMPTS, 40, [], undefined, 40);
  assert.equal(ahead.stats.preemptions, 0);
  assert.equal(ahead.stats.pauses, 0);
  assert.ok(ahead.stats.peakRunning >= 2, 'two sequences still run at once');
  assert.deepEqual(ahead.results.map((r) => r.tokens), expected);
  kv.dispose();
  // Alone, a sequence whose prompt fits runs even when its next tokens do not (as without it).
  const small = createKvManager({ layout: 'vtensor', shape, capacityBytes: 100 * 4096, chunkBytes: 4096 });
  const alone = run(small, 1, [PROMPTS[1]!], 4, [], undefined, 200);
  assert.equal(alone.results[0]!.tokens.length, 4);
  small.dispose();
});

test('admission look-ahead (hand-computed): 8 run at once where the pool carries 8 to the end, none paused or preempted, and the cached prompts the next requests hit stay cached', () => {
  // Chunks of 16 tokens of K or V; a "block" is one chunk of each (2 chunks). The pool holds 24
  // blocks. A request: a 32-token prompt (2 blocks) + 4 generated tokens, of which 3 are fed
  // back, so it ends holding 35 tokens: 3 blocks. 8 such sequences fit to the end (24 blocks);
  // 12 fit their prompts (24 blocks) but not their third block. (The bench's case in small:
  // 512-token prompts, 256-token chunks, 24 blocks.)
  const prompt = (k: number) => Array.from({ length: 32 }, (_, i) => ((k * 13 + i * 7) % 62) + 1);
  const phaseA = Array.from({ length: 8 }, (_, k) => prompt(k));
  const phaseB = [...phaseA, ...Array.from({ length: 8 }, (_, k) => prompt(8 + k))];
  const reference = new Map(phaseB.map((p, k) => [k, run(roomy(), 1, [p], 4).results[0]!.tokens]));
  const runPhases = (admitAheadTokens: number) => {
    const kv = createKvManager({ layout: 'vtensor', shape, capacityBytes: 48 * 65536, chunkBytes: 65536 });
    const done = new Map<number, FinishedGeneration>();
    const doneAtStep = new Map<number, number>();
    let step = 0;
    const s = new Scheduler({
      model: new FakeModel(kv), kv, tokenizer, vocabSize: V, contextSize: shape.maxContext, maxRunning: 16, admitAheadTokens,
      events: { chunk: () => {}, done: (id, r) => (done.set(id, r), doneAtStep.set(id, step)), logits: () => {}, failed: (id, e) => assert.fail(`request ${id} failed: ${e.message}`) },
    });
    const sampling = { temperature: 0, repeatPenalty: 1 };
    // Phase A leaves its 8 prompts cached (2 full blocks + a 3-token tail each: all 24 blocks).
    phaseA.forEach((p, k) => s.submitGenerate(100 + k, Uint32Array.from(p), { maxTokens: 4, sampling, stop: [] }));
    while (!s.idle) s.step();
    const a = s.stats();
    phaseB.forEach((p, k) => s.submitGenerate(k, Uint32Array.from(p), { maxTokens: 4, sampling, stop: [] }));
    for (step = 1; !s.idle; step++) s.step();
    const b = s.stats();
    kv.dispose();
    for (const [k, tokens] of reference) assert.deepEqual(done.get(k)?.tokens, tokens, `request ${k} (admitAheadTokens ${admitAheadTokens})`);
    return { a, b, cached: phaseB.map((_, k) => done.get(k)!.cachedPromptTokens), hitsDoneAt: phaseA.map((_, k) => doneAtStep.get(k)) };
  };
  const ahead = runPhases(256);
  assert.equal(ahead.a.peakRunning, 8);
  // Phase B: the 8 hits are admitted one by one, the k-th when the running ones' third blocks
  // (k - 1) plus its own third block fit in what evicting the cache frees, except the prompts
  // still waiting (its second block is copied, and the cached original it replaces can go: no
  // extra block). The pool is full (24) and evictable are the phase-A tails not yet evicted
  // for the copies (8 - (k - 1)) and the originals of the k - 1 admitted: 8 >= k. The first
  // miss then needs 8 + 3 = 11 > 8 (the 8 originals): it waits for the first wave, so 8 run at
  // once in both waves. (Counting the copied block as new, the 8th would wait: 9 > 8.)
  assert.equal(ahead.b.peakRunning, 8);
  // The 8 hits run together: phase B's step 1 computes each one's last prompt token and samples
  // its first token, steps 2-4 the other 3; the misses start after them.
  assert.deepEqual(ahead.hitsDoneAt, Array(8).fill(4));
  assert.equal(ahead.b.preemptions, 0);
  assert.equal(ahead.b.pauses, 0);
  // Each hit reuses 31 tokens (a match leaves the last prompt token to compute): 1 full block
  // shared and 15 tokens of the second copied. None of the 8 cached prompts was evicted.
  assert.deepEqual(ahead.cached, [...Array(8).fill(31), ...Array(8).fill(0)]);
  // Without the look-ahead, 12 start (their prompts fit) and the pool cannot carry them.
  const prompts = runPhases(0);
  assert.ok(prompts.b.peakRunning > 8, `peak ${prompts.b.peakRunning}`);
  assert.ok(prompts.b.preemptions + prompts.b.pauses > 0, 'expected pauses or preemptions without the look-ahead');
});

test('admission look-ahead (hand-computed): a request behind the head never holds the head back; the farthest cached prompts go first', () => {
  // Chunks of 16 tokens of K or V; a block is one of each; the pool holds 3 blocks. Phase A: X
  // (a 32-token prompt, 1 token) leaves X0 and X1 cached (tokens 0-15, 16-31); 1 block free.
  // Phase B queues M1, M2 (4-token prompts, 10 tokens each: they end holding 13 tokens, one
  // block each), then X' (X's prompt again). M1 starts alone and takes the free block. M2
  // needs 1 more block; keeping the blocks X' would hit (X0 and X1) none is left, so
  // before this rule M2 waited for M1 (10 steps alone), then ran beside X' (which hit 31
  // tokens): 20 steps. Now M2 runs beside M1 and evicts X1 (the leaf) for its block: both finish
  // at step 10; X' then maps X0 (16 tokens cached), computes tokens 16-31 in one step (16
  // rows), and is done at step 11.
  const x = Array.from({ length: 32 }, (_, i) => ((i * 5) % 60) + 2);
  const m1 = [1, 61, 62, 63];
  const m2 = [1, 60, 59, 58];
  const reference = [run(roomy(), 1, [m1], 10), run(roomy(), 1, [m2], 10), run(roomy(), 1, [x], 1)].map((r) => r.results[0]!.tokens);
  const kv = createKvManager({ layout: 'vtensor', shape, capacityBytes: 6 * 65536, chunkBytes: 65536 });
  const done = new Map<number, FinishedGeneration>();
  const doneAtStep = new Map<number, number>();
  let step = 0;
  const s = new Scheduler({
    model: new FakeModel(kv), kv, tokenizer, vocabSize: V, contextSize: shape.maxContext, maxRunning: 4,
    events: { chunk: () => {}, done: (id, r) => (done.set(id, r), doneAtStep.set(id, step)), logits: () => {}, failed: (id, e) => assert.fail(`request ${id} failed: ${e.message}`) },
  });
  const sampling = { temperature: 0, repeatPenalty: 1 };
  s.submitGenerate(9, Uint32Array.from(x), { maxTokens: 1, sampling, stop: [] });
  while (!s.idle) s.step();
  assert.equal(kv.stats().mappedBytes, 4 * 65536, 'X0 and X1 cached');
  s.submitGenerate(0, Uint32Array.from(m1), { maxTokens: 10, sampling, stop: [] });
  s.submitGenerate(1, Uint32Array.from(m2), { maxTokens: 10, sampling, stop: [] });
  s.submitGenerate(2, Uint32Array.from(x), { maxTokens: 1, sampling, stop: [] });
  for (step = 1; !s.idle; step++) {
    s.step();
    if (step === 1) assert.equal(s.stats().running, 2, 'M2 runs beside M1 from the first step');
  }
  assert.deepEqual([0, 1, 2].map((k) => doneAtStep.get(k)), [10, 10, 11]);
  assert.deepEqual([0, 1, 2].map((k) => done.get(k)!.cachedPromptTokens), [0, 0, 16]);
  assert.deepEqual([0, 1, 2].map((k) => done.get(k)!.tokens), reference);
  assert.equal(s.stats().preemptions, 0);
  assert.equal(s.stats().pauses, 0);
  kv.dispose();
});

test('FLEXINFER_KV_PAUSE_STEPS, FLEXINFER_ADMIT_AHEAD: a whole number of steps, or a typed error', () => {
  assert.equal(maxPauseStepsFromEnv(undefined), undefined);
  assert.equal(maxPauseStepsFromEnv('0'), 0);
  assert.equal(maxPauseStepsFromEnv(' 16 '), 16);
  for (const bad of ['-1', '2.5', 'many']) assert.throws(() => maxPauseStepsFromEnv(bad), InvalidOptionError);
  assert.equal(admitAheadFromEnv('256'), 256);
  assert.throws(() => admitAheadFromEnv('-3'), /FLEXINFER_ADMIT_AHEAD/);
});

test('a request whose K/V cannot fit even alone fails with KvCapacityError instead of hanging', () => {
  const kv = createKvManager({ layout: 'vtensor', shape, capacityBytes: 20 * 4096, chunkBytes: 4096 });
  const r = run(kv, 2, [PROMPTS[1]!, PROMPTS[2]!], 4);
  assert.ok(r.failures.get(0) instanceof KvCapacityError);
  assert.equal(r.results[1]!.tokens.length, 4, 'the next request still runs');
  kv.dispose();
});

test('stop strings: text before the match is emitted, the match is not', () => {
  const base = run(roomy(), 1, [PROMPTS[0]!], 10).results[0]!;
  const third = `<${base.tokens[3]}>`;
  const r = run(roomy(), 1, [PROMPTS[0]!], 10, [third]);
  const expectText = base.tokens.slice(0, base.tokens.indexOf(base.tokens[3]!)).map((t) => `<${t}>`).join('');
  assert.equal(r.results[0]!.finishReason, 'stop');
  assert.equal(r.results[0]!.text, expectText);
  assert.equal(r.texts[0], expectText);
});

test('StopMatcher holds back a possible stop-string start across pieces', () => {
  const m = new StopMatcher(['END', 'xyz']);
  assert.deepEqual(m.push('abc E'), { text: 'abc ', stopped: false });
  assert.deepEqual(m.push('N'), { text: '', stopped: false });
  assert.deepEqual(m.push('X'), { text: 'ENX', stopped: false });
  assert.deepEqual(m.push('x'), { text: '', stopped: false });
  assert.deepEqual(m.push('yzzz'), { text: '', stopped: true });
  const n = new StopMatcher(['END']);
  assert.deepEqual(n.push('the E'), { text: 'the ', stopped: false });
  assert.equal(n.flush(), 'E');
  assert.deepEqual(new StopMatcher([]).push('END'), { text: 'END', stopped: false });
  assert.deepEqual(new StopMatcher(['lo w']).push('hello world'), { text: 'hel', stopped: true });
});

test('ignoreEos generates past end-of-generation tokens; without it the sequence ends there', () => {
  const base = run(roomy(), 1, [PROMPTS[0]!], 10).results[0]!;
  const eog = base.tokens[2]!; // pretend the third generated token ends generation
  const first = base.tokens.indexOf(eog);
  const go = (ignoreEos: boolean): FinishedGeneration => {
    let out: FinishedGeneration | undefined;
    const kv = roomy();
    const s = new Scheduler({
      model: new FakeModel(kv), kv, tokenizer: { ...tokenizer, isEog: (id: number) => id === eog }, vocabSize: V, contextSize: shape.maxContext, maxRunning: 1,
      events: { chunk: () => {}, done: (_id, r) => (out = r), logits: () => {}, failed: (_id, e) => assert.fail(e) },
    });
    s.submitGenerate(0, Uint32Array.from(PROMPTS[0]!), { maxTokens: 10, sampling: { temperature: 0, repeatPenalty: 1 }, stop: [], ignoreEos });
    while (!s.idle) s.step();
    return out!;
  };
  const stopped = go(false);
  assert.equal(stopped.finishReason, 'eog');
  assert.deepEqual(stopped.tokens, base.tokens.slice(0, first));
  const through = go(true);
  assert.equal(through.finishReason, 'length');
  assert.deepEqual(through.tokens, base.tokens);
});

test('prefixCache: false recomputes every prompt; true reuses the previous request', () => {
  for (const prefixCache of [true, false]) {
    const kv = createKvManager({ layout: 'vtensor', shape, capacityBytes: 400 * 4096, chunkBytes: 4096 });
    const results: FinishedGeneration[] = [];
    const s = new Scheduler({
      model: new FakeModel(kv), kv, tokenizer, vocabSize: V, contextSize: shape.maxContext, maxRunning: 2, prefixCache,
      events: { chunk: () => {}, done: (_id, r) => results.push(r), logits: () => {}, failed: (_id, e) => assert.fail(e) },
    });
    for (let i = 0; i < 2; i++) {
      s.submitGenerate(i, Uint32Array.from(PROMPTS[1]!), { maxTokens: 4, sampling: { temperature: 0, repeatPenalty: 1 }, stop: [] });
      while (!s.idle) s.step();
    }
    assert.deepEqual(results[1]!.tokens, results[0]!.tokens);
    if (prefixCache) assert.ok(results[1]!.cachedPromptTokens > 0, 'second request reuses the first');
    else assert.equal(results[1]!.cachedPromptTokens, 0);
    kv.dispose();
  }
});
