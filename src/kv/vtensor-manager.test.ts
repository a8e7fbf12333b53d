import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KvShape } from './cache.js';
import { VTensorKvManager } from './vtensor-manager.js';
import { ContiguousKvManager } from './contiguous.js';
import { checkPattern, mulberry32, runKvConformance, writePattern } from './kv-conformance.js';

const CHUNK = 4096;
const perToken = (s: KvShape) => s.numLayers * 2 * s.kvDim * 2;

function assertAllFree(m: VTensorKvManager): void {
  const st = m.pool.stats();
  assert.equal(st.usedChunks, 0, 'every chunk back in the pool');
  assert.equal(st.mappedChunks, 0, 'no mapping left');
  assert.equal(st.reservations, 0, 'no reservation left');
  assert.equal(m.numCachedBlocks, 0);
}

runKvConformance({
  name: 'vtensor',
  create: (shape, capacityTokens) =>
    new VTensorKvManager({ shape, capacityBytes: capacityTokens * perToken(shape), chunkBytes: CHUNK }),
  assertAllFree: (m) => assertAllFree(m as VTensorKvManager),
});

runKvConformance({
  name: 'vtensor (look-ahead 2, synchronous prepare)',
  create: (shape, capacityTokens) =>
    new VTensorKvManager({ shape, capacityBytes: capacityTokens * perToken(shape), chunkBytes: CHUNK, lookaheadChunks: 2, backgroundMapping: false }),
  assertAllFree: (m) => assertAllFree(m as VTensorKvManager),
});

const shape: KvShape = { numLayers: 3, kvDim: 64, maxContext: 512 }; // 32 tokens per 4 KiB chunk
const numTensors = 2 * shape.numLayers;

test('vtensor: 16 sequences of random lengths map at most one partial chunk per (sequence, layer, K/V)', () => {
  const rand = mulberry32(7);
  const m = new VTensorKvManager({ shape, capacityBytes: 64 << 20, chunkBytes: CHUNK });
  const c = new ContiguousKvManager({ shape, capacityBytes: 16 * shape.maxContext * perToken(shape) });
  let total = 0;
  for (let i = 0; i < 16; i++) {
    const n = 1 + Math.floor(rand() * shape.maxContext);
    total += n;
    for (const mgr of [m, c]) {
      const seq = mgr.createSequence()!;
      assert.ok(mgr.ensure(seq, n));
      const tokens = Uint32Array.from({ length: n }, (_, k) => (k * 3 + i) % 50);
      writePattern(mgr, seq, tokens, 0, n);
      mgr.commit(seq, tokens);
    }
  }
  const st = m.stats();
  assert.equal(st.liveBytes, total * perToken(shape));
  assert.ok(st.mappedBytes >= st.liveBytes);
  assert.ok(st.mappedBytes <= st.liveBytes + 16 * numTensors * CHUNK, `${st.mappedBytes} vs ${st.liveBytes}`);
  assert.equal(m.pool.stats().mappedChunks * CHUNK, st.mappedBytes, 'native mapping count agrees');
  assert.equal(c.stats().mappedBytes, 16 * shape.maxContext * perToken(shape), 'contiguous preallocates max context');
  m.dispose();
});

test('vtensor: fork shares full chunks and copies only the tail', () => {
  const m = new VTensorKvManager({ shape, capacityBytes: 8 << 20, chunkBytes: CHUNK });
  const p = m.createSequence()!;
  const tokens = Uint32Array.from({ length: 100 }, (_, i) => i);
  assert.ok(m.ensure(p, 100));
  writePattern(m, p, tokens, 0, 100);
  m.commit(p, tokens);
  const before = m.pool.stats().usedChunks;
  assert.equal(before, 4 * numTensors); // ceil(100 / 32) slots
  const child = m.fork(p, 70)!; // 2 full slots shared, 6 tokens of slot 2 copied
  assert.equal(m.pool.stats().usedChunks, before + numTensors);
  assert.equal(m.stats().sharedBytes, 2 * numTensors * CHUNK);
  assert.equal(m.pool.stats().copies, numTensors);
  checkPattern(m, child, tokens.subarray(0, 70), 'child');
  // Truncating the parent into a shared block, then writing, copies that block first.
  m.truncate(p, 40);
  assert.ok(m.ensure(p, 60));
  const other = Uint32Array.from([...tokens.subarray(0, 40), ...Array.from({ length: 20 }, () => 999)]);
  writePattern(m, p, other, 40, 60);
  m.commit(p, other);
  checkPattern(m, child, tokens.subarray(0, 70), 'child after parent rewrote a shared block');
  checkPattern(m, p, other, 'parent');
  m.release(p);
  m.release(child);
  assertAllFree(m);
  m.dispose();
});

