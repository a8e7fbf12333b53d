/**
 * The elastic memory pool over random traces of sequence arrivals and departures, with the
 * real parts: an ElasticWeightStore over a small GGUF file (real arena, real background
 * reads, a streaming pass every step) and a VTensorKvManager on its grant (real chunk pool).
 * Properties checked after every step: never over budget (as accounted, and the KV layout
 * never holds more than its grant); no weight both resident and streamed; no chunk lost (all
 * come back at the end); a bounded number of demote/promote events per 100 steps. Plus the
 * value comparison between cached prefixes and weights by hand.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync, type GgufFile } from '../gguf/reader.js';
import { planInputs } from '../weights/create.js';
import { ElasticWeightStore } from '../weights/elastic-store.js';
import { planLadder } from '../weights/plan.js';
import { tinyModelTensors, writeTestGguf } from '../weights/testing.js';
import { listTensors } from '../weights/tensors.js';
import { VTensorKvManager } from '../kv/vtensor-manager.js';
import { mulberry32 } from '../kv/random.js';
import { EVICTION_MARGIN, MemoryPool, type WeightTenant } from './memory-pool.js';

const MiB = 1 << 20;
const LAYERS = 10;
const dir = mkdtempSync(join(tmpdir(), 'fi-memory-pool-'));
const PATH = join(dir, 'm.gguf');
let file: GgufFile;

before(() => {
  // 10 layers of 1.5 MiB (f16, dim 256, ffn 768): 15 MiB of layer matrices.
  writeTestGguf(PATH, 'llama', LAYERS, tinyModelTensors({ dim: 256, ffn: 768, kvDim: 128, vocab: 64, layers: LAYERS }, 5), 4096);
  file = readGgufSync(PATH);
});
after(() => rmSync(dir, { recursive: true, force: true }));

// KV: 8 layers x kvDim 128 -> 64 tokens per 16 KiB chunk, 16 tensors: a slot of 64 tokens is
// 256 KiB, a full 256-token sequence 1 MiB.
const SHAPE = { numLayers: 8, kvDim: 128, maxContext: 256 };
const CHUNK = 16 << 10;
const SLOT = 16 * CHUNK;
/**
 * Most sequences a trace runs at once: 20 of up to 1 MiB of KV each, more than the pool holds
 * with the weights at their minimum (level 0 streams through two ring slots: ~14 MiB of KV), so
 * the traces reach the minimum resident set and a refusal.
 */
const MAX_RUNNING = 20;

interface Seq {
  id: number;
  len: number;
  end: number;
  tokens: Uint32Array;
}

