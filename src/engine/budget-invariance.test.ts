/**
 * The issue-4 invariant: a memory budget changes where weights live (resident or streamed
 * layer by layer from the file), never what the model computes. Greedy tokens and every
 * logit are bit-identical with no budget, with budgets of 75%, 50% and 25% of the file and at
 * the planner's minimum; a budget below the minimum is a typed error naming that minimum.
 *
 * Two synthetic models: tiny-15m q8_0 (its minimum, dominated by KV and scratch, is above
 * its file size, so its budgets sit between the minimum and the all-resident total) and
 * tinyllama-1.1b q4_0 (620 MB file, minimum ~140 MB: 25% of the file really streams).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { SYNTH_PRESETS, type SynthPreset } from '../synth/presets.js';
import { readGguf } from '../gguf/reader.js';
import { loadModel } from './model.js';
import { InsufficientMemoryError } from '../errors.js';
import { assertSameBits } from './testing.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-budget-inv-'));
const TINY = join(dir, 'tiny-15m-q8_0.gguf');
const TL = join(dir, 'tinyllama-1.1b-q4_0.gguf');
const PROMPT = 'Once upon a time, in a small town,';
const GEN_TOKENS = 8;
// Small context: the KV cache is part of the budget and is not what this test is about.
const LOAD = { threads: 2, contextSize: 64, parallel: 1 } as const;
const LONG = { timeout: 15 * 60_000 };

interface WeightStats {
  mode: 'resident' | 'streaming';
  plan: { budget: number | null; split: { total: number }; residentBytes: number; outputSlices?: { numSlices: number } };
  streaming?: { tokens: number; bytesRead: number; bytesReadPerToken: number; residentBytes: number };
}

interface RunOutcome {
  logits: Float32Array;
  tokens: number[];
  weights: WeightStats;
}

/** Loads `path` under `budget`, takes all-position logits of the prompt and 8 greedy tokens. */
async function run(path: string, budget: string | number | undefined): Promise<RunOutcome> {
  const model = await loadModel(path, { ...LOAD, ...(budget === undefined ? {} : { memoryBudget: budget }) });
  try {
    const prompt = model.tokenize(PROMPT, { addBos: true });
    const logits = await model.evaluate(prompt, { allLogits: true }); // [n, vocab]
    assert.equal(logits.length, prompt.length * model.info.vocabSize);
    const r = await model.complete(prompt, { temperature: 0, repeatPenalty: 1, maxTokens: GEN_TOKENS });
    assert.equal(r.tokens.length, GEN_TOKENS, 'expected exactly 8 generated tokens (no EOS on random weights)');
    const stats = (await model.stats()) as { weights: WeightStats };
    return { logits, tokens: [...r.tokens], weights: stats.weights };
  } finally {
    await model.dispose();
  }
}

/** The minimum budget, read from the error a 1-byte budget must give. */
async function minimumOf(path: string): Promise<number> {
  const err = await loadModel(path, { ...LOAD, memoryBudget: 1 }).then(
    async (m) => {
      await m.dispose();
      return assert.fail('a 1-byte budget loaded');
    },
    (e: unknown) => e,
  );
  assert.ok(err instanceof InsufficientMemoryError, `expected InsufficientMemoryError, got ${String(err)}`);
  assert.equal(err.name, 'InsufficientMemoryError');
  assert.ok(Number.isSafeInteger(err.minimum) && err.minimum > 1, `minimum ${err.minimum}`);
  assert.equal(err.budget, 1);
  assert.match(err.message, new RegExp(`minimum of ${err.minimum} bytes`), 'the message must say the minimum');
  return err.minimum;
}

/**
 * Bytes a streaming pass must read, from the file's tensor table: every tensor except the ones
 * kept resident and, when the file has its own output matrix, token_embd (whose rows are read
 * on lookup, not per pass; a tied token_embd is the resident output matrix).
 */
async function streamedPerPass(path: string, residentBytes: number): Promise<number> {
  const f = await readGguf(path);
  const tied = !f.tensors.some((t) => t.name === 'output.weight');
  const all = f.tensors.filter((t) => tied || t.name !== 'token_embd.weight').reduce((s, t) => s + t.byteSize, 0);
  return all - residentBytes;
}

/** Asserts that weights really were streamed: each pass read all non-resident tensors. */
async function assertStreamed(path: string, w: WeightStats, label: string): Promise<void> {
  assert.equal(w.mode, 'streaming', `${label}: expected a streaming plan`);
  const s = w.streaming!;
  assert.ok(s.tokens >= GEN_TOKENS, `${label}: ${s.tokens} passes`);
  assert.ok(s.bytesReadPerToken > 0, `${label}: no bytes read per token`);
  // The plan's resident set (the store's residentBytes adds its own alignment padding).
  const perPass = await streamedPerPass(path, w.plan.residentBytes);
  assert.ok(perPass > 0, `${label}: ${perPass} bytes per pass left to stream (resident ${w.plan.residentBytes})`);
  // A prefetch of the next pass may already be counted: allow up to one extra pass.
  assert.ok(s.bytesRead >= s.tokens * perPass && s.bytesRead <= (s.tokens + 1) * perPass, `${label}: read ${s.bytesRead} bytes in ${s.tokens} passes, expected ${perPass} per pass`);
}