test('vtensor: running short evicts cached prefixes, then returns false without changes (nor evictions in vain)', () => {
  // 12 slots of 6 tensors = 72 chunks = 384 tokens.
  const m = new VTensorKvManager({ shape, capacityBytes: 72 * CHUNK, chunkBytes: CHUNK });
  const a = m.createSequence()!;
  const ta = Uint32Array.from({ length: 256 }, (_, i) => i % 7);
  assert.ok(m.ensure(a, 256));
  writePattern(m, a, ta, 0, 256);
  m.commit(a, ta);
  assert.equal(m.stats().activeBytes, 8 * numTensors * CHUNK, 'a maps 8 slots of every tensor');
  m.release(a, true);
  assert.equal(m.pool.stats().usedChunks, 8 * numTensors, 'cache keeps the prefix');
  assert.equal(m.stats().activeBytes, 0, 'chunks held by the prefix cache alone are not in use');
  assert.equal(m.stats().blockTokens, 32);
  assert.equal(m.stats().numBlocks, 12, '72 chunks / 6 tensors');
  const b = m.createSequence()!;
  assert.ok(m.ensure(b, 300), 'evicts cached blocks to make room');
  assert.equal(m.stats().activeBytes, 10 * numTensors * CHUNK, 'b maps 10 slots');
  assert.equal(m.numCachedBlocks, 2, 'evicted just enough: 10 slots for b + 2 cached = 12');
  assert.equal(m.ensure(b, 500), false, 'pool short');
  assert.equal(m.length(b), 0);
  assert.equal(m.pool.stats().usedChunks, 12 * numTensors, 'failed ensure mapped nothing');
  assert.equal(m.numCachedBlocks, 2, 'evicting the 2 cached blocks could not make room for 6 slots: both kept');
  const c = m.createSequence()!;
  assert.equal(m.fork(b, 0) !== null, true, 'an empty fork needs no chunk');
  assert.ok(m.ensure(c, 64));
  assert.equal(m.ensure(c, 65), false);
  m.prepare(c, 64);
  assert.ok(m.stats().mapMsAhead >= 0);
  m.dispose();
});

