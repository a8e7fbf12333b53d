/**
 * The elastic pool's ladder (planLadder): nested plans through the planner's choice, each
 * level's memory as the plan accounts it, balanced layers at every level.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planLadder, planWithWindow, residentFootprint, streamFootprint, type PlanTensorInput } from './plan.js';
import type { TensorKind } from './tensors.js';
import { outputSliceLayout } from './output-slices.js';

const LAYER_KINDS: TensorKind[] = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'];

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** A random Llama-like model (sizes jittered per layer, as in mixed-quant files). */
function randomModel(r: () => number, vocab?: number): PlanTensorInput[] {
  const numLayers = 2 + Math.floor(r() * 30);
  const dim = 256 * (1 + Math.floor(r() * 12));
  const kvDim = dim / (1 << Math.floor(r() * 3));
  const ffn = dim * (2 + r() * 2);
  const bpe = [0.5625, 1.0625, 2][Math.floor(r() * 3)]!;
  const tensors: PlanTensorInput[] = [{ name: 'token_embd.weight', layer: -1, kind: 'token_embd', bytes: Math.round(dim * 1000 * bpe), rowBytes: Math.round(dim * bpe) }];
  for (let l = 0; l < numLayers; l++) {
    tensors.push({ name: `blk.${l}.attn_norm.weight`, layer: l, kind: 'norm', bytes: dim * 4 });
    const sizes: Record<string, number> = { attn_q: dim * dim, attn_k: dim * kvDim, attn_v: dim * kvDim, attn_output: dim * dim, ffn_gate: dim * ffn, ffn_up: dim * ffn, ffn_down: dim * ffn };
    for (const k of LAYER_KINDS) tensors.push({ name: `blk.${l}.${k}.weight`, layer: l, kind: k, bytes: Math.round(sizes[k]! * bpe * (0.9 + 0.2 * r())) });
  }
  // With `vocab`, a large output matrix the planner may stream in slices (rowBytes given).
  if (vocab !== undefined) tensors.push({ name: 'output.weight', layer: -1, kind: 'output', bytes: Math.round(dim * bpe) * vocab, rowBytes: Math.round(dim * bpe) });
  else tensors.push({ name: 'output.weight', layer: -1, kind: 'output', bytes: Math.round(dim * 1000 * bpe) });
  return tensors;
}

test('property: the ladder is nested, accounts memory as the plans do, and passes through the planner\'s plan', () => {
  const r = rng(2024);
  let checked = 0;
  for (let trial = 0; trial < 40; trial++) {
    const tensors = randomModel(r);
    const hardware = { readBytesPerSec: 2e8 + r() * 3e9, computeBytesPerSec: 1e9 + r() * 2e10 };
    const total = tensors.reduce((a, t) => a + t.bytes, 0);
    const scratch = Math.floor(r() * 1e6);
    const kv = Math.floor(r() * 1e6);
    const budget = Math.floor((0.3 + 0.6 * r()) * total);
    let ladder;
    try {
      ladder = planLadder(tensors, { budget, kvBytes: kv, scratchBytes: scratch, hardware });
    } catch {
      continue; // too small for this model: planWithWindow's error (tested in plan.test.ts)
    }
    const top = planWithWindow(tensors, { budget, kvBytes: kv, scratchBytes: scratch, hardware });
    assert.equal(ladder.strategy, top.strategy);
    assert.equal(ladder.window, top.window);
    // The planner's own plan is a level of the ladder: the longest prefix fitting the weight share.
    const k = ladder.levelFor(budget - kv - scratch);
    assert.ok(k >= 0);
    const p = ladder.planAt(k);
    assert.equal(p.predictedSecPerToken, top.predictedSecPerToken, `trial ${trial}: level ${k}`);
    assert.deepEqual(p.tensors.map((t) => t.placement), top.tensors.map((t) => t.placement));
    let prev: Set<string> | undefined;
    const maxTensor = Math.max(...tensors.filter((t) => LAYER_KINDS.includes(t.kind)).map((t) => streamFootprint(t.bytes)));
    for (let level = 0; level <= ladder.steps.length; level += Math.max(1, Math.floor(ladder.steps.length / 25))) {
      const plan = ladder.planAt(level);
      // Memory of a level = its plan's weights + stream buffers.
      assert.equal(ladder.weightBytes[level], plan.split.weights + plan.split.buffers, `level ${level}`);
      const resident = new Set(plan.tensors.filter((t) => t.placement === 'resident').map((t) => t.name));
      if (prev) for (const n of prev) assert.ok(resident.has(n), `level ${level} demoted ${n}, which a lower level kept`);
      prev = resident;
      // Balanced memory locking at every level: per-layer streamed bytes within one tensor.
      const streamed = plan.layers.map((l) => l.streamedBytes);
      assert.ok(Math.max(...streamed) - Math.min(...streamed) <= maxTensor, `level ${level} unbalanced: ${streamed.join(',')}`);
    }
    // levelFor: monotone in the bytes given, -1 below the minimum, and each answer fits.
    let last = -1;
    const maxBytes = Math.max(...ladder.weightBytes);
    for (let i = 0; i <= 50; i++) {
      const bytes = Math.floor((i / 50) * maxBytes * 1.1);
      const level = ladder.levelFor(bytes);
      assert.ok(level >= last, `levelFor not monotone at ${bytes}`);
      if (level >= 0) assert.ok(ladder.weightBytes[level]! <= bytes);
      else assert.ok(bytes < ladder.weightBytes[ladder.minLevel]!);
      last = level;
    }
    // The minimum resident set: least memory of the whole ladder, the always-resident tensors
    // included (the output matrix, or its slice buffers where the bottom level slices it).
    const bottomPlan = ladder.planAt(ladder.minLevel);
    const outputHeld = bottomPlan.outputSlices ? bottomPlan.outputSlices.bufferBytes : residentFootprint(tensors.find((t) => t.kind === 'output')!.bytes);
    const fixed = tensors.filter((t) => t.kind === 'norm').reduce((a, t) => a + residentFootprint(t.bytes), 0) + outputHeld;
    assert.equal(ladder.weightBytes[ladder.minLevel], Math.min(...ladder.weightBytes));
    assert.ok(ladder.weightBytes[ladder.minLevel]! >= fixed);
    checked++;
  }
  assert.ok(checked >= 20, `only ${checked} of 40 random models fit their budget`);
});