before(async () => {
  await synthesize(TINY, 'tiny-15m', 'q8_0', { seed: 5 });
  await synthesize(TL, 'tinyllama-1.1b', 'q4_0', { seed: 5 });
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('tiny-15m q8_0: tokens and logits are bit-identical from all-resident down to the minimum budget', LONG, async () => {
  const ref = await run(TINY, undefined);
  assert.equal(ref.weights.mode, 'resident');
  const total = ref.weights.plan.split.total; // what an all-resident load needs
  const min = await minimumOf(TINY);
  assert.ok(min < total, `minimum ${min} is not below the all-resident total ${total}`);
  // 75%, 50%, 25% of the way from the minimum to all-resident, and the minimum itself.
  for (const p of [0.75, 0.5, 0.25, 0]) {
    const budget = Math.floor(min + p * (total - min));
    const label = `budget ${budget} (minimum + ${p * 100}%)`;
    const got = await run(TINY, budget);
    assert.equal(got.weights.plan.budget, budget, label);
    assert.ok(got.weights.plan.split.total <= budget, `${label}: plan total ${got.weights.plan.split.total}`);
    assert.deepEqual(got.tokens, ref.tokens, `${label}: tokens`);
    assertSameBits(got.logits, ref.logits, label);
    await assertStreamed(TINY, got.weights, label);
  }
});

test('tinyllama-1.1b q4_0: tokens and logits are bit-identical at 75%, 50%, 25% of the file and at the minimum', LONG, async () => {
  const fileSize = statSync(TL).size;
  const ref = await run(TL, undefined);
  assert.equal(ref.weights.mode, 'resident');
  const min = await minimumOf(TL);
  assert.ok(min < fileSize / 4, `minimum ${min} is not below 25% of the file (${fileSize}): the 25% point would not load`);
  const budgets: Array<[string | number, number, string]> = [
    ['75%', Math.floor(fileSize * 0.75), '75% of the file'],
    ['50%', Math.floor(fileSize * 0.5), '50% of the file'],
    ['25%', Math.floor(fileSize * 0.25), '25% of the file'],
    [min, min, 'the minimum'],
  ];
  for (const [budget, bytes, what] of budgets) {
    const label = `budget ${bytes} (${what})`;
    const got = await run(TL, budget);
    assert.equal(got.weights.plan.budget, bytes, `${label}: the budget the planner used`);
    assert.ok(got.weights.plan.split.total <= bytes, `${label}: plan total ${got.weights.plan.split.total}`);
    assert.deepEqual(got.tokens, ref.tokens, `${label}: tokens`);
    assertSameBits(got.logits, ref.logits, label);
    await assertStreamed(TL, got.weights, label);
    // At the minimum even the output matrix streams, in slices (its logits computed slice by
    // slice: the prompt's 9+ rows through the temp, the generated tokens' one row in place).
    if (budget === min) assert.ok((got.weights.plan.outputSlices?.numSlices ?? 0) >= 3, `${label}: the output matrix is not sliced`);
  }
});

// The architectures of issue 11, narrow (256 wide, 4 layers): their own blocks (q/k norms, sliding
// window and post-norms, fused projections, layers without RoPE, soft-capping) must stream as the
// llama block does.
const ARCH_FILES: Array<[string, string, Partial<SynthPreset>]> = [
  ['gemma3', 'gemma-3-1b', { nKvHeads: 1, headDim: 64, slidingWindow: 8 }],
  ['phi3', 'phi-3.5-mini', { headDim: 64, ropeDim: 48 }],
  ['qwen3', 'qwen3-0.6b', { headDim: 128 }],
  ['smollm3', 'smollm3-3b', {}],
  ['gemma2', 'gemma-2-2b', { headDim: 64, slidingWindow: 8 }],
];

test('gemma3, phi3, qwen3, smollm3, gemma2 (shrunk, q8_0): tokens and logits are bit-identical at 50% and 25% of the way from the minimum to all-resident', LONG, async () => {
  for (const [arch, name, o] of ARCH_FILES) {
    const path = join(dir, `${arch}-shrunk-q8_0.gguf`);
    const preset: SynthPreset = { ...SYNTH_PRESETS[name]!, name: `${name}-shrunk`, dim: 256, nLayers: 4, nHeads: 4, nKvHeads: 2, ffn: 512, ...o };
    await synthesize(path, preset, 'q8_0', { seed: 5 });
    const ref = await run(path, undefined);
    assert.equal(ref.weights.mode, 'resident');
    // All-resident counts an untied token_embd that a budget plan reads row by row (on lookup):
    // above total minus its bytes nothing is left to stream (phi3's own output matrix).
    const f = await readGguf(path);
    const embd = f.tensors.some((t) => t.name === 'output.weight') ? f.tensors.find((t) => t.name === 'token_embd.weight')!.byteSize : 0;
    const total = ref.weights.plan.split.total - embd;
    const min = await minimumOf(path);
    assert.ok(min < total, `${arch}: minimum ${min} is not below the all-resident total ${total} (token_embd ${embd} excluded)`);
    for (const p of [0.5, 0.25]) {
      const budget = Math.floor(min + p * (total - min));
      const label = `${arch}: budget ${budget} (minimum + ${p * 100}%)`;
      const got = await run(path, budget);
      assert.ok(got.weights.plan.split.total <= budget, `${label}: plan total ${got.weights.plan.split.total}`);
      assert.deepEqual(got.tokens, ref.tokens, `${label}: tokens`);
      assertSameBits(got.logits, ref.logits, label);
      await assertStreamed(path, got.weights, label);
    }
    rmSync(path);
  }
});

test('a budget one byte below the minimum is InsufficientMemoryError saying the minimum', LONG, async () => {
  for (const path of [TINY, TL]) {
    const min = await minimumOf(path);
    await assert.rejects(loadModel(path, { ...LOAD, memoryBudget: min - 1 }), (e: unknown) => {
      assert.ok(e instanceof InsufficientMemoryError, String(e));
      assert.equal(e.budget, min - 1);
      assert.equal(e.minimum, min);
      assert.match(e.message, new RegExp(`budget of ${min - 1} bytes .* below the minimum of ${min} bytes`));
      return true;
    });
  }
});

test("tinyllama-1.1b q4_0: loadModel(file, { memoryBudget: '50%' }) with default options runs (elastic pool) at the file's context; the static split loads there only by streaming its output matrix", LONG, async () => {
  // Defaults: parallel 4, contextSize 2048 (the file's). The static split reserves KV for 4
  // full-context sequences (187 MiB of the 296 MiB budget): its weights get only their minimum,
  // which streams even the output matrix in slices (weights/output-slices.ts). The elastic pool
  // keeps one sequence as the KV floor and lends the rest to the weights.
  // (Without a contextSize the static split loads at a smaller context: context-fit.test.ts.)
  const staticSplit = await loadModel(TL, { memoryBudget: '50%', memoryPool: 'static', contextSize: 2048 });
  let staticResident: number;
  try {
    const stats = (await staticSplit.stats()) as { weights: { plan: { residentBytes: number; outputSlices?: { numSlices: number } } } };
    assert.ok(stats.weights.plan.outputSlices && stats.weights.plan.outputSlices.numSlices >= 3, `static split: ${JSON.stringify(stats.weights.plan)}`);
    staticResident = stats.weights.plan.residentBytes;
  } finally {
    await staticSplit.dispose();
  }
  // One sequence more and even the sliced minimum does not fit: the error speaks the API's terms.
  await assert.rejects(loadModel(TL, { memoryBudget: '50%', memoryPool: 'static', contextSize: 2048, parallel: 5 }), (e: unknown) => {
    assert.ok(e instanceof InsufficientMemoryError, String(e));
    assert.match(e.message, /5 sequences of 2048 tokens/);
    assert.match(e.message, /lower contextSize or parallel/);
    return true;
  });
  const model = await loadModel(TL, { memoryBudget: '50%' });
  try {
    assert.equal(model.info.parallel, 4);
    assert.equal(model.info.contextSize, 2048);
    const r = await model.complete(PROMPT, { temperature: 0, repeatPenalty: 1, maxTokens: GEN_TOKENS });
    assert.equal(r.tokens.length, GEN_TOKENS);
    const stats = (await model.stats()) as { pool: { mode: string; budget: number; floorBytes: number; poolBytes: number; now: { residentBytes: number } } };
    assert.equal(stats.pool.mode, 'elastic');
    assert.equal(stats.pool.budget, Math.floor(statSync(TL).size * 0.5));
    assert.ok(stats.pool.floorBytes > 40 * 2 ** 20 && stats.pool.floorBytes < 50 * 2 ** 20, `floor ${stats.pool.floorBytes}: one sequence of 2048 tokens`);
    assert.ok(stats.pool.now.residentBytes > staticResident + 64 * 2 ** 20, `elastic resident ${stats.pool.now.residentBytes} vs static ${staticResident}`);
  } finally {
    await model.dispose();
  }
});
