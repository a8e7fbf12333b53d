/**
 * The FlexInfer invariant for Mixture-of-Experts models: the expert cache changes where experts
 * live (a slot, or the file), never what the model computes. On a synthetic Mixtral-style file,
 * all-position prompt logits and greedy tokens are bit-identical with no budget and with
 * budgets whose expert cache holds 50%, 25% and 12.5% of the experts (the dense tensors
 * resident, as the planner puts them first), with prefetch on and off, global and per-layer
 * caches, every eviction policy; and a batch of sequences sharing experts gives each sequence
 * the tokens it gets alone. The run statistics report hit rates, bytes read and prediction.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { readGguf } from '../gguf/reader.js';
import { planInputs } from '../weights/create.js';
import { planMoe } from '../weights/expert-plan.js';
import { loadModel, type ExpertOptions, type LoadModelOptions } from './model.js';
import { assertSameBits } from './testing.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-moe-inv-'));
const PATH = join(dir, 'tiny-mixtral-q8_0.gguf');
const PROMPT = 'Once upon a time, in a small town, there lived';
const GEN_TOKENS = 8;
const LOAD: LoadModelOptions = { threads: 2, contextSize: 64, parallel: 1 };

interface ExpertStats {
  mode: string;
  policy: string;
  numSlots: number;
  allResident: boolean;
  lookups: number;
  hits: number;
  hitRate: number;
  layerHits: number[];
  reads: number;
  bytesRead: number;
  prefetchReads: number;
  predictionAccuracy: number;
  predictedLookups: number;
  predictedLookupsByDistance: number[];
  predictionAccuracyByDistance: number[];
  waves: number;
  passes: number;
}

interface Outcome {
  logits: Float32Array;
  tokens: number[];
  experts?: ExpertStats;
  mode: string;
}

async function run(budget: number | undefined, experts?: ExpertOptions): Promise<Outcome> {
  const model = await loadModel(PATH, { ...LOAD, ...(budget === undefined ? {} : { memoryBudget: budget }), ...(experts ? { experts } : {}) });
  try {
    const prompt = model.tokenize(PROMPT, { addBos: true });
    const logits = await model.evaluate(prompt, { allLogits: true });
    const r = await model.complete(prompt, { temperature: 0, repeatPenalty: 1, maxTokens: GEN_TOKENS });
    assert.equal(r.tokens.length, GEN_TOKENS);
    const stats = (await model.stats()) as { weights: { mode: string; experts?: ExpertStats } };
    return { logits, tokens: [...r.tokens], mode: stats.weights.mode, ...(stats.weights.experts ? { experts: stats.weights.experts } : {}) };
  } finally {
    await model.dispose();
  }
}

let reference: Outcome;
/** Budgets whose expert cache holds about this share of all experts (dense part resident). */
const budgetFor = new Map<number, number>();

before(async () => {
  await synthesize(PATH, 'tiny-mixtral', 'q8_0', { seed: 11 });
  reference = await run(undefined);
  assert.equal(reference.mode, 'resident');
  // The planner's own figures: what the dense part takes with everything resident, and the
  // bytes of one slot; a budget of dense + f * (all slots) gives the cache a share f.
  const file = await readGguf(PATH);
  const probe = await loadModel(PATH, { ...LOAD, memoryBudget: file.fileSize * 10 });
  const split = ((await probe.stats()) as { weights: { plan: { split: { total: number; experts: number } } } }).weights.plan.split;
  await probe.dispose();
  const all = planMoe(planInputs(file), { budget: file.fileSize * 10, hardware: { readBytesPerSec: 1e9 }, numExperts: 8, numExpertsUsed: 2 });
  const slotBytes = all.experts.slotBytes[0]!;
  const numAll = all.experts.numLayers * all.experts.numExperts;
  assert.equal(split.experts, numAll * slotBytes);
  const dense = split.total - split.experts;
  for (const f of [0.5, 0.25, 0.125]) budgetFor.set(f, dense + Math.round(f * numAll) * slotBytes);
});

after(() => rmSync(dir, { recursive: true, force: true }));

for (const share of [0.5, 0.25, 0.125]) {
  for (const prefetch of [true, false]) {
    test(`MoE: same logits and tokens with the expert cache at ${share * 100}% of the experts, prefetch ${prefetch ? 'on' : 'off'}`, async () => {
      const r = await run(budgetFor.get(share)!, { prefetch });
      assertSameBits(r.logits, reference.logits, `${share * 100}%`);
      assert.deepEqual(r.tokens, reference.tokens);
      const e = r.experts!;
      assert.equal(r.mode, 'experts');
      assert.equal(e.numSlots, Math.round(share * 32));
      assert.ok(e.lookups > 0 && e.hits <= e.lookups && e.reads > 0 && e.bytesRead > 0, JSON.stringify(e));
      assert.equal(e.layerHits.length, 4);
      if (prefetch) assert.ok(e.predictedLookups > 0 && e.predictionAccuracy > 0, `prediction: ${e.predictionAccuracy}`);
      else assert.equal(e.prefetchReads, 0);
    });
  }
}

