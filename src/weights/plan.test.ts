import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InsufficientMemoryError } from '../errors.js';
import { demotableFootprint, planResidency, planWithWindow, residentFootprint, simulatePipeline, spreadOrder, streamFootprint, SIM_TOKENS, WINDOW_JITTER, type Plan, type PlanTensorInput } from './plan.js';
import type { TensorKind } from './tensors.js';
import { OUTPUT_SLICE_TARGET_BYTES, OUTPUT_TEMP_ROWS, outputSliceLayout } from './output-slices.js';
import { mulberry32 as rng } from '../kv/random.js';

const U = 4096;
const LAYER_KINDS: TensorKind[] = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'];

/** A Llama-like tensor list with per-kind sizes the same in every layer. */
function model(numLayers: number, sizes: Partial<Record<TensorKind, number>>, opts: { normBytes?: number; outputBytes?: number; outputRowBytes?: number; embdBytes?: number } = {}): PlanTensorInput[] {
  const out: PlanTensorInput[] = [{ name: 'token_embd.weight', layer: -1, kind: 'token_embd', bytes: opts.embdBytes ?? 100 * U, rowBytes: U }];
  for (let l = 0; l < numLayers; l++) {
    out.push({ name: `blk.${l}.attn_norm.weight`, layer: l, kind: 'norm', bytes: opts.normBytes ?? 64 });
    for (const k of LAYER_KINDS) if (sizes[k]) out.push({ name: `blk.${l}.${k}.weight`, layer: l, kind: k, bytes: sizes[k]! });
  }
  out.push({ name: 'output_norm.weight', layer: -1, kind: 'norm', bytes: opts.normBytes ?? 64 });
  out.push({ name: 'output.weight', layer: -1, kind: 'output', bytes: opts.outputBytes ?? 8 * U, ...(opts.outputRowBytes ? { rowBytes: opts.outputRowBytes } : {}) });
  return out;
}

const IO_BOUND = { readBytesPerSec: 1e9, computeSecPerLayer: 0, computeBytesPerSec: Infinity };
const HAND = { attn_q: 4 * U, attn_k: U, attn_v: U, attn_output: 4 * U, ffn_gate: 10 * U, ffn_up: 10 * U, ffn_down: 10 * U };
const NORMS_8 = 9 * 64; // 8 layer norms + output_norm, 64 bytes each

function placement(plan: Plan, name: string): string {
  return plan.tensors.find((t) => t.name === name)!.placement;
}

test('hand-checked: everything streamed at the window-3 ring size; norms and output resident; embeddings by row', () => {
  const tensors = model(8, HAND);
  // ring = 4 slots x 40U, + output 8U + norms.
  const plan = planResidency(tensors, { budget: 168 * U + NORMS_8, hardware: IO_BOUND });
  assert.equal(plan.window, 3);
  assert.equal(plan.numSlots, 4);
  assert.equal(plan.slotBytes, 40 * U);
  assert.equal(plan.streamedBytesPerToken, 8 * 40 * U);
  assert.equal(plan.bytesReadPerToken, 8 * 40 * U + U);
  assert.deepEqual(plan.split, { weights: 8 * U + NORMS_8, buffers: 160 * U, kv: 0, scratch: 0, total: 168 * U + NORMS_8 });
  assert.equal(placement(plan, 'token_embd.weight'), 'rows');
  assert.equal(placement(plan, 'output.weight'), 'resident');
  assert.equal(placement(plan, 'blk.3.attn_norm.weight'), 'resident');
  // No compute: reads run back to back (8 layers x 40U per token); the embedding row is read
  // on the compute side while the I/O threads go on, so it shows once in SIM_TOKENS tokens.
  assert.ok(Math.abs(plan.predictedSecPerToken - (8 * 40 * U + U / SIM_TOKENS) / 1e9) < 1e-15);
});