/** Runs one random trace; returns the events per 100-step window and the steps run. */
async function runTrace(seed: number, steps: number, runtime = 0, readCache = 0): Promise<{ windows: number[]; promotions: number[]; pool: MemoryPool; maxRunning: number; preemptions: number }> {
  const rand = mulberry32(seed);
  const ladder = planLadder(planInputs(file), { budget: 14 * MiB, hardware: { readBytesPerSec: 1e9, computeBytesPerSec: 8e9 } });
  // Budget: scratch 0.5 MiB + floor 1 MiB + a pool that holds the top level with 1 MiB to spare.
  const scratch = MiB / 2;
  const floor = MiB;
  const top = ladder.steps.length;
  const store = await ElasticWeightStore.open(file, ladder, { level: top - 2 });
  const poolBytes = store.bytesAt[store.level]! + MiB;
  let clock = 0;
  const pool: MemoryPool = new MemoryPool({
    budget: scratch + floor + poolBytes,
    scratchBytes: scratch,
    floorBytes: floor,
    runtimeBytes: runtime,
    readCacheBytes: readCache,
    chunkBytes: CHUNK,
    slotBytes: SLOT,
    maxKvChunks: MAX_RUNNING * 16 * 4, // MAX_RUNNING full sequences of address space
    now: () => clock, // 10 ms per step: the step cooldown decides, as on a busy engine
  });
  pool.attachWeights(store);
  const kv = new VTensorKvManager({ shape: SHAPE, capacityBytes: MAX_RUNNING * 16 * 4 * CHUNK, chunkBytes: CHUNK, grant: pool });
  pool.attachKv({ get numUsedChunks() { return kv.numUsedChunks; }, get numCachedChunks() { const s = kv.stats(); return (s.cachedBytes ?? 0) / CHUNK; }, evictCachedChunks: (n: number) => kv.evictCachedChunks(n) });

  const running: Seq[] = [];
  const waiting: Seq[] = [];
  let nextId = 1;
  let preemptions = 0;
  let maxRunning = 0;
  const events: number[] = []; // demotions + promotions after each step
  const promos: number[] = [];
  const entries = listTensors(file);
  try {
    for (let step = 0; step < steps; step++) {
      clock += 10;
      const promotionsBefore = pool.events.promotions;
      pool.betweenPasses({ ms: 10, rows: running.length, prefixHitTokens: 0 });
      if (pool.events.promotions > promotionsBefore) {
        // A promotion leaves the read cache free (KV above the floor may have taken it).
        const w = store as WeightTenant;
        const kvAbove = Math.max(0, kv.numUsedChunks * CHUNK + runtime - floor);
        assert.ok(MemoryPool.weightBytes(w, w.level, w.targetLevel) + Math.max(readCache, kvAbove) <= pool.poolBytes, `step ${step}: a promotion into the read cache`);
      }
      // Arrivals: bursts of up to 6 sequences, quiet stretches in between.
      const phase = Math.floor(step / 80) % 2; // busy / quiet periods of 80 steps
      const arrivals = phase === 0 ? (rand() < 0.4 ? 1 + Math.floor(rand() * 4) : 0) : rand() < 0.03 ? 1 : 0;
      for (let a = 0; a < arrivals; a++) {
        const prompt = 1 + Math.floor(rand() * 120);
        const end = Math.min(SHAPE.maxContext, prompt + 1 + Math.floor(rand() * 200));
        waiting.push({ id: -1, len: prompt, end, tokens: Uint32Array.from({ length: end }, () => Math.floor(rand() * 50)) });
      }
      // Admission (FCFS; a prefix-cache hit saves its part), as the scheduler does.
      while (waiting.length > 0 && running.length < MAX_RUNNING) {
        const s = waiting[0]!;
        const m = kv.matchPrefix(s.tokens.subarray(0, s.len));
        const id = m ? m.seq : kv.createSequence();
        if (id === null) break;
        if (!kv.ensure(id, s.len)) {
          kv.release(id, m !== null);
          break;
        }
        kv.commit(id, s.tokens.subarray(0, s.len));
        s.id = id;
        waiting.shift();
        running.push(s);
      }
      maxRunning = Math.max(maxRunning, running.length);
      // Growth: one token each; a sequence that cannot grow preempts the newest.
      for (const s of [...running]) {
        if (!running.includes(s)) continue;
        while (!kv.ensure(s.id, s.len + 1)) {
          const victim = running.pop()!;
          kv.release(victim.id, false);
          victim.len = Math.min(victim.len, victim.end - 1);
          waiting.unshift(victim);
          preemptions++;
          if (victim === s) break;
        }
        if (!running.includes(s)) continue;
        s.len++;
        kv.commit(s.id, s.tokens.subarray(0, s.len));
      }
      // Departures: finished sequences leave their prefix in the cache half the time.
      for (const s of [...running]) {
        if (s.len >= s.end) {
          running.splice(running.indexOf(s), 1);
          kv.release(s.id, rand() < 0.5);
        }
      }
      // A forward pass over the weights (streams what is not resident) every 8th step: the
      // properties do not need more, and the reads are what takes the time here.
      for (let l = 0; l < (step % 8 === 0 ? LAYERS : 0); l++) {
        store.acquire(l);
        store.release(l);
      }

      // --- properties after the step ---
      const w = store as WeightTenant;
      const weights = MemoryPool.weightBytes(w, w.level, w.targetLevel);
      // The runtime reserve takes what KV leaves of the floor, then pool memory.
      const kvAbove = Math.max(0, kv.numUsedChunks * CHUNK + runtime - floor);
      assert.ok(kv.numUsedChunks <= pool.limitChunks, `step ${step}: KV holds ${kv.numUsedChunks} chunks, grant ${pool.limitChunks}`);
      assert.ok(weights + kvAbove <= pool.poolBytes, `step ${step}: over budget: weights ${weights} + KV above the floor ${kvAbove} > pool ${pool.poolBytes}`);
      assert.ok(pool.freeBytes >= 0, `step ${step}: free ${pool.freeBytes}`);
      // The weights' real memory is what the pool accounts (pages of the arena, ring in use).
      const mem = store.memory();
      assert.equal(mem.residentBytes + mem.loadingBytes, w.residentAt[Math.max(w.level, w.targetLevel)], `step ${step}: arena resident`);
      // No weight both resident and streamed: the running plan and the arena agree per tensor.
      const plan = store.plan;
      plan.tensors.forEach((t, i) => {
        if (t.placement === 'rows') return;
        assert.equal(store.isResident(entries[i]!.name), t.placement === 'resident', `step ${step}: ${t.name} is ${t.placement} in the plan`);
      });
      const ev = pool.events;
      events.push(ev.demotions + ev.promotions);
      promos.push(ev.promotions);
    }
    // No chunk lost: everything comes back.
    for (const s of running) kv.release(s.id, false);
    kv.clearPrefixCache();
    assert.equal(kv.numUsedChunks, 0, 'chunks left after releasing everything');
    assert.equal(kv.pool.stats().mappedChunks, 0);
  } finally {
    kv.dispose();
    store.dispose();
  }
  const windows: number[] = [];
  const promotions: number[] = [];
  for (let s = 100; s <= events.length; s++) {
    windows.push(events[s - 1]! - (s > 100 ? events[s - 101]! : 0));
    promotions.push(promos[s - 1]! - (s > 100 ? promos[s - 101]! : 0));
  }
  return { windows, promotions, pool, maxRunning, preemptions };
}

