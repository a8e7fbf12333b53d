// Sliding-window layers in the vTensor layout: a local layer's K/V unmaps the chunks its window
// has left behind. Checked against a contiguous cache holding the same rows (every position a
// window still reaches keeps its value), byte counts against the window, chunks back in the
// pool, and the prefix cache keeping only the end of each window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KvShape } from './cache.js';
import { VTensorKvManager } from './vtensor-manager.js';

const CHUNK = 4096;
const WINDOW = 40; // not a multiple of the 32 tokens a chunk holds: a window spans up to 3 chunks
const shape: KvShape = { numLayers: 3, kvDim: 64, maxContext: 512, layerWindows: [WINDOW, 0, WINDOW] };
const TPC = CHUNK / (shape.kvDim * 2);
const rowValue = (pos: number, layer: number, v: boolean, i: number) => (pos * 7 + layer * 3 + (v ? 1 : 0) + i * 11) & 0x7bff;

function writeRow(m: VTensorKvManager, seq: number, pos: number): void {
  for (let l = 0; l < shape.numLayers; l++) {
    const k = m.keys(seq, l), v = m.values(seq, l);
    for (let i = 0; i < shape.kvDim; i++) {
      k[pos * shape.kvDim + i] = rowValue(pos, l, false, i);
      v[pos * shape.kvDim + i] = rowValue(pos, l, true, i);
    }
  }
}

/** Every row the next query (at position n) reads holds what was written there. */
function checkReachable(m: VTensorKvManager, seq: number, n: number, what: string): void {
  for (let l = 0; l < shape.numLayers; l++) {
    const w = shape.layerWindows![l]!;
    const k = m.keys(seq, l), v = m.values(seq, l);
    for (let pos = w > 0 ? Math.max(0, n + 1 - w) : 0; pos < n; pos++) {
      for (let i = 0; i < shape.kvDim; i += 13) {
        if (k[pos * shape.kvDim + i] !== rowValue(pos, l, false, i) || v[pos * shape.kvDim + i] !== rowValue(pos, l, true, i)) {
          assert.fail(`${what}: layer ${l} position ${pos} lost its K/V`);
        }
      }
    }
  }
}

/** Decodes `n` tokens one at a time (ensure, write, commit), checking the bound after each. */
function decode(m: VTensorKvManager, seq: number, tokens: Uint32Array, from: number, onStep?: (n: number) => void): void {
  for (let n = from + 1; n <= tokens.length; n++) {
    assert.ok(m.ensure(seq, n));
    writeRow(m, seq, n - 1);
    m.commit(seq, tokens.subarray(0, n));
    onStep?.(n);
  }
}

test('vtensor sliding window: a local layer holds at most its window rounded up to chunks plus one chunk, global layers everything; reachable K/V intact; chunks back in the pool', () => {
  const m = new VTensorKvManager({ shape, capacityBytes: 64 << 20, chunkBytes: CHUNK });
  const full = new VTensorKvManager({ shape, capacityBytes: 64 << 20, chunkBytes: CHUNK, windowUnmap: false });
  const tokens = Uint32Array.from({ length: 400 }, (_, i) => (i * 5) % 97);
  const bound = (Math.ceil(WINDOW / TPC) + 1) * CHUNK * 2; // K and V
  const seq = m.createSequence()!;
  const seqFull = full.createSequence()!;
  decode(full, seqFull, tokens, 0);
  decode(m, seq, tokens, 0, (n) => {
    for (const l of [0, 2]) assert.ok(m.layerBytes(seq, l) <= bound, `n ${n}: local layer ${l} holds ${m.layerBytes(seq, l)} B > ${bound}`);
    assert.equal(m.layerBytes(seq, 1), Math.ceil(n / TPC) * CHUNK * 2, `n ${n}: the global layer holds every token`);
    if (n % 37 === 0) checkReachable(m, seq, n, `step ${n}`);
  });
  checkReachable(m, seq, tokens.length, 'end');
  assert.equal(m.stats().mappedBytes, m.layerBytes(seq, 0) + m.layerBytes(seq, 1) + m.layerBytes(seq, 2));
  assert.ok(m.stats().mappedBytes < full.stats().mappedBytes / 2, `${m.stats().mappedBytes} vs ${full.stats().mappedBytes} without unmapping`);
  assert.equal(m.pool.stats().mappedChunks * CHUNK, m.stats().mappedBytes, 'native mapping count agrees');
  // Cutting a sequence back past its windows would need K/V that is gone: a RangeError.
  assert.throws(() => m.truncate(seq, 100), /sliding window/);
  m.truncate(seq, tokens.length - 5); // within the window: fine
  checkReachable(m, seq, tokens.length - 5, 'truncated within the window');
  m.release(seq);
  assert.equal(m.pool.stats().usedChunks, 0, 'every chunk back in the pool');
  m.dispose();
  full.dispose();
});

