import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InsufficientMemoryError } from '../errors.js';
import { planMoe, expertSizes } from './expert-plan.js';
import { residentFootprint, type PlanTensorInput } from './plan.js';
import type { TensorKind } from './tensors.js';

const U = 4096;

/** A MoE tensor list: per layer attention (q/k/v/o), norms, router and three stacked expert tensors. */
function moeModel(L: number, E: number, expertPart: (l: number) => [number, number, number], attn = [4 * U, U, U, 4 * U]): PlanTensorInput[] {
  const out: PlanTensorInput[] = [{ name: 'token_embd.weight', layer: -1, kind: 'token_embd', bytes: 64 * U, rowBytes: U }];
  for (let l = 0; l < L; l++) {
    out.push({ name: `blk.${l}.attn_norm.weight`, layer: l, kind: 'norm', bytes: 64 });
    (['attn_q', 'attn_k', 'attn_v', 'attn_output'] as TensorKind[]).forEach((k, i) => out.push({ name: `blk.${l}.${k}.weight`, layer: l, kind: k, bytes: attn[i]! }));
    out.push({ name: `blk.${l}.ffn_norm.weight`, layer: l, kind: 'norm', bytes: 64 });
    out.push({ name: `blk.${l}.ffn_gate_inp.weight`, layer: l, kind: 'ffn_gate_inp', bytes: 4 * E * 64 });
    const [g, u, d] = expertPart(l);
    out.push({ name: `blk.${l}.ffn_gate_exps.weight`, layer: l, kind: 'ffn_gate_exps', bytes: g * E });
    out.push({ name: `blk.${l}.ffn_up_exps.weight`, layer: l, kind: 'ffn_up_exps', bytes: u * E });
    out.push({ name: `blk.${l}.ffn_down_exps.weight`, layer: l, kind: 'ffn_down_exps', bytes: d * E });
  }
  out.push({ name: 'output_norm.weight', layer: -1, kind: 'norm', bytes: 64 });
  out.push({ name: 'output.weight', layer: -1, kind: 'output', bytes: 8 * U });
  return out;
}

const IO = { readBytesPerSec: 1e9, computeBytesPerSec: 1e12 };

/** Resident bytes of everything but the experts and token_embd. */
function denseResident(tensors: PlanTensorInput[]): number {
  return tensors.filter((t) => !t.kind.endsWith('_exps') && t.kind !== 'token_embd').reduce((a, t) => a + residentFootprint(t.bytes), 0);
}

test('expert plan, hand-checked: dense resident first, then 3 slots per layer', () => {
  const L = 4;
  const E = 8;
  const tensors = moeModel(L, E, () => [U, U, U]);
  const dense = denseResident(tensors);
  const slot = 3 * U;
  const plan = planMoe(tensors, { budget: dense + 3 * L * slot, hardware: IO, numExperts: E, numExpertsUsed: 2 });
  assert.equal(plan.experts.mode, 'per-layer');
  assert.deepEqual(plan.experts.slots, [3, 3, 3, 3]);
  assert.deepEqual(plan.experts.expertBytes, [slot, slot, slot, slot]);
  assert.equal(plan.experts.expectedHitRate, 3 / 8);
  // Nothing dense streams; per token and layer 2 experts, each a miss with probability 5/8.
  assert.equal(plan.streamedBytesPerToken, L * 2 * (5 / 8) * slot);
  assert.equal(plan.split.experts, 12 * slot);
  assert.equal(plan.split.total, dense + 12 * slot);
  assert.equal(plan.budget, dense + 3 * L * slot);
  assert.ok(plan.tensors.filter((t) => t.kind === 'attn_q').every((t) => t.placement === 'resident'));
  assert.ok(plan.tensors.filter((t) => t.kind === 'ffn_gate_inp').every((t) => t.placement === 'resident'));
  assert.ok(plan.tensors.filter((t) => t.kind.endsWith('_exps')).every((t) => t.placement === 'experts'));
  assert.equal(plan.tensors.find((t) => t.kind === 'token_embd')!.placement, 'rows');
  // Equal expert sizes: global predicts the same time; the tie goes to per-layer.
  const g = plan.experts.options.find((o) => o.mode === 'global')!;
  assert.equal(g.numSlots, 12);
  assert.equal(g.predictedSecPerToken, plan.predictedSecPerToken);
  // One slot more: it goes to the middle layer first (spread order), not layer 0.
  const more = planMoe(tensors, { budget: dense + 13 * slot, hardware: IO, numExperts: E, numExpertsUsed: 2 });
  assert.deepEqual(more.experts.slots, [3, 3, 4, 3]);
});

