/**
 * The KV pool the engine sizes for `parallel` sequences: hand-computed sizes, and a real
 * vTensor (and paged) manager of exactly that size doing what the engine needs from it: every sequence at
 * full context at once, and a chat's next turn that reuses a cached prefix ending mid-chunk
 * and then grows to full context.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KvShape } from './cache.js';
import { kvPoolSize } from './pool-size.js';
import { VTensorKvManager } from './vtensor-manager.js';
import { PagedKvManager } from './paged-manager.js';
import type { KvManager } from './manager.js';

// 2 layers x kvDim 64 (128-byte rows): a 64 KiB chunk holds 512 tokens of one layer's K or V.
const shape: KvShape = { numLayers: 2, kvDim: 64, maxContext: 1000 };

test('kvPoolSize: contiguous slots, vTensor whole chunks plus one spare tail per (sequence, layer, K/V), paged blocks plus a spare, by hand', () => {
  // contiguous: 3 sequences x 1000 tokens x (2 layers x K,V x 128 bytes)
  assert.deepEqual(kvPoolSize(shape, 3, 'contiguous'), { kvBytes: 3 * 1000 * 512, chunkBytes: 0 });
  // vTensor: ceil(1000 / 512) = 2 chunks per (layer, K/V) = 8 per sequence; 3 sequences = 24,
  // plus 3 x 4 spare tails = 36 chunks of 64 KiB.
  assert.deepEqual(kvPoolSize(shape, 3, 'vtensor'), { kvBytes: 36 * 65536, chunkBytes: 65536 });
  assert.deepEqual(kvPoolSize(shape, 1, 'vtensor'), { kvBytes: 12 * 65536, chunkBytes: 65536 });
  assert.throws(() => kvPoolSize(shape, 0, 'vtensor'), RangeError);
  // paged: ceil(1000 / 16) = 63 blocks + 1 spare per sequence, 16 tokens x 512 bytes each
  assert.deepEqual(kvPoolSize(shape, 3, 'paged'), { kvBytes: 3 * 64 * 8192, chunkBytes: 0 });
});

function tokens(n: number, seed: number): Uint32Array {
  return Uint32Array.from({ length: n }, (_, i) => 1 + ((i * 7919 + seed) % 30000));
}

test('a pool of that size holds every sequence at full context, and a chat turn reusing a mid-chunk prefix grows to full context', () => {
  for (const [layout, parallel] of [['vtensor', 1], ['vtensor', 3], ['paged', 1], ['paged', 3]] as const) {
    const { kvBytes, chunkBytes } = kvPoolSize(shape, parallel, layout);
    const m: KvManager =
      layout === 'vtensor'
        ? new VTensorKvManager({ shape, capacityBytes: kvBytes, chunkBytes, backgroundMapping: false })
        : new PagedKvManager({ shape, capacityBytes: kvBytes });
    try {
      // All sequences at full context at the same time.
      const seqs = Array.from({ length: parallel }, () => m.createSequence()!);
      for (const [i, s] of seqs.entries()) {
        assert.ok(m.ensure(s, shape.maxContext), `${layout} parallel ${parallel}: sequence ${i} reaches full context`);
        m.commit(s, tokens(shape.maxContext, i));
      }
      for (const s of seqs) m.release(s, false);

      // Turn 1 of a chat: 700 tokens (one full chunk + a 188-token tail per layer tensor) while
      // the other sequences run at full context; cached when it ends.
      const others = Array.from({ length: parallel - 1 }, (_, i) => {
        const s = m.createSequence()!;
        assert.ok(m.ensure(s, shape.maxContext));
        m.commit(s, tokens(shape.maxContext, 100 + i));
        return s;
      });
      const turn1 = tokens(700, 42);
      const a = m.createSequence()!;
      assert.ok(m.ensure(a, turn1.length));
      m.commit(a, turn1);
      m.release(a, true);
      // Turn 2 starts with turn 1's tokens: the whole prefix is reused (tail copied or handed
      // over), and the sequence still grows to full context next to the others.
      const turn2 = new Uint32Array(900);
      turn2.set(turn1);
      turn2.set(tokens(200, 7), 700);
      const hit = m.matchPrefix(turn2);
      assert.ok(hit, `${layout} parallel ${parallel}: prefix cache hit`);
      assert.equal(hit.numTokens, 700, 'the whole first turn is reused');
      assert.ok(m.ensure(hit.seq, shape.maxContext), `${layout} parallel ${parallel}: turn 2 reaches full context`);
      m.release(hit.seq, false);
      for (const s of others) m.release(s, false);
    } finally {
      m.dispose();
    }
  }
});

test('kvFloorBytes: one full sequence and its spare tails in the given chunk size, by hand', async () => {
  const { kvFloorBytes } = await import('./pool-size.js');
  // 64 KiB: 2 chunks per (layer, K/V) x 4 + 4 tails = 12 chunks; 128 KiB: 1 x 4 + 4 = 8.
  assert.equal(kvFloorBytes(shape, 65536), 12 * 65536);
  assert.equal(kvFloorBytes(shape, 131072), 8 * 131072);
  assert.throws(() => kvFloorBytes(shape, 1000), RangeError);
});

test('sliding-window layers: the floor counts a local layer as its window and one pass, by hand', async () => {
  const { kvFloorBytes, kvBytesFor, sequenceChunks, kvPoolSize } = await import('./pool-size.js');
  // Two layers, kvDim 64: an 8 KiB chunk holds 64 tokens; 1024 tokens are 16 chunks per tensor.
  const sw = { numLayers: 2, kvDim: 64, maxContext: 1024, layerWindows: [100, 0] };
  // Local layer, window 100, passes of 32 rows: ceil((100 - 1 + 32) / 64) + 1 = 4 chunks for K
  // and 4 for V; the global one 16 + 16. Plus one spare tail per (layer, K/V).
  assert.equal(sequenceChunks(sw, 64, 1024, 32), 2 * (4 + 16));
  assert.equal(kvFloorBytes(sw, 8192, 32), (40 + 4) * 8192);
  // No pass bound, or a window past the sequence: every token, as before.
  assert.equal(kvFloorBytes(sw, 8192), (64 + 4) * 8192);
  assert.equal(sequenceChunks(sw, 64, 150, 32), 2 * (3 + 3), 'a 150-token sequence: 3 chunks, under the local bound');
  assert.equal(kvBytesFor(sw, 8192, 3, 1024, 32), 3 * 40 * 8192);
  assert.equal(kvPoolSize(sw, 2, 'vtensor', 32).kvBytes, 2 * kvFloorBytes(sw, kvPoolSize(sw, 2, 'vtensor', 32).chunkBytes, 32));
  // Without windows the bound changes nothing.
  const { layerWindows: _, ...global } = sw;
  assert.equal(kvFloorBytes(global, 8192, 32), kvFloorBytes(global, 8192));
});
