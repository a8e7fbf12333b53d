/**
 * Engine behaviour on a synthetic tiny-15m model: batch invariance, prefix-cache invariance,
 * seeded sampling, stop strings, abort, evaluate, and typed errors for bad input.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { writeGguf } from '../gguf/writer.js';
import { supportedArchitectures } from '../models/registry.js';
import { gv } from '../gguf/value.js';
import { loadModel, type Model, ContextOverflowError, InvalidOptionError, UnsupportedArchitectureError, ModelDisposedError, InsufficientMemoryError } from '../index.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-engine-test-'));
const path = join(dir, 'tiny-15m-q8_0.gguf');
let model: Model;

const PROMPTS = [
  'Once upon a time',
  'The little dog ran to the park and',
  'One day, Lily found a shiny red ball in the garden. She',
  'Tom and Sue',
];
const GREEDY = { temperature: 0, repeatPenalty: 1, maxTokens: 24 } as const;

before(async () => {
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 3 });
  model = await loadModel(path, { threads: 2, contextSize: 256, parallel: 4 });
});

after(async () => {
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test('four sequences in one batch give exactly the tokens each gives alone', async () => {
  // Alone, one after the other (first: no prefix cache hits with distinct prompts).
  const alone = [];
  for (const p of PROMPTS) alone.push((await model.complete(p, GREEDY)).tokens);
  const before = (await model.stats()) as { scheduler: { steps: number; rows: number } };
  // Together: submitted at once, so decode steps carry rows of several sequences.
  const together = await Promise.all(PROMPTS.map((p) => model.complete(p, GREEDY)));
  const after = (await model.stats()) as { scheduler: { steps: number; rows: number } };
  for (let i = 0; i < PROMPTS.length; i++) assert.deepEqual(together[i]!.tokens, alone[i], `prompt ${i}`);
  const steps = after.scheduler.steps - before.scheduler.steps;
  const rows = after.scheduler.rows - before.scheduler.rows;
  assert.ok(rows > steps * 2, `expected batched steps (rows ${rows}, steps ${steps})`);
});

// Sampled draws amplify any difference in the last bits of the logits, so this checks that a
// row's logits do not depend on the batch: matmul kernels are row-invariant (native/src/matmul.h)
// and attention runs per sequence.
test('sampled generation is batch-invariant too (own seeded sampler per sequence)', async () => {
  const sampled = { temperature: 0.9, topK: 40, seed: 11, maxTokens: 16 } as const;
  const sAlone = [];
  for (const p of PROMPTS) sAlone.push((await model.complete(p, sampled)).tokens);
  const sTogether = await Promise.all(PROMPTS.map((p) => model.complete(p, sampled)));
  for (let i = 0; i < PROMPTS.length; i++) assert.deepEqual(sTogether[i]!.tokens, sAlone[i], `sampled prompt ${i}`);
});

test('a reused prompt prefix (vTensor prefix cache) gives the tokens of a contiguous KV without reuse', async () => {
  const first = await model.complete(PROMPTS[2]!, GREEDY);
  // Next "turn": the previous prompt and answer plus more text share a long prefix.
  const turn2 = Uint32Array.from([...model.tokenize(PROMPTS[2]!, { addBos: true }), ...first.tokens, ...model.tokenize(' The end.', { addBos: false })]);
  type Sched = { scheduler: { prefixQueryTokens: number; prefixHitTokens: number } };
  const before = (await model.stats()) as Sched;
  const cached = await model.complete(turn2, GREEDY);
  assert.ok(cached.cachedPromptTokens > 0, 'expected a prefix-cache hit');
  // The engine's prefix counters (vLLM's prefix_cache_queries / hits, in tokens) moved by what the request reported.
  const after = (await model.stats()) as Sched;
  assert.equal(after.scheduler.prefixQueryTokens - before.scheduler.prefixQueryTokens, cached.promptTokens);
  assert.equal(after.scheduler.prefixHitTokens - before.scheduler.prefixHitTokens, cached.cachedPromptTokens);
  // One inter-token gap per generated token after the first, each within the generation's span.
  const gaps = cached.timings.interTokenMs;
  assert.equal(gaps.length, cached.tokens.length - 1);
  assert.ok(gaps.every((g) => g >= 0));
  assert.ok(gaps.reduce((a, g) => a + g, 0) <= cached.timings.genMs + 1e-6, 'gaps add up to at most the generation time');
  // Reference without reuse, other KV layout: a fresh model.
  const fresh = await loadModel(path, { threads: 2, contextSize: 256, parallel: 1, kv: 'contiguous' });
  try {
    const uncached = await fresh.complete(turn2, GREEDY);
    assert.equal(uncached.cachedPromptTokens, 0);
    assert.deepEqual(cached.tokens, uncached.tokens);
  } finally {
    await fresh.dispose();
  }
});

test('under a memory budget (weights streamed per token) the tokens are the same', async () => {
  // The smallest budget the planner accepts streams most layers; ask it for that minimum.
  const opts = { threads: 2, contextSize: 256, parallel: 1 };
  const minimum = await loadModel(path, { ...opts, memoryBudget: 1 }).then(
    () => assert.fail('a 1-byte budget must be refused'),
    (e: unknown) => (assert.ok(e instanceof InsufficientMemoryError), e.minimum),
  );
  const budgeted = await loadModel(path, { ...opts, memoryBudget: minimum + (1 << 20) });
  const resident = await loadModel(path, opts); // same requests in the same order, no budget
  try {
    const stats = (await budgeted.stats()) as { weights: { mode: string } };
    assert.equal(stats.weights.mode, 'streaming');
    for (const p of [PROMPTS[1]!, PROMPTS[2]!]) {
      const sampled = { temperature: 0.8, seed: 5, maxTokens: 24 };
      assert.deepEqual((await budgeted.complete(p, GREEDY)).tokens, (await resident.complete(p, GREEDY)).tokens);
      assert.deepEqual((await budgeted.complete(p, sampled)).tokens, (await resident.complete(p, sampled)).tokens);
    }
  } finally {
    await budgeted.dispose();
    await resident.dispose();
  }
});

test('same seed, same sampled output; different seeds, different outputs', async () => {
  const opts = { temperature: 1, topK: 0, topP: 1, minP: 0, maxTokens: 24 };
  const a = await model.complete(PROMPTS[0]!, { ...opts, seed: 1234 });
  const b = await model.complete(PROMPTS[0]!, { ...opts, seed: 1234 });
  const c = await model.complete(PROMPTS[0]!, { ...opts, seed: 98765 });
  assert.deepEqual(a.tokens, b.tokens);
  assert.equal(a.text, b.text);
  assert.notDeepEqual(a.tokens, c.tokens);
});

test('streaming chunks add up to the result; maxTokens ends with length', async () => {
  const gen = model.generate(PROMPTS[1]!, { ...GREEDY, maxTokens: 10 });
  const chunks = [];
  for await (const c of gen) chunks.push(c);
  const r = await gen.result;
  assert.equal(r.finishReason, 'length');
  assert.equal(r.tokens.length, 10);
  assert.equal(chunks.map((c) => c.text).join(''), r.text);
  assert.deepEqual(chunks.flatMap((c) => c.tokens), r.tokens);
  assert.equal(r.text.trim(), model.detokenize(r.tokens).trim());
  assert.equal(r.promptTokens, model.tokenize(PROMPTS[1]!, { addBos: true }).length);
});

test('a stop string ends generation before it and is not emitted', async () => {
  const full = await model.complete(PROMPTS[0]!, GREEDY);
  // A stop string from the middle of the greedy text.
  const mid = Math.floor(full.text.length / 2);
  const stop = full.text.slice(mid, mid + 3);
  const cut = full.text.indexOf(stop);
  const gen = model.generate(PROMPTS[0]!, { ...GREEDY, stop: ['\u0000never', stop] });
  let streamed = '';
  for await (const c of gen) streamed += c.text;
  const r = await gen.result;
  assert.equal(r.finishReason, 'stop');
  assert.equal(r.text, full.text.slice(0, cut));
  assert.equal(streamed, r.text);
});

test('evaluate: last-token logits pick the first greedy token; allLogits gives every row', async () => {
  const tokens = model.tokenize(PROMPTS[3]!, { addBos: true });
  const V = model.info.vocabSize;
  const last = await model.evaluate(tokens);
  assert.equal(last.length, V);
  const all = await model.evaluate(tokens, { allLogits: true });
  assert.equal(all.length, tokens.length * V);
  let best = 0;
  for (let i = 1; i < V; i++) if (last[i]! > last[best]!) best = i;
  const r = await model.complete(tokens, { ...GREEDY, maxTokens: 1 });
  assert.equal(r.tokens[0], best);
  // The last row of allLogits is the same computation.
  const lastRow = all.subarray((tokens.length - 1) * V);
  for (let i = 0; i < V; i += 997) assert.ok(Math.abs(lastRow[i]! - last[i]!) < 1e-4);
});

test('abort stops a generation at once with finishReason abort', async () => {
  const ac = new AbortController();
  const gen = model.generate(PROMPTS[0]!, { ...GREEDY, maxTokens: 200, signal: ac.signal });
  let n = 0;
  for await (const c of gen) {
    n += c.tokens.length;
    if (n >= 3) ac.abort();
  }
  const r = await gen.result;
  assert.equal(r.finishReason, 'abort');
  assert.ok(r.tokens.length < 200);
  // The engine keeps serving.
  assert.equal((await model.complete(PROMPTS[0]!, { ...GREEDY, maxTokens: 2 })).tokens.length, 2);
});

test('leaving the stream loop early aborts the generation', async () => {
  const gen = model.generate(PROMPTS[2]!, { ...GREEDY, maxTokens: 200 });
  for await (const c of gen) if (c.tokens.length > 0) break;
  const r = await gen.result;
  assert.equal(r.finishReason, 'abort');
  assert.ok(r.tokens.length < 200);
});

test('bad input: typed errors with clear messages', async () => {
  // Unsupported architecture.
  const mamba = join(dir, 'mamba.gguf');
  await writeGguf(mamba, [['general.architecture', gv.str('mamba')]], []);
  await assert.rejects(loadModel(mamba), (e: unknown) => {
    assert.ok(e instanceof UnsupportedArchitectureError);
    assert.equal(e.message, `architecture 'mamba' is not supported; supported: ${supportedArchitectures().join(', ')}`);
    assert.ok(['llama', 'qwen2', 'qwen3', 'smollm3'].every((a) => supportedArchitectures().includes(a)));
    return true;
  });
  // Prompt longer than the context.
  const long = new Uint32Array(300).fill(100);
  assert.throws(() => model.generate(long), (e: unknown) => {
    assert.ok(e instanceof ContextOverflowError);
    assert.equal(e.numTokens, 300);
    assert.equal(e.contextSize, 256);
    assert.match(e.message, /300 tokens .* 256/);
    return true;
  });
  await assert.rejects(model.evaluate(long), ContextOverflowError);
  // Wrong option values.
  for (const [opts, name] of [
    [{ threads: 0 }, 'threads'],
    [{ parallel: 1.5 }, 'parallel'],
    [{ contextSize: -1 }, 'contextSize'],
    [{ kv: 'radix' }, 'kv'],
  ] as const) {
    await assert.rejects(loadModel(path, opts as never), (e: unknown) => e instanceof InvalidOptionError && e.option === name && e.message.startsWith(`${name}: `));
  }
  assert.throws(() => model.generate('x', { temperature: -1 }), (e: unknown) => e instanceof InvalidOptionError && e.option === 'temperature');
  assert.throws(() => model.generate('x', { maxTokens: -5 }), (e: unknown) => e instanceof InvalidOptionError && e.option === 'maxTokens');
  assert.throws(() => model.generate('x', { stop: [1 as never] }), InvalidOptionError);
  // An aborted load.
  await assert.rejects(loadModel(path, { signal: AbortSignal.abort() }), { name: 'AbortError' });
  // A disposed model.
  const m2 = await loadModel(path, { threads: 1, contextSize: 64, parallel: 1 });
  await m2.dispose();
  assert.throws(() => m2.generate('x'), ModelDisposedError);
});