test('MoE: predicting 2 and 3 layers ahead gives the same logits and tokens as 1 (both layouts), each distance scored', async () => {
  for (const cache of ['per-layer', 'global'] as const) {
    for (const lookahead of [1, 2, 3]) {
      const r = await run(budgetFor.get(0.25)!, { cache, lookahead });
      assertSameBits(r.logits, reference.logits, `${cache} lookahead ${lookahead}`);
      assert.deepEqual(r.tokens, reference.tokens);
      const e = r.experts!;
      // 4 layers: layer l predicts l+1 .. l+lookahead, so every distance up to 3 has lookups.
      assert.equal(e.predictedLookupsByDistance.length, lookahead, JSON.stringify(e.predictedLookupsByDistance));
      e.predictedLookupsByDistance.forEach((n, d) => assert.ok(n > 0, `distance ${d + 1}: no lookups`));
      assert.ok(e.predictionAccuracyByDistance.every((a) => a >= 0 && a <= 1));
      assert.ok(e.predictionAccuracyByDistance[0]! > 0);
    }
  }
});

test('MoE: every policy and both cache layouts give the same tokens (12.5%: prompt steps run in waves)', async () => {
  for (const experts of [
    { cache: 'global', policy: 'lru' },
    { cache: 'global', policy: 'lfu' },
    { cache: 'per-layer', policy: 'least-stale' },
  ] as ExpertOptions[]) {
    const budget = experts.cache === 'per-layer' ? budgetFor.get(0.25)! : budgetFor.get(0.125)!;
    const r = await run(budget, experts);
    assertSameBits(r.logits, reference.logits, JSON.stringify(experts));
    assert.deepEqual(r.tokens, reference.tokens);
    assert.equal(r.experts!.mode, experts.cache);
    assert.equal(r.experts!.policy, experts.policy);
    // 4 slots for up to 8 experts of a 12-token prompt step: more than one wave per step.
    if (experts.cache === 'global') assert.ok(r.experts!.waves > r.experts!.passes * 4, `waves ${r.experts!.waves}`);
  }
});

test('MoE: sequences batched together (sharing experts) get the tokens they get alone', async () => {
  const prompts = ['Once upon a time', 'The little dog', 'In a small town, there lived', 'Tom and Lily'];
  const solo: number[][] = [];
  {
    const model = await loadModel(PATH, { ...LOAD, memoryBudget: budgetFor.get(0.25)! });
    try {
      for (const p of prompts) solo.push([...(await model.complete(p, { temperature: 0, repeatPenalty: 1, maxTokens: GEN_TOKENS })).tokens]);
    } finally {
      await model.dispose();
    }
  }
  // The KV pool of 4 sequences is a tenant of the budget too: 4 MiB more than for one.
  const model = await loadModel(PATH, { ...LOAD, parallel: 4, memoryBudget: budgetFor.get(0.25)! + 4 * 2 ** 20 });
  try {
    const together = await Promise.all(prompts.map((p) => model.complete(p, { temperature: 0, repeatPenalty: 1, maxTokens: GEN_TOKENS })));
    together.forEach((r, i) => assert.deepEqual([...r.tokens], solo[i], `sequence ${i}`));
    // They did run together: several rows per forward pass.
    const sched = ((await model.stats()) as { scheduler: { steps: number; rows: number } }).scheduler;
    assert.ok(sched.rows / sched.steps > 2, `${sched.rows} rows in ${sched.steps} steps`);
  } finally {
    await model.dispose();
  }
});

test('qwen3moe q4_k_m (experts of two sizes: Q6_K ffn_down in some layers): same logits and tokens at about 25% and 12.5% of the experts, both layouts', async () => {
  const path = join(dir, 'tiny-qwen3moe-q4_k_m.gguf');
  await synthesize(path, 'tiny-qwen3moe', 'q4_k_m', { seed: 4 });
  const once = async (budget: number | undefined, experts?: ExpertOptions) => {
    const model = await loadModel(path, { ...LOAD, ...(budget === undefined ? {} : { memoryBudget: budget }), ...(experts ? { experts } : {}) });
    try {
      const prompt = model.tokenize(PROMPT, { addBos: true });
      const logits = await model.evaluate(prompt, { allLogits: true });
      const r = await model.complete(prompt, { temperature: 0, repeatPenalty: 1, maxTokens: GEN_TOKENS });
      const w = ((await model.stats()) as { weights: { plan: { split: { total: number; experts: number } }; experts?: ExpertStats } }).weights;
      return { logits, tokens: [...r.tokens], split: w.plan.split, experts: w.experts };
    } finally {
      await model.dispose();
    }
  };
  const ref = await once(undefined);
  const file = await readGguf(path);
  const all = await once(file.fileSize * 10);
  assertSameBits(all.logits, ref.logits, 'all experts cached');
  const dense = all.split.total - all.split.experts;
  for (const [share, cache] of [[0.25, 'per-layer'], [0.125, 'global']] as const) {
    const r = await once(dense + Math.floor(share * all.split.experts), { cache });
    assertSameBits(r.logits, ref.logits, `${share * 100}% ${cache}`);
    assert.deepEqual(r.tokens, ref.tokens);
    assert.equal(r.experts!.mode, cache);
    assert.ok(r.experts!.reads > 0);
  }
});

test('MoE: bad expert options are typed errors', async () => {
  await assert.rejects(loadModel(PATH, { ...LOAD, experts: { policy: 'mru' as never } }), /experts.policy: must be lru, lfu or least-stale/);
  await assert.rejects(loadModel(PATH, { ...LOAD, experts: { cache: 'shared' as never } }), /experts.cache/);
  await assert.rejects(loadModel(PATH, { ...LOAD, experts: { prefetch: 'yes' as never } }), /experts.prefetch/);
  await assert.rejects(loadModel(PATH, { ...LOAD, experts: { lookahead: 5 } }), /experts.lookahead: must be an integer from 1 to 4/);
});