test('hand-checked: K resident in every layer once the ring shrinks enough to pay for it', () => {
  const tensors = model(8, HAND);
  // Making attn_k resident everywhere: +8U resident, -4U ring (4 slots x 1U) = +4U.
  const plan = planResidency(tensors, { budget: 172 * U + NORMS_8, hardware: IO_BOUND });
  for (let l = 0; l < 8; l++) {
    assert.equal(placement(plan, `blk.${l}.attn_k.weight`), 'resident');
    assert.equal(placement(plan, `blk.${l}.attn_v.weight`), 'streamed');
    assert.equal(plan.layers[l]!.streamedBytes, 39 * U);
  }
  assert.equal(plan.split.total, 172 * U + NORMS_8);
  // 2U more than the all-streamed plan: K resident in two spread-out layers (4 and 2), not 0 and 1.
  const partial = planResidency(tensors, { budget: 170 * U + NORMS_8, hardware: IO_BOUND });
  const residentK = partial.tensors.filter((t) => t.kind === 'attn_k' && t.placement === 'resident').map((t) => t.layer);
  assert.deepEqual(residentK.sort(), [2, 4]);
});

test('hand-checked: all attention resident with 4 slots of FFN streamed', () => {
  const tensors = model(8, HAND);
  const plan = planResidency(tensors, { budget: 208 * U + NORMS_8, hardware: IO_BOUND });
  assert.equal(plan.streamedBytesPerToken, 8 * 30 * U);
  assert.equal(plan.slotBytes, 30 * U);
  assert.equal(plan.split.total, 208 * U + NORMS_8);
  // The whole model fits: nothing streamed, no buffers (embeddings still by row).
  const all = planResidency(tensors, { budget: 328 * U + NORMS_8, hardware: IO_BOUND });
  assert.equal(all.streamedBytesPerToken, 0);
  assert.equal(all.streamBufferBytes, 0);
  assert.equal(placement(all, 'token_embd.weight'), 'rows');
  // No budget: everything resident, embeddings too.
  const inf = planResidency(tensors, { budget: Infinity, hardware: IO_BOUND });
  assert.equal(placement(inf, 'token_embd.weight'), 'resident');
  assert.equal(inf.bytesReadPerToken, 0);
});

test('hand-checked: a budget below the minimum says the minimum', () => {
  const tensors = model(8, HAND);
  const kvBytes = 5 * U;
  const scratchBytes = 3 * U;
  // Minimum: window 1 (2 slots x 40U) + output 8U + norms + KV + scratch.
  const minimum = 80 * U + 8 * U + NORMS_8 + kvBytes + scratchBytes;
  const plan = planResidency(tensors, { budget: minimum, kvBytes, scratchBytes, hardware: IO_BOUND, window: 1 });
  assert.equal(plan.window, 1);
  assert.equal(plan.numSlots, 2);
  assert.deepEqual(plan.split, { weights: 8 * U + NORMS_8, buffers: 80 * U, kv: kvBytes, scratch: scratchBytes, total: minimum });
  assert.throws(
    () => planResidency(tensors, { budget: minimum - 1, kvBytes, scratchBytes, hardware: IO_BOUND, window: 1 }),
    (e: unknown) => e instanceof InsufficientMemoryError && e.minimum === minimum && e.budget === minimum - 1 && e.message.includes(String(minimum)),
  );
  // The default window 3 needs 4 slots.
  assert.throws(() => planResidency(tensors, { budget: 168 * U + NORMS_8 - 1, hardware: IO_BOUND }), { minimum: 168 * U + NORMS_8 });
});