test('property: random traces never go over budget, lose no chunk, keep each weight in one place, bound the events', async () => {
  let demotions = 0;
  let promotions = 0;
  let refusals = 0;
  let worst = 0;
  // Seeds 3 and 4 with a runtime reserve: half the floor, and more than the floor; 5 with a read cache.
  for (const [seed, runtime, readCache] of [[1, 0, 0], [2, 0, 0], [3, MiB / 2, 0], [4, (3 * MiB) / 2, 0], [5, MiB / 2, MiB / 2]] as const) {
    const r = await runTrace(seed, 400, runtime, readCache);
    const ev = r.pool.events;
    demotions += ev.demotions;
    promotions += ev.promotions;
    refusals += ev.kvRefusals;
    assert.ok(r.preemptions <= ev.kvRefusals, 'a preemption only after the pool said no');
    worst = Math.max(worst, ...r.windows);
    // Promotions: at most ceil(100 / cooldown) start in any 100 steps (cooldown 32 -> 4).
    assert.ok(Math.max(...r.promotions) <= Math.ceil(100 / r.pool.hysteresis.cooldownSteps), `seed ${seed}: ${Math.max(...r.promotions)} promotions in 100 steps`);
    // All events: demotions leave a doubling headroom, and go to the minimum resident set when
    // even that cannot be had, so a burst costs a few moves (measured worst 5 in 100 steps).
    assert.ok(Math.max(...r.windows) <= 8, `seed ${seed}: ${Math.max(...r.windows)} demote/promote events in 100 steps`);
  }
  // The traces did exercise the pool: weights went down and came back.
  assert.ok(demotions >= 3 && promotions >= 3, `demotions ${demotions}, promotions ${promotions}`);
  assert.ok(refusals >= 1, 'no trace reached the minimum resident set (preemption never tested)');
  assert.ok(worst >= 1);
});

test('values: cached prefixes against weights, by hand', async () => {
  const ladder = planLadder(planInputs(file), { budget: 14 * MiB, hardware: { readBytesPerSec: 1e9, computeBytesPerSec: 8e9 } });
  const store = await ElasticWeightStore.open(file, ladder, { level: 0, maxLevel: 4 });
  try {
    const pool = new MemoryPool({ budget: 64 * MiB, scratchBytes: 0, floorBytes: MiB, chunkBytes: CHUNK, slotBytes: SLOT, maxKvChunks: 1024 });
    pool.attachWeights(store);
    // Weights 0 -> 4: the pass gets faster by dt seconds; at 5 passes per second that saves
    // 5 * dt seconds per second, over the bytes of the 4 tensors.
    const dt = store.secPerPassAt(0) - store.secPerPassAt(4);
    const bytes = MemoryPool.weightBytes(store, 4) - MemoryPool.weightBytes(store, 0);
    assert.ok(dt > 0 && bytes > 0);
    assert.equal(pool.valueOfWeights(0, 4, 5), (5 * dt) / bytes);
    // Prefixes: 100 hit tokens per second, 2 ms to compute a token, over 4 MiB held: 0.2 s/s / 4 MiB.
    assert.equal(pool.valueOfPrefixes(100, 0.002, 4 * MiB), 0.2 / (4 * MiB));
    assert.equal(pool.valueOfPrefixes(0, 0.002, 4 * MiB), 0, 'a cache nobody hits is worth nothing');
    assert.equal(pool.valueOfPrefixes(100, 0.002, 0), 0);
  } finally {
    store.dispose();
  }
});