test('vtensor: prefix match shares cached blocks; a short pool hands a cache-only tail over, else degrades to the full blocks', () => {
  const m = new VTensorKvManager({ shape, capacityBytes: 72 * CHUNK, chunkBytes: CHUNK });
  const a = m.createSequence()!;
  const ta = Uint32Array.from({ length: 80 }, (_, i) => (i * 13) % 29);
  assert.ok(m.ensure(a, 80));
  writePattern(m, a, ta, 0, 80);
  m.commit(a, ta);
  m.release(a, true); // 2 full blocks + a 16-token tail cached
  const hit = m.matchPrefix(Uint32Array.from([...ta, 1]))!;
  assert.equal(hit.numTokens, 80);
  assert.equal(m.stats().sharedBytes, 0, 'the cache holds the blocks, only one sequence maps them');
  checkPattern(m, hit.seq, ta, 'hit');
  // Fill the pool so the tail cannot be copied.
  const filler = m.createSequence()!;
  assert.ok(m.ensure(filler, 32 * Math.floor(m.pool.numFreeChunks / numTensors)));
  assert.equal(m.pool.numFreeChunks, 0);
  // Only the cache holds the tail block: it is handed over (no copy), and leaves the cache.
  const copies = m.pool.stats().copies;
  const hit2 = m.matchPrefix(ta)!;
  assert.equal(hit2.numTokens, 79);
  assert.equal(m.pool.stats().copies, copies, 'handed over, not copied');
  assert.equal(m.numCachedBlocks, 2, 'the tail block left the cache');
  checkPattern(m, hit2.seq, ta.subarray(0, 79), 'hit with a handed-over tail');
  // hit2 writes its own token 79 into the handed-over chunk: no copy, nothing else changes.
  const t2 = Uint32Array.from([...ta.subarray(0, 79), 28]);
  assert.ok(m.ensure(hit2.seq, 80));
  writePattern(m, hit2.seq, t2, 79, 80);
  m.commit(hit2.seq, t2);
  assert.equal(m.pool.stats().copies, copies);
  checkPattern(m, hit.seq, ta, 'earlier hit after the hand-over');
  // A prompt diverging inside full block 1, which two sequences map: it cannot be handed
  // over nor copied, so the match keeps the full block 0 only.
  const hit3 = m.matchPrefix(Uint32Array.from([...ta.subarray(0, 40), 1000, 1001]))!;
  assert.equal(hit3.numTokens, 32);
  checkPattern(m, hit3.seq, ta.subarray(0, 32), 'hit without tail');
  assert.equal(m.stats().sharedBytes, 2 * numTensors * CHUNK, 'blocks 0 and 1 each mapped by several sequences');
  // The hand-over took nothing the cache still claims: releasing hit2 into the cache and
  // matching the original tokens gives back ta's data, and t2's for t2.
  m.release(hit2.seq, true);
  for (const [q, want] of [[Uint32Array.from([...ta, 5]), ta], [Uint32Array.from([...t2, 5]), t2]] as const) {
    const h = m.matchPrefix(q);
    assert.ok(h !== null && h.numTokens >= 64, 'hit');
    checkPattern(m, h.seq, want.subarray(0, h.numTokens), 'after the hand-over came back');
    m.release(h.seq);
  }
  m.release(hit.seq);
  m.release(hit3.seq);
  m.release(filler);
  m.clearPrefixCache();
  assertAllFree(m);
  m.dispose();
});

test('vtensor: released sequences cannot be reached through old views', () => {
  const m = new VTensorKvManager({ shape, capacityBytes: 1 << 20, chunkBytes: CHUNK });
  const s = m.createSequence()!;
  assert.ok(m.ensure(s, 10));
  const k = m.keys(s, 1);
  k[5] = 1;
  m.release(s);
  assert.equal(k.length, 0);
  assert.throws(() => m.keys(s, 1), /does not exist/);
  assert.throws(() => new VTensorKvManager({ shape: { ...shape, kvDim: 96 }, capacityBytes: 1 << 20, chunkBytes: CHUNK }), /multiple of one token row/);
  m.dispose();
});