test('outputSliceLayout: hand-computed slicings; small matrices stay whole', () => {
  // Gemma 3 1B's tied output, Q8_0: 262,144 rows of 1224 bytes (1152 x 34/32). 4096-aligned
  // starts need multiples of 4096 / gcd(1224, 4096) = 512 rows; 8 MiB / 1224 = 6853 rows -> 6656.
  const g = outputSliceLayout(262144 * 1224, 1224)!;
  assert.deepEqual(g, {
    rows: 262144,
    rowBytes: 1224,
    sliceRows: 6656,
    numSlices: 40, // ceil(262144 / 6656)
    sliceFootprint: 6656 * 1224, // 8,146,944 = 1989 pages
    bufferBytes: 2 * 6656 * 1224 + OUTPUT_TEMP_ROWS * 6656 * 4,
  });
  // Q6_K rows of 4096 (3360 bytes, gcd 32 -> 128-row steps): 8 MiB / 3360 = 2496 rows -> 19 x 128.
  const l = outputSliceLayout(32000 * 3360, 3360)!;
  assert.equal(l.sliceRows, 2432);
  assert.equal(l.numSlices, 14); // ceil(32000 / 2432)
  assert.equal(l.sliceFootprint, 2432 * 3360); // 8,171,520 = 1995 pages
  // An odd row of 5001 bytes: aligned starts need 4096-row steps, more than twice the target's
  // floor(8 MiB / 5001) = 1677 rows, so slices are 1677 rows, unaligned.
  const o = outputSliceLayout(20000 * 5001, 5001)!;
  assert.equal(o.sliceRows, 1677);
  assert.equal(o.sliceRows, Math.floor(OUTPUT_SLICE_TARGET_BYTES / 5001));
  assert.equal(o.sliceFootprint % 4096, 0);
  // Slicing must save at least half: tinyllama-sized Q8_0 (32000 x 2176 = 66 MiB) is sliced,
  // a toy vocabulary is not; a row size that does not divide the bytes is refused.
  assert.ok(outputSliceLayout(32000 * 2176, 2176));
  assert.equal(outputSliceLayout(1000 * 2176, 2176), undefined);
  assert.equal(outputSliceLayout(1000 * 2176 + 1, 2176), undefined);
});

test('hand-checked: a large output matrix is streamed in slices only when the budget cannot hold it', () => {
  // 8 layers of 40U, a 600-row output of 20U per row (12000U = 46.9 MiB, sliced by 8 MiB / 20U
  // = 102 rows -> 6 slices).
  const rowBytes = 20 * U;
  const tensors = model(8, HAND, { outputBytes: 600 * rowBytes, outputRowBytes: rowBytes });
  const layout = outputSliceLayout(600 * rowBytes, rowBytes)!;
  assert.equal(layout.sliceRows, 102);
  assert.equal(layout.numSlices, 6);
  assert.equal(layout.bufferBytes, 2 * 102 * rowBytes + 64 * 102 * 4 + (4096 - ((64 * 102 * 4) % 4096)));
  // Minimum with the output resident: window 1 (2 x 40U) + output 12000U + norms; sliced:
  // window 1 + the slice buffers + norms.
  const residentMin = 80 * U + 12000 * U + NORMS_8;
  const slicedMin = 80 * U + layout.bufferBytes + NORMS_8;
  assert.ok(slicedMin < residentMin);
  const sliced = planWithWindow(tensors, { budget: slicedMin, hardware: IO_BOUND }, 1);
  assert.deepEqual(sliced.outputSlices, layout);
  assert.equal(placement(sliced, 'output.weight'), 'slices');
  assert.deepEqual(sliced.split, { weights: NORMS_8, buffers: 80 * U + layout.bufferBytes, kv: 0, scratch: 0, total: slicedMin });
  // Everything streams: the layers (320U) and the output (12000U) every token.
  assert.equal(sliced.streamedBytesPerToken, 320 * U + 12000 * U);
  assert.throws(() => planWithWindow(tensors, { budget: slicedMin - 1, hardware: IO_BOUND }, 1), (e: unknown) => e instanceof InsufficientMemoryError && e.minimum === slicedMin && /streamed in 6 slices/.test(e.message));
  // Room for every layer and the resident output: the output stays resident (reading it every
  // token costs more than the layers' reads the slices' memory would save).
  const roomy = planWithWindow(tensors, { budget: 320 * U + 12000 * U + NORMS_8, hardware: IO_BOUND });
  assert.equal(roomy.outputSlices, undefined);
  assert.equal(placement(roomy, 'output.weight'), 'resident');
});