test('vtensor sliding window: a cached conversation is reused at its end (windows intact), a shorter match whose window was given back is a miss; fork shares the held chunks', () => {
  const m = new VTensorKvManager({ shape, capacityBytes: 64 << 20, chunkBytes: CHUNK });
  const tokens = Uint32Array.from({ length: 230 }, (_, i) => (i * 5) % 97);
  const a = m.createSequence()!;
  decode(m, a, tokens, 0);
  // fork at the current length: the child sees the same windows
  const child = m.fork(a, tokens.length)!;
  assert.ok(child !== null);
  checkReachable(m, child, tokens.length, 'fork');
  assert.throws(() => m.fork(a, 120), /sliding window/);
  m.release(child);
  m.release(a, true);
  // The next turn extends the whole conversation: a hit at its end, windows intact.
  const next = Uint32Array.from([...tokens, 1, 2, 3]);
  const hit = m.matchPrefix(next)!;
  assert.ok(hit !== null && hit.numTokens === tokens.length, `hit ${JSON.stringify(hit)}`);
  checkReachable(m, hit.seq, hit.numTokens, 'reused prefix');
  decode(m, hit.seq, next, hit.numTokens);
  checkReachable(m, hit.seq, next.length, 'decoded on the reused prefix');
  m.release(hit.seq);
  // A branch 100 tokens back: its window reaches chunks the conversation gave back.
  const branch = Uint32Array.from([...tokens.subarray(0, 130), 90, 91]);
  const misses = m.stats().prefixMisses;
  assert.equal(m.matchPrefix(branch), null);
  assert.equal(m.stats().prefixMisses, misses + 1);
  m.clearPrefixCache();
  assert.equal(m.pool.stats().usedChunks, 0, 'every chunk back in the pool');
  m.dispose();
});

test('vtensor sliding window: layerWindows must have one entry >= 0 per layer', () => {
  assert.throws(() => new VTensorKvManager({ shape: { ...shape, layerWindows: [1, 0] }, capacityBytes: 1 << 20, chunkBytes: CHUNK }), /layerWindows has 2 entries for 3 layers/);
  assert.throws(() => new VTensorKvManager({ shape: { ...shape, layerWindows: [1, -1, 0] }, capacityBytes: 1 << 20, chunkBytes: CHUNK }), /layerWindows\[1\]/);
});

test('vtensor sliding window: prefill in passes of up to R rows never holds more than layerChunks() per local layer; countRoom counts that bound', async () => {
  const { layerChunks, sequenceChunks } = await import('./pool-size.js');
  const R = 48; // rows per pass, not a multiple of the 32 tokens of a chunk
  const m = new VTensorKvManager({ shape, capacityBytes: 64 << 20, chunkBytes: CHUNK, maxRowsPerPass: R });
  const unbounded = new VTensorKvManager({ shape, capacityBytes: 64 << 20, chunkBytes: CHUNK });
  const caps = layerChunks(shape, TPC, shape.maxContext, R);
  assert.deepEqual(caps, [Math.ceil((WINDOW - 1 + R) / TPC) + 1, shape.maxContext / TPC, Math.ceil((WINDOW - 1 + R) / TPC) + 1]);
  // A request of the whole context about to be admitted: the bound for every tensor.
  const request = [{ seq: null, numTokens: shape.maxContext }];
  assert.equal(m.countRoom(request, []).neededChunks, sequenceChunks(shape, TPC, shape.maxContext, R));
  assert.equal(unbounded.countRoom(request, []).neededChunks, 2 * shape.numLayers * (shape.maxContext / TPC), 'no pass bound: every token');
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
  const tokens = Uint32Array.from({ length: shape.maxContext }, (_, i) => (i * 5) % 97);
  const seq = m.createSequence()!;
  let most = 0;
  for (let n = 0; n < tokens.length; ) {
    const r = Math.min(tokens.length - n, 1 + Math.floor(rand() * R));
    // Before the pass: what countRoom says this sequence can still take covers what it takes.
    const before = m.stats().mappedBytes / CHUNK;
    const room = m.countRoom([{ seq, numTokens: tokens.length }], []).neededChunks;
    assert.ok(m.ensure(seq, n + r));
    const peak = m.stats().mappedBytes / CHUNK; // the pass's rows mapped, nothing dropped yet
    for (const l of [0, 2]) {
      const held = m.layerBytes(seq, l) / CHUNK / 2;
      assert.ok(held <= caps[l]!, `n ${n} + ${r}: local layer ${l} holds ${held} chunks > ${caps[l]}`);
      most = Math.max(most, held);
    }
    assert.ok(peak - before <= room, `n ${n} + ${r}: took ${peak - before} chunks, countRoom said ${room}`);
    for (let p = n; p < n + r; p++) writeRow(m, seq, p);
    n += r;
    m.commit(seq, tokens.subarray(0, n));
  }
  assert.ok(most >= caps[0]! - 1, `the bound is near what a local layer held (${most} of ${caps[0]})`);
  checkReachable(m, seq, tokens.length, 'end');
  m.release(seq);
  m.dispose();
  unbounded.dispose();
});