test('vtensor: the OS refusing a mapping (vm.max_map_count) is "short", and rolls back', async () => {
  const { VTensor } = await import('./vtensor.js');
  const m = new VTensorKvManager({ shape, capacityBytes: 4 << 20, chunkBytes: CHUNK });
  const realMap = VTensor.prototype.map;
  let budget = Infinity; // mappings allowed before the fake OS refuses
  VTensor.prototype.map = function (this: InstanceType<typeof VTensor>, t: number, j: number, c: number) {
    if (budget-- <= 0) throw Object.assign(new Error('fake: mapping a chunk failed'), { code: 'ENOMEM' });
    realMap.call(this, t, j, c);
  };
  try {
    const a = m.createSequence()!;
    const ta = Uint32Array.from({ length: 50 }, (_, i) => i);
    assert.ok(m.ensure(a, 50));
    writePattern(m, a, ta, 0, 50);
    m.commit(a, ta);
    const used = m.pool.stats().usedChunks;
    budget = numTensors + 3; // the next slot maps, the one after fails half way
    assert.equal(m.ensure(a, 100), false);
    assert.equal(m.pool.stats().usedChunks, used, 'rolled back');
    assert.equal(m.pool.stats().mappedChunks, used);
    checkPattern(m, a, ta, 'after a refused mapping');
    budget = numTensors + 2; // fork: 1 full slot shared, then the tail copy fails
    assert.equal(m.fork(a, 50), null);
    assert.equal(m.pool.stats().usedChunks, used);
    assert.equal(m.stats().numSequences, 1);
    m.release(a, true);
    budget = 3;
    assert.equal(m.matchPrefix(Uint32Array.from([...ta, 7])), null);
    assert.ok(m.numMapFailures >= 3);
    budget = Infinity;
    const hit = m.matchPrefix(Uint32Array.from([...ta, 7]))!;
    checkPattern(m, hit.seq, ta, 'hit after failures');
    m.release(hit.seq);
    m.clearPrefixCache();
    assertAllFree(m);
  } finally {
    VTensor.prototype.map = realMap;
    m.dispose();
  }
});

test('vtensor: default chunk size is 64 KiB, a multiple of the row, and grows with the pool to respect max_map_count', async () => {
  const { chooseChunkBytes } = await import('./vtensor-manager.js');
  const tiny = { numLayers: 22, kvDim: 256, maxContext: 4096 };
  assert.equal(chooseChunkBytes(tiny, 256 << 20, 65530), 64 << 10);
  // 16 x 4096 tokens of tinyllama (22 layers x K/V x 512 B a token): 1,476,395,008 B, 22,528
  // chunks of 64 KiB <= 65530 / 2 -> 64 KiB (a quarter of the limit gave 128 KiB).
  assert.equal(chooseChunkBytes(tiny, 16 * 4096 * 22528, 65530), 64 << 10);
  // 64 x 4096 tokens: 90,112 chunks of 64 KiB, 45,056 of 128 KiB (> 32,765), 22,528 of 256 KiB.
  assert.equal(chooseChunkBytes(tiny, 64 * 4096 * 22528, 65530), 256 << 10);
  // 6 GiB at a 65530 limit: at most 32765 chunks -> 256 KiB (24,576 of them).
  assert.equal(chooseChunkBytes(tiny, 6 * 2 ** 30, 65530), 256 << 10);
  // A lower limit: 1.4 GiB at 16384 -> at most 8192 chunks -> 256 KiB (5,632).
  assert.equal(chooseChunkBytes(tiny, 16 * 4096 * 22528, 16384), 256 << 10);
  // A 192-byte row (kvDim 96) does not divide 64 KiB: lcm(65536, 192) = 196608.
  assert.equal(chooseChunkBytes({ numLayers: 2, kvDim: 96, maxContext: 64 }, 1 << 20, 65530), 196608);
});

test('vtensor: prepare() maps in the background; ensure() then finds the room mapped; background failures shrink back', async () => {
  const { addon } = await import('../native/addon.js');
  const m = new VTensorKvManager({ shape, capacityBytes: 4 << 20, chunkBytes: CHUNK });
  const s = m.createSequence()!;
  const tokens = Uint32Array.from({ length: 120 }, (_, i) => i % 9);
  const t0 = performance.now();
  assert.ok(m.prepare(s, 100)); // 4 slots, in the background
  const before = m.pool.stats();
  assert.equal(before.maps, 0, 'nothing mapped synchronously');
  assert.ok(m.ensure(s, 100));
  const wall = performance.now() - t0;
  const st = m.stats(); // (waiting for the mapper inside ensure() is counted once, not twice)
  assert.ok(st.mapMsAhead + st.mapMsOnCriticalPath <= wall, `${st.mapMsAhead} + ${st.mapMsOnCriticalPath} ms within ${wall} ms`);
  const after = m.pool.stats();
  assert.equal(after.maps, 0, 'ensure() had nothing left to map');
  assert.equal(after.backgroundMaps, 4 * numTensors);
  writePattern(m, s, tokens.subarray(0, 100), 0, 100);
  m.commit(s, tokens.subarray(0, 100));
  // Two background maps of the next 2 slots (4 and 5) fail: settle shrinks to the first failed slot.
  addon.vmemDebugFailNextMaps(2);
  assert.ok(m.prepare(s, 192));
  assert.equal(m.pool.pendingMaps, 2 * numTensors);
  assert.ok(m.ensure(s, 120), 'settles (2 failures), then maps what is missing synchronously');
  assert.equal(m.numMapFailures, 2);
  assert.equal(m.pool.stats().backgroundFailures, 2);
  writePattern(m, s, tokens, 100, 120);
  m.commit(s, tokens);
  checkPattern(m, s, tokens, 'after background failures');
  m.release(s);
  assertAllFree(m);
  m.dispose();
});

