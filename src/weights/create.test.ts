import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InsufficientMemoryError, InvalidOptionError } from '../errors.js';
import { readGgufSync } from '../gguf/reader.js';
import { createWeightStore, elasticLadder, planInputs, planWithReserve, planWithWindow, readPathFromEnv, windowFromEnv } from './create.js';
import { ElasticWeightStore } from './elastic-store.js';
import { planLadder } from './plan.js';
import { ResidentWeightStore } from './resident.js';
import { StreamingWeightStore } from './streaming.js';
import { tinyModelTensors, writeTestGguf } from './testing.js';

test('createWeightStore: resident without a budget, streaming with one; same bytes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-create-'));
  try {
    const path = join(dir, 'm.gguf');
    writeTestGguf(path, 'llama', 10, tinyModelTensors({ dim: 128, ffn: 384, kvDim: 64, vocab: 50, layers: 10 }, 8), 4096);
    const hardware = { readBytesPerSec: 1e9 };
    const a = await createWeightStore(path, { hardware });
    assert.ok(a.store instanceof ResidentWeightStore);
    assert.equal(a.plan.strategy, 'all-resident');
    const b = await createWeightStore(path, { hardware, memoryBudget: '45%', kvBytes: 1000, scratchBytes: 2000 });
    assert.ok(b.store instanceof StreamingWeightStore);
    assert.ok(b.plan.split.total <= Math.floor(0.45 * b.file.fileSize));
    assert.equal(b.plan.split.kv, 1000);
    for (let l = 0; l < 10; l++) {
      assert.deepEqual(b.store.acquire(l).get('ffn_up.weight').data, a.store.acquire(l).get('ffn_up.weight').data);
      b.store.release(l);
      a.store.release(l);
    }
    a.store.dispose();
    b.store.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('planWithWindow: an explicit window is kept; the default is the best window by the cost model (ties to the deeper ring)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-create-'));
  try {
    const path = join(dir, 'm.gguf');
    writeTestGguf(path, 'llama', 10, tinyModelTensors({ dim: 128, ffn: 384, kvDim: 64, vocab: 50, layers: 10 }, 8), 4096);
    const inputs = planInputs(readGgufSync(path));
    const ioBound = { readBytesPerSec: 1e9, computeBytesPerSec: 1e12 };
    const computeBound = { readBytesPerSec: 1e15, computeBytesPerSec: 1e9 };
    const at = (budget: number, window?: number, hardware = ioBound) => planWithWindow(inputs, { budget, hardware }, window);
    let min1 = 0;
    assert.throws(() => at(1000, 1), (e: unknown) => e instanceof InsufficientMemoryError && (min1 = e.minimum) > 0);
    let min3 = 0;
    assert.throws(() => at(1000, 3), (e: unknown) => e instanceof InsufficientMemoryError && (min3 = e.minimum) > min1);
    // Only window 1 fits: it is chosen; below its minimum, window 1's error.
    assert.equal(at(min1).window, 1);
    assert.throws(() => at(min1 - 1), (e: unknown) => e instanceof InsufficientMemoryError && e.minimum === min1);
    // Explicit windows are kept (or fail).
    assert.equal(at(min3, 3).window, 3);
    assert.throws(() => at(min1, 3), InsufficientMemoryError);
    // Reads are the bottleneck: at min3 window 3 streams every layer matrix, window 1 keeps two
    // slots' worth resident instead, so it reads less and is predicted faster by more than 2%.
    const w3 = at(min3, 3);
    const chosen = at(min3);
    assert.equal(chosen.window, 1);
    assert.ok(chosen.streamedBytesPerToken < w3.streamedBytesPerToken, `${chosen.streamedBytesPerToken} vs ${w3.streamedBytesPerToken}`);
    assert.ok(chosen.predictedSecPerToken < w3.predictedSecPerToken * 0.98);
    // Compute is the bottleneck: every window predicts the same time, the deepest ring stays.
    assert.equal(at(min3, undefined, computeBound).window, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('FLEXINFER_READ_PATH and FLEXINFER_WINDOW: parsed values, unset = the planner decides, bad values are typed errors', () => {
  assert.deepEqual(readPathFromEnv('direct@16'), { direct: true, depth: 16 });
  assert.deepEqual(readPathFromEnv(' buffered@4 '), { direct: false, depth: 4 });
  assert.equal(readPathFromEnv(''), undefined);
  for (const bad of ['direct', 'direct@0', 'direct@33', 'mmap@4']) assert.throws(() => readPathFromEnv(bad), InvalidOptionError, bad);
  assert.equal(windowFromEnv('3'), 3);
  assert.equal(windowFromEnv(undefined), undefined);
  for (const bad of ['0', '9', '2.5', 'three']) assert.throws(() => windowFromEnv(bad), (e: unknown) => e instanceof InvalidOptionError && /FLEXINFER_WINDOW/.test(e.message), bad);
});

test('FLEXINFER_WINDOW reaches the elastic store too (the default pool since #16), as it does the static one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-create-'));
  const saved = process.env.FLEXINFER_WINDOW;
  try {
    const path = join(dir, 'm.gguf');
    writeTestGguf(path, 'llama', 10, tinyModelTensors({ dim: 128, ffn: 384, kvDim: 64, vocab: 50, layers: 10 }, 8), 4096);
    const hardware = { readBytesPerSec: 1e9, computeBytesPerSec: 1e12 };
    for (const w of [1, 2]) {
      process.env.FLEXINFER_WINDOW = String(w);
      for (const elastic of [false, true]) {
        const { store, plan } = await createWeightStore(path, { hardware, memoryBudget: '60%', elastic });
        assert.equal(plan.window, w, `elastic ${elastic}`);
        store.dispose();
      }
    }
  } finally {
    if (saved === undefined) delete process.env.FLEXINFER_WINDOW;
    else process.env.FLEXINFER_WINDOW = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('planWithReserve: a static split keeps the runtime reserve from the weights, as far as the budget holds it above the minimum', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-create-'));
  try {
    const path = join(dir, 'm.gguf');
    writeTestGguf(path, 'llama', 10, tinyModelTensors({ dim: 128, ffn: 384, kvDim: 64, vocab: 50, layers: 10 }, 8), 4096);
    const inputs = planInputs(readGgufSync(path));
    const hardware = { readBytesPerSec: 1e9, computeBytesPerSec: 1e12 };
    const opts = (budget: number, scratch = 1000) => ({ budget, kvBytes: 2000, scratchBytes: scratch, hardware });
    let min = 0;
    assert.throws(() => planWithWindow(inputs, opts(1000), 1), (e: unknown) => e instanceof InsufficientMemoryError && (min = e.minimum) > 0);
    const reserve = 5000;
    // Room for all of it: the plan of scratch + reserve.
    const roomy = min + 3 * reserve;
    assert.deepEqual(planWithReserve(inputs, opts(roomy), 1, reserve), planWithWindow(inputs, opts(roomy, 1000 + reserve), 1));
    // At the minimum: none of it (the budget still loads).
    assert.deepEqual(planWithReserve(inputs, opts(min), 1, reserve), planWithWindow(inputs, opts(min), 1));
    // Between: what the budget holds above the minimum.
    assert.deepEqual(planWithReserve(inputs, opts(min + 1234), 1, reserve), planWithWindow(inputs, opts(min + 1234, 1000 + 1234), 1));
    // Below the minimum: the planner's error, minimum without the reserve.
    assert.throws(() => planWithReserve(inputs, opts(min - 1), 1, reserve), (e: unknown) => e instanceof InsufficientMemoryError && e.minimum === min);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('elasticLadder: a read cache that keeps the weights at their minimum gets the smallest ring (window 1); weights and cache fit the room', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-create-'));
  try {
    const path = join(dir, 'm.gguf');
    writeTestGguf(path, 'llama', 10, tinyModelTensors({ dim: 128, ffn: 384, kvDim: 64, vocab: 50, layers: 10 }, 8), 4096);
    const file = readGgufSync(path);
    const hardware = { readBytesPerSec: 1e9, computeBytesPerSec: 1e12 };
    const least = (l: Parameters<typeof ElasticWeightStore.levels>[1]) => Math.min(...ElasticWeightStore.levels(file, l).bytesAt);
    const budget = Math.floor(file.fileSize * 0.6);
    const o = { budget, kvBytes: 4096, scratchBytes: 4096, hardware };
    const room = budget - 8192;
    const whole = planLadder(planInputs(file), o);
    // No read cache: the planner's ladder, all of the room.
    const none = elasticLadder(file, o, undefined, 0);
    assert.equal(none.ladder.window, whole.window);
    assert.equal(none.readCacheBytes, 0);
    assert.equal(none.weightBytes, room);
    // A fixed cache larger than the room above the minimum: window 1's ladder, whose minimum is no larger.
    const big = elasticLadder(file, o, undefined, 0, { baseBytes: room, fixed: true, marginBytes: 0 });
    assert.equal(big.ladder.window, 1);
    assert.ok(least(big.ladder) <= least(whole));
    assert.equal(big.weightBytes, least(big.ladder));
    // A small cache: the weights give up just that much.
    // The law (no margin) would take room for 0.4 of what streams; capped at 0 (a static split
    // at this budget leaves nothing unused) the weights keep all of the room, as with no cache.
    const law = elasticLadder(file, o, undefined, 0, { baseBytes: 0, fixed: false, marginBytes: 0 });
    assert.ok(law.readCacheBytes > 0 && law.weightBytes < room);
    const capped = elasticLadder(file, o, undefined, 0, { baseBytes: 0, fixed: false, marginBytes: 0, maxBytes: 0 });
    assert.equal(capped.readCacheBytes, 0);
    assert.equal(capped.weightBytes, room);
    const small = elasticLadder(file, o, undefined, 0, { baseBytes: 8192, fixed: true, marginBytes: 0 });
    assert.equal(small.readCacheBytes, 8192);
    assert.equal(small.weightBytes, room - 8192);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('elasticLadder: a read cache never pushes a resident output matrix into slices (the ladder\'s cacheFloor); KV still can', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-create-'));
  try {
    // 100,000 rows of 256 f16 (51 MB): its slices save more than half of it, so the output
    // matrix is the ladder's step 0 (plan-ladder.test.ts, elastic-store.test.ts).
    const path = join(dir, 'm.gguf');
    writeTestGguf(path, 'llama', 4, tinyModelTensors({ dim: 256, ffn: 768, kvDim: 128, vocab: 100_000, layers: 4 }, 5), 4096);
    const file = readGgufSync(path);
    const hardware = { readBytesPerSec: 1e9, computeBytesPerSec: 8e9 };
    const o = { budget: Math.floor(file.fileSize * 0.9), kvBytes: 4096, scratchBytes: 4096, hardware };
    const room = o.budget - 8192;
    const whole = planLadder(planInputs(file), o);
    assert.equal(whole.cacheFloor, 1);
    assert.equal(whole.minLevel, 0);
    const levels = ElasticWeightStore.levels(file, whole);
    assert.ok(whole.planAt(0).outputSlices && !whole.planAt(1).outputSlices);
    // A fixed cache of the whole room: the weights keep level 1 (output resident), not level 0.
    const r = elasticLadder(file, o, undefined, 0, { baseBytes: room, fixed: true, marginBytes: 0 });
    const level = r.ladder.levelFor(r.weightBytes);
    assert.ok(level >= r.ladder.cacheFloor, `loads at level ${level}`);
    assert.equal(r.ladder.planAt(level).outputSlices, undefined, 'the output matrix stays resident');
    assert.ok(r.weightBytes >= levels.bytesAt[1]!);
    assert.equal(r.readCacheBytes + r.weightBytes, room);
    // The runtime reserve (the process's own memory) may take the weights down to level 0.
    const reserve = elasticLadder(file, o, undefined, room);
    assert.equal(reserve.weightBytes, Math.min(...ElasticWeightStore.levels(file, reserve.ladder).bytesAt));
    assert.ok(reserve.ladder.planAt(reserve.ladder.levelFor(reserve.weightBytes)).outputSlices);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