test('expert plan: layers whose experts differ in size -> per-layer (global pads every slot to the largest)', () => {
  const tensors = moeModel(4, 8, (l) => [U, U, l % 2 === 0 ? 2 * U : U]);
  const plan = planMoe(tensors, { budget: denseResident(tensors) + 14 * 4 * U, hardware: IO, numExperts: 8, numExpertsUsed: 2 });
  const [pl, gl] = plan.experts.options;
  assert.equal(plan.experts.mode, 'per-layer');
  assert.ok(pl!.expectedHitRate > gl!.expectedHitRate, `${pl!.expectedHitRate} vs ${gl!.expectedHitRate}`);
  assert.deepEqual(plan.experts.slotBytes, [4 * U, 3 * U, 4 * U, 3 * U]);
  assert.equal(gl!.numSlots, 14);
});

test('expert plan: below k slots per layer the global cache is the one that fits; below its minimum a typed error', () => {
  const tensors = moeModel(4, 8, () => [U, U, U]);
  const dense = denseResident(tensors);
  const slot = 3 * U;
  const plan = planMoe(tensors, { budget: dense + 5 * slot, hardware: IO, numExperts: 8, numExpertsUsed: 2 });
  assert.equal(plan.experts.mode, 'global');
  assert.equal(plan.experts.numSlots, 5);
  assert.deepEqual(plan.experts.slots, [5]);
  // Forced per-layer (k = 2 slots in each of 4 layers) streams attention to make room, and is predicted slower.
  const forced = planMoe(tensors, { budget: dense + 5 * slot, hardware: IO, numExperts: 8, numExpertsUsed: 2, expertCache: 'per-layer' });
  assert.ok(forced.experts.slots.every((n) => n >= 2) && forced.experts.slots.length === 4);
  assert.ok(forced.streamedBytesPerToken > plan.streamedBytesPerToken);
  assert.ok(forced.predictedSecPerToken > plan.predictedSecPerToken);
  // The global minimum is 2k = 4 slots. One byte less: attention streams instead.
  const tight = planMoe(tensors, { budget: dense + 4 * slot - 1, hardware: IO, numExperts: 8, numExpertsUsed: 2, window: 1 });
  assert.equal(tight.experts.numSlots, 4);
  assert.ok(tight.layers.some((l) => l.streamedBytes > 0));
  // Not even the norms, output, one ring slot and the minimal cache: an error naming the cache.
  assert.throws(
    () => planMoe(tensors, { budget: 12 * slot, hardware: IO, numExperts: 8, numExpertsUsed: 2, window: 1 }),
    (e: unknown) => e instanceof InsufficientMemoryError && e.minimum > 12 * slot && /expert cache of at least 4 slots/.test(e.message),
  );
});

test('expert plan: enough budget -> every expert has a slot; no budget -> all resident', () => {
  const tensors = moeModel(3, 4, () => [U, U, U]);
  const all = planMoe(tensors, { budget: denseResident(tensors) + 3 * 4 * 3 * U + 1000 * U, hardware: IO, numExperts: 4, numExpertsUsed: 2 });
  assert.equal(all.experts.allResident, true);
  assert.equal(all.experts.expectedHitRate, 1);
  assert.equal(all.streamedBytesPerToken, 0);
  const none = planMoe(tensors, { budget: Infinity, hardware: IO, numExperts: 4, numExpertsUsed: 2 });
  assert.equal(none.experts.allResident, true);
  assert.equal(none.bytesReadPerToken, 0);
  assert.equal(none.strategy, 'all-resident + per-layer expert cache');
});