test('hand-checked: compute-bound layers: the most resident plan, the deepest ring', () => {
  const tensors = model(8, HAND);
  const plan = planWithWindow(tensors, { budget: 300 * U, hardware: { readBytesPerSec: 1e9, computeSecPerLayer: 1, computeBytesPerSec: Infinity } });
  const maxResident = planResidency(tensors, { budget: 300 * U, hardware: IO_BOUND });
  assert.equal(plan.window, 3);
  assert.equal(plan.streamedBytesPerToken, maxResident.streamedBytesPerToken);
  // By hand: 1 s of compute per layer hides every read but layer 0's first one (the ring's
  // fill, spread over SIM_TOKENS tokens); the embedding row (U bytes) ends every token on the
  // compute side; jitter allowance WINDOW_JITTER x (sum of read times, each shorter than
  // compute) / window.
  const reads = plan.layers.map((l) => l.streamedBytes / 1e9);
  const expected = 8 + U / 1e9 + reads[0]! / SIM_TOKENS + (WINDOW_JITTER * reads.reduce((a, b) => a + b, 0)) / 3;
  assert.ok(Math.abs(plan.predictedSecPerToken - expected) < 1e-12, `${plan.predictedSecPerToken} vs ${expected}`);
});

test('simulatePipeline: hand-computed timelines', () => {
  // I/O-bound, 2 layers, 2 slots: reads back to back, compute of the last layer trails.
  // reads: [0,2] [2,5] [5,7] [7,10]; compute 1 s each after its read -> ends 11 (+ tail 0).
  assert.equal(simulatePipeline([2, 3], [1, 1], 0, 2, 2), 11 / 2);
  // Compute-bound: first read 1, then compute 5 + 5 per token; reads hidden.
  assert.equal(simulatePipeline([1, 1], [5, 5], 0, 2, 2), (1 + 20) / 2);
  // One slot: a layer's read waits for the previous layer's compute (no overlap):
  // r0 [0,2] c0 [2,3] r1 [3,5] c1 [5,6] r0 [6,8] c0 [8,9] r1 [9,11] c1 [11,12].
  assert.equal(simulatePipeline([2, 2], [1, 1], 0, 1, 2), 12 / 2);
  // The tail (output, embedding rows) sits between tokens on the compute side.
  assert.equal(simulatePipeline([0, 0], [1, 1], 0.5, 2, 2), (4 + 2 * 0.5) / 2);
  // Nothing streamed: compute plus tail.
  assert.equal(simulatePipeline([0, 0], [1, 2], 0.5, 0), 3.5);
});