test('read cache: promotions leave it free, KV grows into it without a demotion', async () => {
  const ladder = planLadder(planInputs(file), { budget: 14 * MiB, hardware: { readBytesPerSec: 1e9, computeBytesPerSec: 8e9 } });
  const top = ladder.steps.length;
  const store = await ElasticWeightStore.open(file, ladder, { level: 0, maxLevel: top });
  const readCache = MiB;
  let clock = 0;
  try {
    // The pool holds the top level with only half the read cache to spare.
    const poolBytes = MemoryPool.weightBytes(store, top) + readCache / 2;
    const pool = new MemoryPool({ budget: MiB + poolBytes, scratchBytes: 0, floorBytes: MiB, readCacheBytes: readCache, chunkBytes: CHUNK, slotBytes: SLOT, maxKvChunks: 1024, now: () => clock });
    pool.attachWeights(store);
    pool.attachKv({ numUsedChunks: 0, numCachedChunks: 0, evictCachedChunks: () => 0 });
    for (let i = 0; i < 2000 && pool.idle(); i++) {
      clock += 10;
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.ok(pool.events.promotions >= 1, 'the weights came up');
    assert.ok(store.level > 0 && store.level < top, `level ${store.level} of ${top}`);
    assert.ok(pool.freeBytes >= readCache, `free ${pool.freeBytes} < read cache ${readCache}`);
    // One level more would have eaten into it.
    assert.ok(MemoryPool.weightBytes(store, store.level + 1) > poolBytes - readCache);
    // KV above the floor takes the read cache first: no demotion up to it.
    const floorChunks = pool.limitChunks;
    assert.ok(pool.request(Math.floor(readCache / CHUNK) - 1));
    assert.equal(pool.events.demotions, 0);
    assert.ok(pool.limitChunks > floorChunks);
  } finally {
    store.dispose();
  }
});

/**
 * A wave of prefix-cache hits, then 80 decode passes, then a minute without hits, on a pool
 * where no level above 0 fits unless the cache goes (`up`: the level that fits without it).
 * `hitTokens` sizes the wave from the value per byte the weights would have at 10 passes/s and
 * the cache's bytes. Returns what happened after the decode passes (kept) and after the minute.
 */
async function waveThenMinute(hitTokens: (weightsValue: number, cachedBytes: number) => number): Promise<{ weightsValue: number; prefixesValue: number; evictedAfterWave: number; promotionsAfterWave: number; levelAfterWave: number }> {
  const ladder = planLadder(planInputs(file), { budget: 14 * MiB, hardware: { readBytesPerSec: 1e9, computeBytesPerSec: 8e9 } });
  const top = ladder.steps.length;
  const store = await ElasticWeightStore.open(file, ladder, { level: 0, maxLevel: top });
  let clock = 0;
  try {
    // KV holds 2 MiB above its 1 MiB floor, all of it cached prefixes; the pool holds level 0,
    // that KV and the headroom (two slots) to a chunk: no level above 0 fits unless the cache goes.
    const floor = MiB;
    const poolBytes = MemoryPool.weightBytes(store, 0) + 2 * MiB + 2 * SLOT + CHUNK;
    const up = MemoryPool.levelFor(store, poolBytes - 2 * SLOT);
    assert.ok(up > 0 && MemoryPool.weightBytes(store, 1) - MemoryPool.weightBytes(store, 0) > CHUNK, `the scenario: level ${up} without the cache`);
    const pool = new MemoryPool({ budget: floor + poolBytes, scratchBytes: 0, floorBytes: floor, chunkBytes: CHUNK, slotBytes: SLOT, maxKvChunks: 1024, now: () => clock });
    pool.attachWeights(store);
    const kv = { numUsedChunks: 0, numCachedChunks: 0, evicted: 0 };
    pool.attachKv({
      get numUsedChunks() { return kv.numUsedChunks; },
      get numCachedChunks() { return kv.numCachedChunks; },
      evictCachedChunks(n: number) {
        const k = Math.min(n, kv.numCachedChunks);
        kv.numCachedChunks -= k;
        kv.numUsedChunks -= k;
        kv.evicted += k;
        return k;
      },
    });
    const extra = (2 * MiB) / CHUNK;
    assert.ok(pool.request(extra, false), 'level 0 holds the 2 MiB of KV');
    kv.numUsedChunks = kv.numCachedChunks = floor / CHUNK + extra;
    const cachedBytes = kv.numCachedChunks * CHUNK;
    const weightsValue = pool.valueOfWeights(0, up, 10);
    const hits = hitTokens(weightsValue, cachedBytes);
    // A wave: one prompt pass of 512 rows (1 ms a row) served `hits` tokens from the cache...
    clock += 512;
    pool.betweenPasses({ ms: 512, rows: 512, prefixHitTokens: hits });
    // ...then 80 decode passes of 4 rows, 100 ms each (8 s; cooldowns over after 32).
    for (let i = 0; i < 80; i++) {
      clock += 100;
      pool.betweenPasses({ ms: 100, rows: 4, prefixHitTokens: 0 });
    }
    // `hits` tokens in 8.5 s at 1 ms each, over the cache's bytes.
    assert.ok(Math.abs(pool.prefixHitTokensPerSec - hits / 8.512) < 1e-6, `${pool.prefixHitTokensPerSec} hit tokens/s`);
    const prefixesValue = pool.valueOfPrefixes(pool.prefixHitTokensPerSec, 0.001, cachedBytes);
    const after = { weightsValue, prefixesValue, evictedAfterWave: kv.evicted, promotionsAfterWave: pool.events.promotions, levelAfterWave: store.level };
    // A minute later with no hits, the cache is worth nothing: it goes for the weights.
    clock += 61_000;
    pool.betweenPasses({ ms: 100, rows: 4, prefixHitTokens: 0 });
    assert.equal(pool.prefixHitTokensPerSec, 0);
    assert.ok(kv.evicted > 0 && pool.events.prefixChunksEvictedForWeights === kv.evicted, `${kv.evicted} chunks evicted`);
    assert.equal(pool.events.promotions, 1);
    // The eviction keeps the figures it was decided on: no hits, so the prefixes were worth 0.
    const last = pool.events.lastEvictionForWeights!;
    assert.deepEqual([last.fromLevel, last.toLevel, last.evictedChunks, last.hitTokensPerSec, last.prefixesValue], [0, up, kv.evicted, 0, 0]);
    assert.equal(last.cachedBytes, cachedBytes);
    assert.ok(last.weightsValue > 0 && Math.abs(last.secPerPromptToken - 0.001) < 1e-9, JSON.stringify(last));
    assert.equal(store.targetLevel, up);
    for (let i = 0; i < 2000 && store.targetLevel !== store.level; i++) {
      store.settle();
      await new Promise((r) => setTimeout(r, 2));
    }
    return after;
  } finally {
    store.dispose();
  }
}

test('values: a burst of prefix hits keeps the cache through the decode passes after it, for the hit window', async () => {
  // 2048 tokens: 0.24 s saved per second by 3 MiB of cache, worth more than level `up`.
  const r = await waveThenMinute(() => 2048);
  assert.ok(r.prefixesValue > r.weightsValue, 'the scenario: the prefixes are worth more');
  assert.deepEqual([r.evictedAfterWave, r.promotionsAfterWave, r.levelAfterWave], [0, 0, 0], 'no cached chunk evicted for the weights, no promotion');
});

test('values: cached prefixes are evicted for weights only when the weights are worth EVICTION_MARGIN times more per byte', async () => {
  // A wave sized so the weights are worth 1.5x the cache per byte: under the margin, kept.
  const r = await waveThenMinute((weightsValue, cachedBytes) => Math.ceil(((weightsValue / 1.5) * cachedBytes * 8.512) / 0.001));
  const ratio = r.weightsValue / r.prefixesValue;
  assert.ok(ratio > 1 && ratio < EVICTION_MARGIN, `the scenario: weights worth ${ratio.toFixed(2)}x the cache`);
  assert.deepEqual([r.evictedAfterWave, r.promotionsAfterWave, r.levelAfterWave], [0, 0, 0], 'kept within the margin');
});