test('expert plan: properties over random MoE models and budgets (fits, hit rate grows with the budget)', () => {
  let seed = 7;
  const r = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 60; i++) {
    const L = 1 + Math.floor(r() * 8);
    const E = 2 + Math.floor(r() * 30);
    const k = 1 + Math.floor(r() * Math.min(E, 8));
    const tensors = moeModel(L, E, () => [U * (1 + Math.floor(r() * 3)), U, U * (1 + Math.floor(r() * 2))]);
    const total = tensors.reduce((a, t) => a + t.bytes, 0);
    let lastHit = -1;
    for (const frac of [0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5]) {
      const budget = Math.floor(total * frac);
      let plan;
      try {
        plan = planMoe(tensors, { budget, hardware: IO, numExperts: E, numExpertsUsed: k });
      } catch (e) {
        assert.ok(e instanceof InsufficientMemoryError, String(e));
        assert.ok(e.minimum > budget);
        continue;
      }
      assert.ok(plan.split.total <= budget, `plan ${plan.split.total} over budget ${budget}`);
      assert.ok(plan.experts.numSlots >= Math.min(2 * k, L * E));
      assert.ok(plan.experts.expectedHitRate >= lastHit - 1e-12, `hit rate fell from ${lastHit} to ${plan.experts.expectedHitRate} at ${frac}`);
      lastHit = plan.experts.expectedHitRate;
    }
  }
});

test('expert sizes: a stacked tensor that does not split into experts is an error', () => {
  const tensors = moeModel(2, 4, () => [U, U, U]);
  tensors.find((t) => t.name === 'blk.1.ffn_up_exps.weight')!.bytes += 1;
  assert.throws(() => expertSizes(tensors, 2, 4), /do not split into 4 experts/);
  const missing = moeModel(2, 4, () => [U, U, U]).filter((t) => t.name !== 'blk.0.ffn_down_exps.weight');
  assert.throws(() => expertSizes(missing, 2, 4), /layer 0 has 2 of the 3/);
});

test('expert plan for batched passes (rows = the server parallel): a per-layer cache smaller than a step\'s distinct experts loses to a global pool that holds a step and the next layer\'s prefetch (hand-computed)', () => {
  const L = 4;
  const E = 8;
  const k = 2;
  const tensors = moeModel(L, E, () => [U, U, U]);
  const dense = denseResident(tensors);
  const slot = 3 * U;
  const hw = { readBytesPerSec: 1e9, computeBytesPerSec: 1e9 };
  const one = planMoe(tensors, { budget: dense + 12 * slot, hardware: hw, numExperts: E, numExpertsUsed: k });
  assert.equal(one.experts.mode, 'per-layer', 'one row: the tie goes to per-layer, as before');
  assert.equal(one.experts.rows, 1);
  for (const o of one.experts.options) assert.equal(o.batchSecPerToken, o.predictedSecPerToken);
  const four = planMoe(tensors, { budget: dense + 12 * slot, hardware: hw, numExperts: E, numExpertsUsed: k, rows: 4 });
  // 4 rows choose 2 of 8 each: 8 (1 - (6/8)^4) = 5.46875 distinct experts per layer step; 3 slots per
  // layer cannot hold them (reads and compute add up), a global pool of 12 holds 2 x 5.47 (they overlap).
  const n = 8 * (1 - 0.75 ** 4);
  assert.ok(Math.abs(four.experts.expertsPerStep - n) < 1e-12);
  assert.equal(four.experts.mode, 'global');
  assert.equal(four.experts.rows, 4);
  // Per layer: dense bytes 10 U (q, k, v, o) + 2 norms of 64 + router 4 x 8 x 64; compute at 1e9 B/s;
  // reads n x (1 - 3/8) x 3 U at 1e9 B/s. Per pass: output 8 U / 1e9 + 4 embedding rows of U / 1e9.
  const compute = (10 * U + 128 + 2048 + n * 3 * U) / 1e9;
  const reads = (n * (5 / 8) * 3 * U) / 1e9;
  const head = (8 * U) / 1e9 + (4 * U) / 1e9;
  const perLayer = four.experts.options.find((o) => o.mode === 'per-layer')!;
  const global = four.experts.options.find((o) => o.mode === 'global')!;
  assert.ok(Math.abs(perLayer.batchSecPerToken - (head + L * (compute + reads)) / 4) < 1e-15);
  assert.ok(Math.abs(global.batchSecPerToken - (head + L * Math.max(compute, reads)) / 4) < 1e-15);
  // the one-row figures are the same in both plans
  assert.equal(global.predictedSecPerToken, one.experts.options.find((o) => o.mode === 'global')!.predictedSecPerToken);
});