test('spreadOrder visits every layer once, middle first', () => {
  assert.deepEqual(spreadOrder(8), [4, 2, 6, 1, 3, 5, 7, 0]);
  for (const n of [1, 2, 5, 31, 80]) assert.deepEqual([...spreadOrder(n)].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
});


/** Independent recomputation of a plan's memory from its placements. */
function checkAccounting(plan: Plan, budget: number, kv: number, scratch: number): void {
  let weights = 0;
  const slot = new Array<number>(plan.numLayers).fill(0);
  for (const t of plan.tensors) {
    // Layer tensors take whole pages (the elastic pool gives them back one by one).
    const fixed = t.kind === 'norm' || t.kind === 'bias' || t.kind === 'output' || (t.layer < 0 && t.kind === 'other');
    if (t.placement === 'resident') weights += fixed ? residentFootprint(t.bytes) : demotableFootprint(t.bytes);
    if (t.placement === 'streamed') slot[t.layer]! += streamFootprint(t.bytes);
    if (t.kind === 'norm' || t.kind === 'bias') assert.equal(t.placement, 'resident', t.name);
    // The output matrix: resident, or streamed in slices when the plan says how.
    if (t.kind === 'output') assert.equal(t.placement, plan.outputSlices ? 'slices' : 'resident', t.name);
    if (t.kind === 'token_embd') assert.equal(t.placement, 'rows');
  }
  const maxSlot = Math.max(0, ...slot);
  const buffers = (maxSlot > 0 ? Math.min(plan.window + 1, plan.numLayers) * maxSlot : 0) + (plan.outputSlices?.bufferBytes ?? 0);
  assert.equal(plan.split.weights, weights);
  assert.equal(plan.split.buffers, buffers);
  assert.ok(weights + buffers + kv + scratch <= budget, `total ${weights + buffers + kv + scratch} > budget ${budget}`);
}

test('property: within budget, balanced, at most one partial kind (seeded random models)', () => {
  const r = rng(12345);
  for (let trial = 0; trial < 200; trial++) {
    const numLayers = 1 + Math.floor(r() * 40);
    const sizes: Partial<Record<TensorKind, number>> = {};
    const dim = 256 * (1 + Math.floor(r() * 16));
    const kvDim = dim / (1 << Math.floor(r() * 3));
    const ffn = dim * (2 + r() * 2);
    const bpe = [0.5625, 1.0625, 2][Math.floor(r() * 3)]!; // q4_0, q8_0, f16 bytes per element
    sizes.attn_q = Math.round(dim * dim * bpe);
    sizes.attn_k = Math.round(dim * kvDim * bpe);
    sizes.attn_v = Math.round(dim * kvDim * bpe);
    sizes.attn_output = Math.round(dim * dim * bpe);
    sizes.ffn_gate = Math.round(dim * ffn * bpe);
    sizes.ffn_up = Math.round(dim * ffn * bpe);
    sizes.ffn_down = Math.round(dim * ffn * bpe);
    // Vocabularies from toy to Gemma 3's: the large ones make the output matrix worth slicing.
    const vocab = [1000, 32000, 262144][Math.floor(r() * 3)]!;
    const tensors = model(numLayers, sizes, { normBytes: dim * 4, outputBytes: Math.round(dim * bpe) * vocab, outputRowBytes: Math.round(dim * bpe), embdBytes: Math.round(dim * 1000 * bpe) });
    const kv = Math.floor(r() * 1e6);
    const scratch = Math.floor(r() * 1e5);
    const hardware = { readBytesPerSec: 1e8 + r() * 3e9, computeBytesPerSec: 1e9 + r() * 2e10 };
    const modelBytes = tensors.reduce((a, t) => a + t.bytes, 0);
    const budgets = Array.from({ length: 12 }, () => Math.floor(r() * 1.3 * modelBytes)).sort((a, b) => a - b);
    const maxTensor = Math.max(...LAYER_KINDS.map((k) => streamFootprint(sizes[k]!)));
    for (const budget of budgets) {
      let plan: Plan;
      try {
        plan = planResidency(tensors, { budget, kvBytes: kv, scratchBytes: scratch, hardware });
      } catch (e) {
        assert.ok(e instanceof InsufficientMemoryError, String(e));
        assert.ok(e.minimum > budget);
        assert.ok(planResidency(tensors, { budget: e.minimum, kvBytes: kv, scratchBytes: scratch, hardware }), 'the stated minimum works');
        continue;
      }
      checkAccounting(plan, budget, kv, scratch);
      const streamed = plan.layers.map((l) => l.streamedBytes);
      assert.ok(Math.max(...streamed) - Math.min(...streamed) <= maxTensor, `balanced: ${streamed.join(',')}`);
      let partialKinds = 0;
      for (const k of LAYER_KINDS) {
        const n = plan.tensors.filter((t) => t.kind === k && t.placement === 'resident').length;
        if (n > 0 && n < numLayers) partialKinds++;
      }
      assert.ok(partialKinds <= 1, `${partialKinds} kinds partially resident`);
    }
  }
});

test('property: a larger budget never predicts a slower token (random models, budgets, hardware; fixed and chosen windows)', () => {
  const r = rng(4242);
  const modes = { sliced: 0, resident: 0 };
  for (let trial = 0; trial < 100; trial++) {
    const numLayers = 1 + Math.floor(r() * 40);
    const dim = 256 * (1 + Math.floor(r() * 16));
    const kvDim = dim / (1 << Math.floor(r() * 3));
    const ffn = dim * (2 + r() * 2);
    const bpe = [0.5625, 1.0625, 2][Math.floor(r() * 3)]!;
    const jitter = () => 0.8 + 0.4 * r(); // layers of mixed types: sizes vary per layer
    const tensors: PlanTensorInput[] = [{ name: 'token_embd.weight', layer: -1, kind: 'token_embd', bytes: Math.round(dim * 1000 * bpe), rowBytes: Math.round(dim * bpe) }];
    for (let l = 0; l < numLayers; l++) {
      tensors.push({ name: `blk.${l}.attn_norm.weight`, layer: l, kind: 'norm', bytes: dim * 4 });
      const sizes: Record<string, number> = { attn_q: dim * dim, attn_k: dim * kvDim, attn_v: dim * kvDim, attn_output: dim * dim, ffn_gate: dim * ffn, ffn_up: dim * ffn, ffn_down: dim * ffn };
      for (const k of LAYER_KINDS) tensors.push({ name: `blk.${l}.${k}.weight`, layer: l, kind: k, bytes: Math.round(sizes[k]! * bpe * jitter()) });
    }
    const vocab = [1000, 32000, 262144][Math.floor(r() * 3)]!;
    tensors.push({ name: 'output.weight', layer: -1, kind: 'output', bytes: Math.round(dim * bpe) * vocab, rowBytes: Math.round(dim * bpe) });
    const kv = Math.floor(r() * 1e6);
    const scratch = Math.floor(r() * 1e5);
    // From I/O-bound to compute-bound: read 0.1-3 GB/s, compute 1-20 GB/s or a fixed time per layer.
    const hardware = r() < 0.3 ? { readBytesPerSec: 1e8 + r() * 3e9, computeSecPerLayer: r() * 0.02 } : { readBytesPerSec: 1e8 + r() * 3e9, computeBytesPerSec: 1e9 + r() * 2e10 };
    const modelBytes = tensors.reduce((a, t) => a + t.bytes, 0);
    const budgets = Array.from({ length: 14 }, () => Math.floor(r() * 1.2 * modelBytes)).sort((a, b) => a - b);
    for (const window of [undefined, 1, 3]) {
      let last = Infinity;
      let lastBudget = 0;
      for (const budget of budgets) {
        let plan: Plan;
        try {
          plan = planWithWindow(tensors, { budget, kvBytes: kv, scratchBytes: scratch, hardware }, window);
        } catch (e) {
          assert.ok(e instanceof InsufficientMemoryError, String(e));
          assert.equal(last, Infinity, `budget ${budget} fails after ${lastBudget} worked`);
          continue;
        }
        checkAccounting(plan, budget, kv, scratch);
        modes[plan.outputSlices ? 'sliced' : 'resident']++;
        assert.ok(
          plan.predictedSecPerToken <= last * (1 + 1e-9),
          `trial ${trial} window ${window}: ${plan.predictedSecPerToken} s/token at budget ${budget} > ${last} at ${lastBudget}`,
        );
        last = plan.predictedSecPerToken;
        lastBudget = budget;
      }
    }
  }
  // Both ways of holding the output matrix were planned (and compared) above.
  assert.ok(modes.sliced > 20 && modes.resident > 20, `plans: ${JSON.stringify(modes)}`);
});

test('property: layers of mixed quant types (Q4_K_M style) stay within one tensor of balance', () => {
  const r = rng(777);
  for (let trial = 0; trial < 30; trial++) {
    const numLayers = 4 + Math.floor(r() * 28);
    const tensors: PlanTensorInput[] = [];
    for (let l = 0; l < numLayers; l++) {
      for (const k of LAYER_KINDS) {
        // attn_v and ffn_down heavier (Q6_K) in some layers, as llama.cpp's Q4_K_M does.
        const heavy = (k === 'attn_v' || k === 'ffn_down') && r() < 0.5;
        const base = k.startsWith('ffn') ? 3 : k === 'attn_k' || k === 'attn_v' ? 0.25 : 1;
        tensors.push({ name: `blk.${l}.${k}.weight`, layer: l, kind: k, bytes: Math.round(base * (heavy ? 1.5 : 1) * 1e6) });
      }
      tensors.push({ name: `blk.${l}.attn_norm.weight`, layer: l, kind: 'norm', bytes: 4096 });
    }
    tensors.push({ name: 'output.weight', layer: -1, kind: 'output', bytes: 5e6 });
    const total = tensors.reduce((a, t) => a + t.bytes, 0);
    const spreadAll = (() => {
      const s = new Array<number>(numLayers).fill(0);
      for (const t of tensors) if (t.kind !== 'norm' && t.layer >= 0) s[t.layer]! += t.bytes;
      return Math.max(...s) - Math.min(...s);
    })();
    for (const frac of [0.3, 0.5, 0.7, 0.9]) {
      let plan: Plan;
      try {
        plan = planResidency(tensors, { budget: Math.floor(frac * total), hardware: { readBytesPerSec: 1e9 } });
      } catch (e) {
        assert.ok(e instanceof InsufficientMemoryError);
        continue;
      }
      checkAccounting(plan, Math.floor(frac * total), 0, 0);
      const streamed = plan.layers.map((l) => l.streamedBytes);
      assert.ok(Math.max(...streamed) - Math.min(...streamed) <= Math.max(spreadAll, 4.5e6 + 4096), `spread ${streamed.join(',')}`);
    }
  }
});

test('window from measured rates: tinyllama-1.1b Q8_0 at 75% keeps window 1 at the runs\' compute rate; a slower compute picks a deeper ring', () => {
  // tinyllama-1.1b shapes in Q8_0 (34 bytes per 32 weights): dim 2048, ffn 5632, kv 256, 22 layers, vocab 32000.
  const q8 = (n: number) => (n / 32) * 34;
  const sizes = { attn_q: q8(2048 * 2048), attn_k: q8(2048 * 256), attn_v: q8(2048 * 256), attn_output: q8(2048 * 2048), ffn_gate: q8(2048 * 5632), ffn_up: q8(2048 * 5632), ffn_down: q8(5632 * 2048) };
  const tensors = model(22, sizes, { normBytes: 8192, outputBytes: q8(32000 * 2048), embdBytes: q8(32000 * 2048) });
  const total = tensors.reduce((a, t) => a + t.bytes, 0);
  const at = (computeBytesPerSec: number, window?: number) =>
    planWithWindow(tensors, { budget: 0.75 * total, kvBytes: 12 * 2 ** 20, scratchBytes: 40 * 2 ** 20, hardware: { readBytesPerSec: 3.3e9, computeBytesPerSec } }, window);
  // The figures the runs measured (issue-9 notes, 2026-12-06, quiet, interleaved windows 1/2/3 at
  // 75%): O_DIRECT@32 read 3.1-3.7 GB/s busy, the layers' compute (StreamingStats
  // .computeBytesPerSec) 23-33 GB/s; medians 9.55 / 9.00 / 9.44 tok/s for windows 1 / 2 / 3.
  const measured = at(26e9);
  assert.equal(measured.window, 1);
  for (const w of [2, 3]) {
    const p = at(26e9, w);
    assert.ok(p.streamedBytesPerToken > measured.streamedBytesPerToken, 'a deeper ring takes memory from resident weights');
    assert.ok(p.predictedSecPerToken > measured.predictedSecPerToken, `window ${w}`);
  }
  // Compute slower than the reads of the small-read layers (9.6 MiB at 3.3 GB/s = 3.0 ms; at
  // 10 GB/s a layer computes 4.5 ms): a deeper ring lets the big-read layers borrow that slack.
  const slow = at(10e9);
  assert.ok(slow.window >= 2, `window ${slow.window}`);
  assert.ok(slow.predictedSecPerToken < at(10e9, 1).predictedSecPerToken);
});
