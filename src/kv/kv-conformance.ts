/**
 * One conformance suite run against every KvManager implementation (contiguous, vTensor, paged).
 *
 * The reference model is deliberately independent of any layout: the K/V a sequence must hold
 * at position p is a pure function of its committed tokens [0, p] (as in a real model, where
 * K/V at p depends on the prefix). So every sequence's expected contents follow from its token
 * list alone, whatever was shared, forked, copied or reused from the prefix cache.
 * @internal
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isPagedKvCache, type KvShape, type SeqId } from './cache.js';
import type { KvManager } from './manager.js';
import { mulberry32 } from './random.js';

export { mulberry32 };

/** How a suite builds the manager under test and checks it is leak-free. */
export interface ConformanceTarget {
  name: string;
  /** A manager for `shape` with room for roughly `capacityTokens` tokens of every layer. */
  create(shape: KvShape, capacityTokens: number): KvManager;
  /** Asserts that nothing is held any more (called after releasing all and clearing the cache). */
  assertAllFree(m: KvManager): void;
}

/** Hash of the prefix tokens[0, p] for every p: the stamp of position p. */
function prefixStamps(tokens: Uint32Array): Uint32Array {
  const out = new Uint32Array(tokens.length);
  let h = 0x811c9dc5;
  for (let p = 0; p < tokens.length; p++) {
    h = Math.imul(h ^ tokens[p]!, 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0x5bd1e995) >>> 0;
    out[p] = h;
  }
  return out;
}

/** The f16 bits expected at element i of layer `layer`'s K (kv=0) or V (kv=1) for stamp s. */
function expectedElem(stamp: number, layer: number, kv: number, i: number): number {
  return (Math.imul(stamp ^ (layer * 131 + kv * 7919 + i * 31), 0x9e3779b1) >>> 16) & 0xffff;
}

/**
 * One layer's K and V of `seq` and where element i of position p sits in them: the sequence's
 * own arrays (contiguous, vTensor), or the layer's pools through the block table (paged).
 */
function layerElements(m: KvManager, seq: SeqId, layer: number): { k: Uint16Array; v: Uint16Array; at: (p: number, i: number) => number } {
  if (isPagedKvCache(m)) {
    const table = m.blockTable(seq);
    const { blockTokens: B, headDim: hd } = m;
    const numKvHeads = m.shape.kvDim / hd;
    const at = (p: number, i: number) => ((table[Math.floor(p / B)]! * numKvHeads + Math.floor(i / hd)) * B + (p % B)) * hd + (i % hd);
    return { k: m.keyPool(layer), v: m.valuePool(layer), at };
  }
  const d = m.shape.kvDim;
  return { k: m.keys(seq, layer), v: m.values(seq, layer), at: (p, i) => p * d + i };
}

/** Writes the expected K/V of positions [from, to) of `seq` (whose tokens are `tokens`). */
export function writePattern(m: KvManager, seq: SeqId, tokens: Uint32Array, from: number, to: number): void {
  const stamps = prefixStamps(tokens);
  const d = m.shape.kvDim;
  for (let l = 0; l < m.shape.numLayers; l++) {
    const { k, v, at } = layerElements(m, seq, l);
    for (let p = from; p < to; p++) {
      for (let i = 0; i < d; i++) {
        k[at(p, i)] = expectedElem(stamps[p]!, l, 0, i);
        v[at(p, i)] = expectedElem(stamps[p]!, l, 1, i);
      }
    }
  }
}

