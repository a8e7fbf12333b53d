/**
 * Expert cache properties over random routing traces (uniform, skewed, sticky), for every
 * policy, global and per-layer, with and without prefetch (1 to 3 layers ahead), with a fake reader whose reads
 * complete at random moments. A fake "memory" per slot records which expert was last read into
 * it, so overwriting a slot too early shows up as a wrong expert at compute time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExpertCache, EXPERT_POLICIES, type ExpertPolicyName } from './expert-cache.js';
import { expertWavesFromEnv } from './create-moe.js';
import { InvalidOptionError } from '../errors.js';
import { ExpertScheduler, type ExpertIo, type ExpertWave, type ExpertWaves } from './expert-scheduler.js';

/** xorshift32: deterministic traces. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

type Routing = 'uniform' | 'zipf' | 'sticky';

/** Per pass, per layer: the distinct experts of `rows` rows each routed to k experts. */
function trace(r: () => number, passes: number, L: number, E: number, k: number, rows: number, kind: Routing): number[][][] {
  const out: number[][][] = [];
  // Zipf popularity per layer: a random permutation of 1 / (rank + 1).
  const perm = Array.from({ length: L }, () => Array.from({ length: E }, (_, i) => i).sort(() => r() - 0.5));
  const weights = Array.from({ length: E }, (_, i) => 1 / (i + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  let prev: number[][][] | undefined;
  for (let p = 0; p < passes; p++) {
    const pass: number[][] = [];
    const rowsSel: number[][][] = [];
    for (let l = 0; l < L; l++) {
      const union = new Set<number>();
      const sel: number[][] = [];
      for (let row = 0; row < rows; row++) {
        const chosen = new Set<number>();
        if (kind === 'sticky' && prev && r() < 0.6) for (const e of prev[l]![row] ?? []) chosen.add(e);
        while (chosen.size < k) {
          let e: number;
          if (kind === 'zipf') {
            let u = r() * total;
            let i = 0;
            while (i < E - 1 && (u -= weights[i]!) > 0) i++;
            e = perm[l]![i]!;
          } else e = Math.floor(r() * E);
          chosen.add(e);
        }
        sel.push([...chosen]);
        for (const e of chosen) union.add(e);
      }
      rowsSel.push(sel);
      pass.push([...union].sort((a, b) => a - b));
    }
    prev = rowsSel;
    out.push(pass);
  }
  return out;
}

class FakeIo implements ExpertIo {
  /** Key last read into each slot (-1 none). */
  readonly content: Int32Array;
  readonly pending = new Set<number>();
  /** Called at each read with the key the slot held before. */
  onRead: (slot: number, key: number, previous: number) => void = () => {};
  constructor(
    numSlots: number,
    private readonly E: number,
    private readonly r: () => number,
  ) {
    this.content = new Int32Array(numSlots).fill(-1);
  }
  read(slot: number, layer: number, expert: number): void {
    assert.ok(!this.pending.has(slot), `slot ${slot} read again while its read is in flight`);
    const key = layer * this.E + expert;
    this.onRead(slot, key, this.content[slot]!);
    this.content[slot] = key;
    this.pending.add(slot);
  }
  wait(slot: number): void {
    this.pending.delete(slot);
  }
  done(slot: number): boolean {
    if (this.r() < 0.5) this.pending.delete(slot);
    return !this.pending.has(slot);
  }
}

interface Scenario {
  L: number;
  E: number;
  k: number;
  rows: number;
  slots: number | number[];
  policy: ExpertPolicyName;
  prefetch: boolean;
  /** Layers predicted ahead when prefetching (default 1). */
  lookahead?: number;
  /** When misses compute (default the scheduler's: 'ready'). */
  waves?: ExpertWaves;
  routing: Routing;
  passes: number;
}

/** Runs a trace through cache + scheduler and checks every property; returns the scheduler. */
function simulate(seed: number, s: Scenario): ExpertScheduler {
  const r = rng(seed);
  const cache = new ExpertCache({ numLayers: s.L, numExperts: s.E, numExpertsUsed: s.k, slots: s.slots, policy: s.policy });
  const io = new FakeIo(cache.numSlots, s.E, r);
  const sched = new ExpertScheduler(cache, io, { prefetch: s.prefetch, expertBytes: new Array(s.L).fill(1), ...(s.waves ? { waves: s.waves } : {}) });
  const tr = trace(r, s.passes, s.L, s.E, s.k, s.rows, s.routing);
  for (let p = 0; p < tr.length; p++) {
    // Demand reads of each (layer, expert) in this pass: at most one.
    const demandReads = new Map<number, number>();
    for (let l = 0; l < s.L; l++) {
      const need = tr[p]![l]!;
      const needSet = new Set(need);
      const computed = new Set<number>();
      // Which expert keys were cached (or being read) when the step began: those are hits.
      const cachedAtStart = new Set(need.filter((e) => cache.find(l, e) >= 0));
      io.onRead = (slot, key, previous) => {
        const layer = Math.floor(key / s.E);
        // Eviction never removes an expert the current step still needs.
        if (previous >= 0 && Math.floor(previous / s.E) === l) {
          const e = previous % s.E;
          assert.ok(!(needSet.has(e) && !computed.has(e)), `pass ${p} layer ${l}: slot ${slot} overwritten while expert ${e} was still needed`);
        }
        // Per-layer partitions hold only their own layer's experts.
        if (cache.mode === 'per-layer') {
          const [a, b] = cache.partition(layer);
          assert.ok(slot >= a && slot < b, `slot ${slot} outside layer ${layer}'s partition`);
        }
        if (layer === l) {
          assert.ok(!cachedAtStart.has(key % s.E), `pass ${p} layer ${l}: hit expert ${key % s.E} read again`);
          demandReads.set(key, (demandReads.get(key) ?? 0) + 1);
          assert.equal(demandReads.get(key), 1, `pass ${p}: expert ${key % s.E} of layer ${l} read twice for one step`);
        }
      };
      // The predictions for the next layers: their true experts with noise (more farther out).
      const ahead: { layer: number; experts: number[] }[] = [];
      for (let d = 1; d <= (s.lookahead ?? 1) && l + d < s.L; d++) {
        const noisy = tr[p]![l + d]!.filter(() => r() < 0.8 - 0.15 * d).concat(r() < 0.3 * d ? [Math.floor(r() * s.E)] : []);
        ahead.push({ layer: l + d, experts: [...new Set(noisy)] });
      }
      sched.run(
        l,
        need,
        (w: ExpertWave) => {
          for (let i = 0; i < w.experts.length; i++) {
            const e = w.experts[i]!;
            const slot = w.slots[i]!;
            assert.ok(needSet.has(e), `computed expert ${e} that layer ${l} does not need`);
            assert.ok(!computed.has(e), `expert ${e} of layer ${l} computed twice`);
            assert.equal(io.content[slot], l * s.E + e, `slot ${slot} does not hold expert ${e} of layer ${l} at compute time`);
            assert.ok(!io.pending.has(slot), `slot ${slot} computed before its read completed`);
            assert.ok(cache.pinned(slot), `slot ${slot} not pinned while computing`);
            computed.add(e);
          }
        },
        ahead,
      );
      assert.equal(computed.size, needSet.size, `pass ${p} layer ${l}: ${needSet.size - computed.size} experts never computed`);
      checkTable(cache, s);
    }
  }
  return sched;
}

/** Slot table consistency: every slot's key maps back to it; never more experts than slots. */
function checkTable(cache: ExpertCache, s: Scenario): void {
  let cached = 0;
  for (let slot = 0; slot < cache.numSlots; slot++) {
    const k = cache.keyOf(slot);
    if (!k) continue;
    cached++;
    assert.equal(cache.find(k.layer, k.expert), slot);
  }
  let found = 0;
  for (let l = 0; l < s.L; l++) found += cache.countLayer(l);
  assert.equal(found, cached);
  assert.ok(cached <= cache.numSlots);
}

function randomScenario(r: () => number): Scenario {
  const L = 1 + Math.floor(r() * 5);
  const E = 2 + Math.floor(r() * 14);
  const k = 1 + Math.floor(r() * Math.min(E, 4));
  const perLayer = r() < 0.5;
  const slots = perLayer ? Array.from({ length: L }, () => 1 + Math.floor(r() * E)) : 1 + Math.floor(r() * L * E);
  return {
    L, E, k, slots,
    rows: 1 + Math.floor(r() * 5),
    policy: EXPERT_POLICIES[Math.floor(r() * EXPERT_POLICIES.length)]!,
    prefetch: r() < 0.7,
    lookahead: 1 + Math.floor(r() * 3),
    waves: r() < 0.75 ? 'ready' : 'all',
    routing: (['uniform', 'zipf', 'sticky'] as const)[Math.floor(r() * 3)]!,
    passes: 4 + Math.floor(r() * 12),
  };
}

test('expert cache: properties over 400 random routing traces (every policy, global and per-layer, prefetch on/off, 1-3 layers ahead, both wave modes)', () => {
  const r = rng(12345);
  for (let i = 0; i < 400; i++) {
    const s = randomScenario(r);
    try {
      simulate(1000 + i, s);
    } catch (err) {
      (err as Error).message += ` [trace ${i}: ${JSON.stringify(s)}]`;
      throw err;
    }
  }
});

test('expert cache: a single slot still serves a batch that needs many experts (waves, each read once)', () => {
  for (const policy of EXPERT_POLICIES) {
    simulate(7, { L: 3, E: 8, k: 4, rows: 6, slots: 1, policy, prefetch: true, routing: 'uniform', passes: 6 });
    simulate(8, { L: 3, E: 8, k: 4, rows: 6, slots: [1, 1, 1], policy, prefetch: true, routing: 'zipf', passes: 6 });
    simulate(9, { L: 4, E: 8, k: 4, rows: 6, slots: 2, policy, prefetch: true, lookahead: 3, routing: 'uniform', passes: 6 });
  }
});

test('expert cache: all experts fit -> after the first pass every lookup hits and nothing is read', () => {
  const L = 4;
  const E = 8;
  const sched = simulate(3, { L, E, k: 2, rows: 1, slots: L * E, policy: 'lru', prefetch: false, routing: 'uniform', passes: 1 });
  const before = sched.stats();
  const r = rng(99);
  const io = { read: () => assert.fail('no read expected'), wait: () => {}, done: () => true };
  // Fill: same cache, a scheduler over an io that must not be called once everything is in.
  const cache = sched.cache;
  for (let l = 0; l < L; l++) for (let e = 0; e < E; e++) if (cache.find(l, e) < 0) cache.unpin(cache.assign(l, e));
  const s2 = new ExpertScheduler(cache, io, { expertBytes: new Array(L).fill(1) });
  for (let p = 0; p < 5; p++) for (let l = 0; l < L; l++) s2.run(l, [Math.floor(r() * E)], () => {});
  assert.equal(s2.stats().hitRate, 1);
  assert.ok(before.lookups > 0);
});

test('expert cache: hit rates under uniform routing (per-layer = slots / experts; least-stale avoids LRU collision misses in a global cache)', () => {
  const L = 16;
  const E = 64;
  const k = 4;
  const base = { L, E, k, rows: 1, prefetch: false, routing: 'uniform' as Routing, passes: 200 };
  // Per layer, 16 of 64 slots: any policy hits 16/64 of uniform lookups.
  for (const policy of EXPERT_POLICIES) {
    const h = simulate(5, { ...base, slots: new Array(L).fill(16), policy }).stats().hitRate;
    assert.ok(Math.abs(h - 0.25) < 0.02, `${policy} per-layer hit rate ${h}`);
  }
  // Global pool of the same size: LRU evicts the next layers' experts just before their turn
  // (measured 0.224 vs 0.247 for least-stale with these seeds).
  const lru = simulate(5, { ...base, slots: 16 * L, policy: 'lru' }).stats().hitRate;
  const stale = simulate(5, { ...base, slots: 16 * L, policy: 'least-stale' }).stats().hitRate;
  assert.ok(stale > 0.235, `least-stale global hit rate ${stale}`);
  assert.ok(stale > lru + 0.01, `least-stale ${stale} vs LRU ${lru}`);
});

test('expert cache: skewed (Zipf) routing: LFU and least-stale keep the popular experts, LRU less so', () => {
  const base = { L: 4, E: 32, k: 2, rows: 1, prefetch: false, routing: 'zipf' as Routing, passes: 600, slots: [8, 8, 8, 8] };
  const lru = simulate(11, { ...base, policy: 'lru' }).stats().hitRate;
  const lfu = simulate(11, { ...base, policy: 'lfu' }).stats().hitRate;
  const stale = simulate(11, { ...base, policy: 'least-stale' }).stats().hitRate;
  assert.ok(lfu > lru + 0.05, `lfu ${lfu} vs lru ${lru}`);
  assert.ok(stale > lru + 0.05, `least-stale ${stale} vs lru ${lru}`);
});

test('expert cache: prefetch of a perfect prediction turns misses into hits and is counted', () => {
  const L = 4;
  const E = 16;
  const r = rng(21);
  const cache = new ExpertCache({ numLayers: L, numExperts: E, numExpertsUsed: 2, slots: new Array(L).fill(4), policy: 'lru' });
  const io = new FakeIo(cache.numSlots, E, r);
  const sched = new ExpertScheduler(cache, io, { expertBytes: [10, 20, 30, 40] });
  const tr = trace(r, 50, L, E, 2, 1, 'uniform');
  for (const pass of tr) {
    for (let l = 0; l < L; l++) sched.run(l, pass[l]!, () => {}, l + 1 < L ? [{ layer: l + 1, experts: pass[l + 1]! }] : []);
  }
  const st = sched.stats();
  assert.equal(st.predictionAccuracy, 1);
  assert.equal(st.predictedLookups, 50 * 3 * 2);
  // Layers 1..3 always hit (prefetched); layer 0 hits by chance only.
  for (let l = 1; l < L; l++) assert.equal(st.layerHits[l], st.layerLookups[l]);
  assert.ok(st.prefetchUsed > 0 && st.prefetchReads >= st.prefetchUsed);
  // A perfect prediction wastes no read: every prefetched byte was used (all but the last pass's).
  assert.ok(st.prefetchBytes >= st.prefetchUsedBytes && st.prefetchBytes - st.prefetchUsedBytes <= 3 * 2 * 40, `${st.prefetchBytes} vs ${st.prefetchUsedBytes}`);
  assert.ok(st.bytesRead > 0);
});

test('expert cache: two layers ahead: each distance is scored, a nearer prediction replaces a farther one, reads stay once per step', () => {
  const L = 5;
  const E = 16;
  const r = rng(33);
  for (const slots of [new Array(L).fill(6), 6 * L]) {
    const cache = new ExpertCache({ numLayers: L, numExperts: E, numExpertsUsed: 2, slots, policy: 'least-stale' });
    const io = new FakeIo(cache.numSlots, E, r);
    const sched = new ExpertScheduler(cache, io, { expertBytes: new Array(L).fill(1) });
    const tr = trace(r, 40, L, E, 2, 1, 'uniform');
    let reads = 0;
    io.onRead = () => reads++;
    for (const pass of tr) {
      for (let l = 0; l < L; l++) {
        // distance 1: the true experts; distance 2: one of the two true experts and a wrong one.
        const ahead = [];
        if (l + 1 < L) ahead.push({ layer: l + 1, experts: pass[l + 1]! });
        if (l + 2 < L) {
          const truth = pass[l + 2]!;
          let wrong = Math.floor(r() * E);
          while (truth.includes(wrong)) wrong = (wrong + 1) % E;
          ahead.push({ layer: l + 2, experts: [wrong, truth[1]!] });
        }
        sched.run(l, pass[l]!, () => {}, ahead);
      }
    }
    const st = sched.stats();
    // distance 1: every expert of layers 1..4; distance 2: layers 2..4, exactly one of two right.
    assert.deepEqual(st.predictedLookupsByDistance, [40 * 4 * 2, 40 * 3 * 2]);
    assert.equal(st.predictionAccuracyByDistance[0], 1);
    assert.equal(st.predictionAccuracyByDistance[1], 0.5);
    // The nearest prediction is what predictionAccuracy reports.
    assert.equal(st.predictionAccuracy, 1);
    for (let l = 1; l < L; l++) assert.equal(st.layerHits[l], st.layerLookups[l], `layer ${l} (${JSON.stringify(slots)})`);
    assert.equal(reads, st.reads);
  }
});

test("expert cache: 'ready' waves compute each read as it completes while later reads load; 'all' waits for the step's reads", () => {
  // One layer, 8 slots, nothing cached: a step of 4 experts issues 4 demand reads, which this
  // reader completes one at a time, oldest first, only when the scheduler waits for them.
  for (const waves of ['ready', 'all'] as const) {
    const cache = new ExpertCache({ numLayers: 1, numExperts: 8, numExpertsUsed: 4, slots: 8, policy: 'lru' });
    const queue: number[] = [];
    const io: ExpertIo = {
      read: (slot) => void queue.push(slot),
      wait: (slot) => {
        assert.ok(queue.includes(slot), `wait on slot ${slot} that is not being read`);
        while (queue.shift() !== slot);
      },
      done: (slot) => !queue.includes(slot),
    };
    const sched = new ExpertScheduler(cache, io, { expertBytes: [1], waves });
    const pendingAtCompute: number[] = [];
    const sizes: number[] = [];
    sched.run(0, [5, 1, 6, 2], (w) => {
      sizes.push(w.experts.length);
      for (const s of w.slots) assert.ok(!queue.includes(s), `slot ${s} computed before its read completed`);
      pendingAtCompute.push(queue.length);
    });
    if (waves === 'ready') {
      // one expert per wave, the first while 3 reads are still loading
      assert.deepEqual(sizes, [1, 1, 1, 1]);
      assert.deepEqual(pendingAtCompute, [3, 2, 1, 0]);
    } else {
      assert.deepEqual(sizes, [4]);
      assert.deepEqual(pendingAtCompute, [0]);
    }
    assert.equal(sched.stats().waves, sizes.length);
  }
});

test('expert cache: typed range errors', () => {
  assert.throws(() => new ExpertCache({ numLayers: 0, numExperts: 4, numExpertsUsed: 1, slots: 1 }), RangeError);
  assert.throws(() => new ExpertCache({ numLayers: 2, numExperts: 4, numExpertsUsed: 1, slots: [1] }), /2 layers/);
  assert.throws(() => new ExpertCache({ numLayers: 1, numExperts: 4, numExpertsUsed: 1, slots: [5] }), /\[1, 4\]/);
  const c = new ExpertCache({ numLayers: 1, numExperts: 4, numExpertsUsed: 1, slots: 2 });
  const s = c.assign(0, 1);
  assert.throws(() => c.assign(0, 1), /already in slot/);
  c.unpin(s);
  assert.throws(() => c.unpin(s), /not pinned/);
  const sched = new ExpertScheduler(c, { read: () => {}, wait: () => {}, done: () => true }, { expertBytes: [1] });
  assert.throws(() => sched.run(0, [1, 1], () => {}), /not distinct/);
  assert.throws(() => sched.run(0, [1], () => {}, [{ layer: 0, experts: [2] }]), /must be a later layer/);
});

test('FLEXINFER_EXPERT_WAVES: ready / all, anything else a typed error', () => {
  assert.equal(expertWavesFromEnv(''), undefined);
  assert.equal(expertWavesFromEnv('all'), 'all');
  assert.equal(expertWavesFromEnv(' ready '), 'ready');
  assert.throws(() => expertWavesFromEnv('some'), (e: Error) => e instanceof InvalidOptionError && /FLEXINFER_EXPERT_WAVES: expected 'ready' or 'all', got 'some'/.test(e.message));
});