test('property: a large output matrix the top plan keeps resident is the first step, sliced at level 0 only, where the ring is the smallest', () => {
  const r = rng(77);
  let outputSteps = 0;
  let slicedTops = 0;
  let windowsAbove = 0;
  for (let trial = 0; trial < 40; trial++) {
    const tensors = randomModel(r, 32000 + Math.floor(r() * 230000));
    const out = tensors.findIndex((t) => t.kind === 'output');
    const hardware = { readBytesPerSec: 2e8 + r() * 3e9, computeBytesPerSec: 1e9 + r() * 2e10 };
    const total = tensors.reduce((a, t) => a + t.bytes, 0);
    const o = { budget: Math.floor((0.3 + 0.6 * r()) * total), kvBytes: Math.floor(r() * 1e6), scratchBytes: Math.floor(r() * 1e6), hardware };
    let ladder;
    try {
      ladder = planLadder(tensors, o);
    } catch {
      continue;
    }
    const top = planWithWindow(tensors, o);
    const placementAt = (level: number) => ladder.planAt(level).tensors[out]!.placement;
    const levels = Array.from({ length: 12 }, (_, i) => Math.round((i / 11) * ladder.steps.length));
    // Every level: memory as its plan accounts it; resident sets nested.
    let prev: Set<string> | undefined;
    for (const level of levels) {
      const plan = ladder.planAt(level);
      assert.equal(ladder.weightBytes[level], plan.split.weights + plan.split.buffers, `trial ${trial} level ${level}`);
      const resident = new Set(plan.tensors.filter((t) => t.placement === 'resident').map((t) => t.name));
      if (prev) for (const n of prev) assert.ok(resident.has(n), `level ${level} demoted ${n}`);
      prev = resident;
    }
    // The planner's plan is still a level of the ladder.
    const k = ladder.levelFor(o.budget - o.kvBytes - o.scratchBytes);
    assert.equal(ladder.planAt(k).predictedSecPerToken, top.predictedSecPerToken);
    if (top.outputSlices) {
      slicedTops++;
      assert.ok(!ladder.steps.includes(out));
      for (const level of levels) assert.equal(placementAt(level), 'slices');
      continue;
    }
    if (outputSliceLayout(tensors[out]!.bytes, tensors[out]!.rowBytes!) === undefined) {
      assert.ok(!ladder.steps.includes(out), 'an output matrix too small to slice is not a step');
      continue;
    }
    outputSteps++;
    assert.equal(ladder.steps[0], out);
    assert.equal(placementAt(0), 'slices');
    for (const level of levels.filter((l) => l > 0)) assert.equal(placementAt(level), 'resident', `level ${level}`);
    // Level 0 holds the slice buffers instead of the matrix, and streams every layer through
    // the smallest ring (two slots of the largest layer); the other levels keep the top's window.
    const numLayers = Math.max(...tensors.map((t) => t.layer)) + 1;
    const layerStream = Array.from({ length: numLayers }, (_, l) => tensors.filter((t) => t.layer === l && t.kind !== 'norm').reduce((a, t) => a + streamFootprint(t.bytes), 0));
    const slotsAbove = Math.min(top.window + 1, numLayers) - Math.min(2, numLayers);
    assert.equal(ladder.planAt(0).window, 1);
    assert.equal(ladder.planAt(1).window, top.window);
    assert.equal(ladder.weightBytes[1]! - ladder.weightBytes[0]!, residentFootprint(tensors[out]!.bytes) - ladder.planAt(0).outputSlices!.bufferBytes + slotsAbove * Math.max(...layerStream));
    if (top.window > 1) windowsAbove++;
    assert.ok(ladder.weightBytes[ladder.minLevel]! <= ladder.weightBytes[0]!);
    // The sliced bottom predicts a slower pass than level 1 (it reads the matrix every token).
    assert.ok(ladder.planAt(0).predictedSecPerToken > ladder.planAt(1).predictedSecPerToken);
  }
  assert.ok(outputSteps >= 5, `only ${outputSteps} ladders made the output matrix a step`);
  assert.ok(windowsAbove >= 1, 'no ladder with an output step had a top window above 1');
  assert.ok(slicedTops + outputSteps >= 20, `only ${slicedTops + outputSteps} of 40 fit`);
});