/** Asserts positions [0, tokens.length) of `seq` hold the expected K/V of `tokens`. */
export function checkPattern(m: KvManager, seq: SeqId, tokens: Uint32Array, what: string): void {
  const stamps = prefixStamps(tokens);
  const d = m.shape.kvDim;
  for (let l = 0; l < m.shape.numLayers; l++) {
    const { k, v, at } = layerElements(m, seq, l);
    for (let p = 0; p < tokens.length; p++) {
      for (let i = 0; i < d; i++) {
        const ek = expectedElem(stamps[p]!, l, 0, i);
        const ev = expectedElem(stamps[p]!, l, 1, i);
        if (k[at(p, i)] !== ek || v[at(p, i)] !== ev) {
          assert.fail(`${what}: seq ${seq} layer ${l} pos ${p} elem ${i}: K ${k[at(p, i)]} (want ${ek}), V ${v[at(p, i)]} (want ${ev})`);
        }
      }
    }
  }
}

/** Registers the conformance tests for one implementation. */
export function runKvConformance(target: ConformanceTarget): void {
  // 4 KiB chunks hold 32 tokens of kvDim 64 (128 B per row): 8 chunks per tensor at ctx 256.
  const shape: KvShape = { numLayers: 2, kvDim: 64, maxContext: 256 };

  test(`${target.name}: sequence grows, data reads back, release frees`, () => {
    const m = target.create(shape, 4 * shape.maxContext);
    const seq = m.createSequence();
    assert.notEqual(seq, null);
    const tokens = Uint32Array.from({ length: 100 }, (_, i) => (i * 7) % 13);
    assert.equal(m.ensure(seq!, 40), true);
    writePattern(m, seq!, tokens.subarray(0, 40), 0, 40);
    m.commit(seq!, tokens.subarray(0, 40));
    assert.equal(m.ensure(seq!, 100), true);
    writePattern(m, seq!, tokens, 40, 100);
    m.commit(seq!, tokens);
    assert.equal(m.length(seq!), 100);
    checkPattern(m, seq!, tokens, 'grown sequence');
    assert.equal(m.stats().liveBytes, 100 * shape.numLayers * 2 * shape.kvDim * 2);
    assert.throws(() => m.ensure(seq!, shape.maxContext + 1), RangeError);
    m.release(seq!);
    assert.throws(() => m.length(seq!), /does not exist/);
    m.clearPrefixCache();
    target.assertAllFree(m);
    m.dispose();
  });

  test(`${target.name}: fork is copy-on-write in both directions`, () => {
    const m = target.create(shape, 6 * shape.maxContext);
    const parent = m.createSequence()!;
    const base = Uint32Array.from({ length: 70 }, (_, i) => i % 11);
    assert.ok(m.ensure(parent, 70));
    writePattern(m, parent, base, 0, 70);
    m.commit(parent, base);
    for (const n of [64, 50, 0]) {
      const child = m.fork(parent, n);
      assert.notEqual(child, null);
      assert.equal(m.length(child!), n);
      checkPattern(m, child!, base.subarray(0, n), `child after fork at ${n}`);
      // The child diverges from position n: its new tokens must not show in the parent.
      const childTokens = Uint32Array.from([...base.subarray(0, n), ...Array.from({ length: 30 }, (_, i) => 100 + i)]);
      assert.ok(m.ensure(child!, childTokens.length));
      writePattern(m, child!, childTokens, n, childTokens.length);
      m.commit(child!, childTokens);
      checkPattern(m, parent, base, `parent after child ${n} wrote its tail`);
      checkPattern(m, child!, childTokens, `child ${n}`);
      // And the parent's writes past n do not show in the child.
      const parentTokens = Uint32Array.from([...base, 200, 201, 202]);
      assert.ok(m.ensure(parent, parentTokens.length));
      writePattern(m, parent, parentTokens, base.length, parentTokens.length);
      m.commit(parent, parentTokens);
      m.truncate(parent, base.length);
      checkPattern(m, child!, childTokens, `child ${n} after parent wrote`);
      m.release(child!);
    }
    m.release(parent);
    m.clearPrefixCache();
    target.assertAllFree(m);
    m.dispose();
  });

  test(`${target.name}: released prefix is found again and reused`, () => {
    const m = target.create(shape, 6 * shape.maxContext);
    const seq = m.createSequence()!;
    const turn1 = Uint32Array.from({ length: 90 }, (_, i) => (i * 5) % 17);
    assert.ok(m.ensure(seq, 90));
    writePattern(m, seq, turn1, 0, 90);
    m.commit(seq, turn1);
    m.release(seq, true);
    assert.equal(m.matchPrefix(Uint32Array.from([999, 1, 2])), null);
    const turn2 = Uint32Array.from([...turn1, 3, 4, 5]);
    const hit = m.matchPrefix(turn2);
    assert.notEqual(hit, null);
    assert.equal(hit!.numTokens, 90);
    assert.equal(m.length(hit!.seq), 90);
    checkPattern(m, hit!.seq, turn1, 'reused prefix');
    // A prompt equal to the cached tokens leaves one token to compute.
    const same = m.matchPrefix(turn1);
    assert.equal(same!.numTokens, 89);
    const st = m.stats();
    assert.equal(st.prefixHits, 2);
    assert.equal(st.prefixMisses, 1);
    assert.equal(st.prefixTokensReused, 179);
    m.release(hit!.seq);
    m.release(same!.seq);
    m.clearPrefixCache();
    target.assertAllFree(m);
    m.dispose();
  });

  test(`${target.name}: a pool that holds one sequence still reuses the released prefix, turn after turn`, () => {
    // Room for exactly one full-context sequence: a released turn fills the whole pool, so the
    // next turn's prefix can only be reused by taking the cached memory over (no room to copy).
    const m = target.create(shape, shape.maxContext);
    let history = Uint32Array.from({ length: shape.maxContext - 6 }, (_, i) => (i * 3) % 19);
    let seq = m.createSequence()!;
    assert.ok(m.ensure(seq, shape.maxContext), 'one full-context sequence fits');
    writePattern(m, seq, history, 0, history.length);
    m.commit(seq, history);
    m.release(seq, true);
    for (let turn = 0; turn < 3; turn++) {
      const prompt = Uint32Array.from([...history, 50 + turn, 60 + turn]);
      const hit = m.matchPrefix(prompt);
      assert.notEqual(hit, null, `turn ${turn}: prefix-cache hit`);
      assert.equal(hit!.numTokens, history.length, `turn ${turn}: the whole history is reused`);
      checkPattern(m, hit!.seq, history, `turn ${turn}: reused history`);
      seq = hit!.seq;
      assert.ok(m.ensure(seq, prompt.length), `turn ${turn}: room for the new tokens`);
      writePattern(m, seq, prompt, history.length, prompt.length);
      m.commit(seq, prompt);
      checkPattern(m, seq, prompt, `turn ${turn}: after writing past the reused prefix`);
      // Next turn: a shorter history that diverges near the end (a regenerated reply).
      history = Uint32Array.from([...prompt.subarray(0, prompt.length - 4), 70 + turn]);
      m.truncate(seq, prompt.length - 4);
      assert.ok(m.ensure(seq, history.length));
      writePattern(m, seq, history, prompt.length - 4, history.length);
      m.commit(seq, history);
      m.release(seq, true);
    }
    // A hit is never stale: the original first turn matches at most what still holds its data.
    const first = Uint32Array.from({ length: shape.maxContext - 6 }, (_, i) => (i * 3) % 19);
    const again = m.matchPrefix(Uint32Array.from([...first, 1]));
    if (again !== null) {
      checkPattern(m, again.seq, first.subarray(0, again.numTokens), 'first turn again');
      m.release(again.seq);
    }
    // Unrelated work still gets the whole pool (the cache gives way).
    const other = m.createSequence()!;
    assert.ok(m.ensure(other, shape.maxContext), 'the cache is evicted for a new full-context sequence');
    m.release(other);
    m.clearPrefixCache();
    target.assertAllFree(m);
    m.dispose();
  });

  for (const seed of [0xc0ffee, 17, 2024]) test(`${target.name}: randomized operations against the reference model (seed ${seed})`, () => {
    const rand = mulberry32(seed);
    const int = (n: number) => Math.floor(rand() * n);
    // Capacity for ~5 full-context sequences: the pool runs short now and then.
    const m = target.create(shape, 5 * shape.maxContext);
    const live = new Map<SeqId, Uint32Array>();
    // A few "conversations" so prompts share prefixes.
    const scripts = Array.from({ length: 4 }, () => Uint32Array.from({ length: shape.maxContext }, () => int(6)));
    const pick = () => [...live.keys()][int(live.size)]!;
    let shortfalls = 0;
    let hits = 0;
    for (let step = 0; step < 3000; step++) {
      const op = int(100);
      if (op < 12 || live.size === 0) {
        const seq = m.createSequence();
        if (seq === null) shortfalls++;
        else {
          assert.equal(live.has(seq), false, 'fresh sequence id');
          assert.equal(m.length(seq), 0);
          live.set(seq, new Uint32Array(0));
        }
      } else if (op < 50) {
        const seq = pick();
        const tokens = live.get(seq)!;
        const n = Math.min(shape.maxContext, tokens.length + 1 + int(int(3) === 0 ? 70 : 6));
        if (rand() < 0.3) m.prepare(seq, Math.min(shape.maxContext, n + 8));
        if (!m.ensure(seq, n)) {
          shortfalls++;
          assert.equal(m.length(seq), tokens.length, 'failed ensure leaves the sequence unchanged');
          continue;
        }
        // Follow one script (shared prefixes) or diverge with random tokens.
        const s = scripts[int(scripts.length)]!;
        const next = Uint32Array.from({ length: n }, (_, i) => (i < tokens.length ? tokens[i]! : rand() < 0.9 ? s[i]! : int(6)));
        writePattern(m, seq, next, tokens.length, n);
        m.commit(seq, next);
        live.set(seq, next);
      } else if (op < 60) {
        const parent = pick();
        const tokens = live.get(parent)!;
        const n = int(tokens.length + 1);
        const child = m.fork(parent, n);
        if (child === null) shortfalls++;
        else live.set(child, tokens.slice(0, n));
      } else if (op < 68) {
        const seq = pick();
        const n = int(live.get(seq)!.length + 1);
        m.truncate(seq, n);
        live.set(seq, live.get(seq)!.slice(0, n));
        assert.equal(m.length(seq), n);
      } else if (op < 85) {
        const seq = pick();
        m.release(seq, rand() < 0.7);
        live.delete(seq);
      } else {
        const s = scripts[int(scripts.length)]!;
        const prompt = s.slice(0, 1 + int(shape.maxContext));
        const hit = m.matchPrefix(prompt);
        if (hit !== null) {
          hits++;
          assert.ok(hit.numTokens >= 1 && hit.numTokens <= prompt.length - 1, 'match leaves a token to compute');
          assert.equal(m.length(hit.seq), hit.numTokens);
          live.set(hit.seq, prompt.slice(0, hit.numTokens));
          checkPattern(m, hit.seq, prompt.subarray(0, hit.numTokens), `prefix hit at step ${step}`);
        }
      }
      if (step % 100 === 0) for (const [seq, tokens] of live) checkPattern(m, seq, tokens, `step ${step}`);
      assert.equal(m.stats().numSequences, live.size);
    }
    for (const [seq, tokens] of live) checkPattern(m, seq, tokens, 'end');
    assert.ok(shortfalls > 0, 'the test should exercise running short');
    assert.ok(hits > 0, 'the test should exercise prefix hits');
    for (const seq of live.keys()) m.release(seq, rand() < 0.5);
    m.clearPrefixCache();
    target.assertAllFree(m);
    const st = m.stats();
    assert.equal(st.numSequences, 0);
    assert.equal(st.liveBytes, 0);
    m.dispose();
  });
}