test('vtensor: countRoom counts growth and evictable chunks without mapping, keeping the prefixes waiting prompts hit; keepCached evicts them last', () => {
  // 32 tokens per chunk, 6 tensors: a block (one slot of every tensor) is 6 chunks; 10 blocks.
  const tokens = (seed: number, n: number) => Uint32Array.from({ length: n }, (_, i) => seed * 1000 + i);
  const setup = () => {
    const m = new VTensorKvManager({ shape, capacityBytes: 60 * CHUNK, chunkBytes: CHUNK });
    const a = m.createSequence()!;
    assert.ok(m.ensure(a, 40)); // 2 blocks
    m.commit(a, tokens(1, 40));
    const b = m.createSequence()!;
    assert.ok(m.ensure(b, 64));
    m.commit(b, tokens(2, 64));
    m.release(b, true); // cached: 2 full blocks
    const c = m.createSequence()!;
    assert.ok(m.ensure(c, 33));
    m.commit(c, tokens(3, 33));
    m.release(c, true); // cached: 1 full block + a 1-token tail block
    assert.equal(m.numUsedChunks, 36);
    return { m, a };
  };
  const { m, a } = setup();
  const wantB = tokens(2, 80); // B's 64 tokens, then 16 more
  // A to 100 tokens: 4 blocks, 2 held -> 12 chunks. Available: 60 - 36 free + 24 cache-only.
  assert.deepEqual(m.countRoom([{ seq: a, numTokens: 100 }], []), { neededChunks: 12, availableChunks: 48 });
  // A waiting prompt that hits B's blocks keeps them: only C's 12 chunks count as evictable.
  assert.deepEqual(m.countRoom([{ seq: a, numTokens: 100 }], [wantB]), { neededChunks: 12, availableChunks: 36 });
  // A newcomer with that prompt shares B's 2 full blocks and needs 1 more (80 tokens: 3 blocks).
  assert.deepEqual(m.countRoom([{ seq: a, numTokens: 100 }, { seq: null, numTokens: 80, prompt: wantB }], []), { neededChunks: 18, availableChunks: 36 });
  assert.equal(m.numUsedChunks, 36, 'counting maps nothing');
  assert.equal(m.numCachedBlocks, 4, 'counting evicts nothing');
  // Growing A by 5 blocks (30 chunks, 24 free) must evict 6 chunks: C's tail goes, not B's
  // second block (older, so LRU would take it first).
  m.keepCached([wantB]);
  assert.ok(m.ensure(a, 7 * 32));
  const hit = m.matchPrefix(wantB)!;
  assert.equal(hit.numTokens, 64, "B's blocks stayed cached");
  m.release(hit.seq);
  m.dispose();
  // Without keepCached, plain LRU takes B's second block (counting alone changes nothing).
  const lru = setup();
  lru.m.countRoom([{ seq: lru.a, numTokens: 100 }], [wantB]);
  assert.ok(lru.m.ensure(lru.a, 7 * 32));
  assert.equal(lru.m.matchPrefix(wantB)?.numTokens, 32);
  lru.m.dispose();
});
