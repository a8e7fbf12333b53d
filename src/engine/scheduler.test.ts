/**
 * Scheduler policy with a fake model that reads its "K/V" through the real KV managers: the
 * fake writes each row's token into its sequence's K at the row's position and derives the
 * next token from ALL of the sequence's K rows [0, pos]. So a wrong position, a lost or stale
 * K/V row after preemption or prefix reuse, or a mixed-up sequence changes the output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, type FinishedGeneration, type ForwardModel } from './scheduler.js';
import { StopMatcher } from './stop.js';
import { createKvManager, type KvManager } from '../kv/index.js';
import type { Batch } from '../models/transformer.js';
import { KvCapacityError } from '../errors.js';

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

function run(kv: KvManager, maxRunning: number, prompts: number[][], maxTokens: number, stop: string[] = []) {
  const results = new Map<number, FinishedGeneration>();
  const texts = new Map<number, string>();
  const failures = new Map<number, Error>();
  const s = new Scheduler({
    model: new FakeModel(kv), kv, tokenizer, vocabSize: V, contextSize: shape.maxContext, maxRunning,
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
  const tight = run(kv, 4, PROMPTS, 40);
  assert.ok(tight.stats.preemptions > 0, 'expected preemptions with a tight KV pool');
  assert.deepEqual(tight.results.map((r) => r.tokens), expected);
  kv.dispose();
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
