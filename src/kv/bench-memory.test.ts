import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runKvMemoryBench, sampleLengths } from './bench-memory.js';

test('kv memory sweep: vtensor maps about what the tokens need, paged less than a block more, contiguous maxContext per sequence', () => {
  const shape = { numLayers: 2, kvDim: 64, maxContext: 1024 };
  const rows = runKvMemoryBench({ shape, concurrency: [1, 4], chunkBytes: 4096, medianPromptTokens: 100, medianOutputTokens: 50 });
  assert.equal(rows.length, 6);
  const perToken = 2 * 2 * 64 * 2;
  for (const n of [1, 4]) {
    const c = rows.find((r) => r.layout === 'contiguous' && r.numSequences === n)!;
    const v = rows.find((r) => r.layout === 'vtensor' && r.numSequences === n)!;
    const p = rows.find((r) => r.layout === 'paged' && r.numSequences === n)!;
    const lengths = sampleLengths(n, { medianPromptTokens: 100, medianOutputTokens: 50 }, shape.maxContext);
    const total = lengths.reduce((a, l) => a + l.total, 0);
    assert.equal(c.totalTokens, total);
    assert.equal(c.liveBytes, total * perToken);
    assert.equal(v.liveBytes, total * perToken);
    assert.equal(c.peakMappedBytes, n * shape.maxContext * perToken);
    // vTensor: at most one partly used chunk per (sequence, tensor).
    assert.ok(v.peakMappedBytes >= v.liveBytes && v.peakMappedBytes <= v.liveBytes + n * 4 * 4096);
    // Paged: whole 16-token blocks, at most one partly used per sequence.
    assert.equal(p.liveBytes, total * perToken);
    assert.equal(p.peakMappedBytes, lengths.reduce((a, l) => a + Math.ceil(l.total / 16), 0) * 16 * perToken);
  }
});

test('kv memory sweep, sliding-window shape: vTensor unmaps what the window left behind, the no-unmap row keeps it (hand-counted chunks)', () => {
  // Layer 0 slides (window 64), layer 1 is global; 64-wide f16 rows = 128 B, 4 KiB chunks = 32 tokens.
  const shape = { numLayers: 2, kvDim: 64, maxContext: 1024, layerWindows: [64, 0] };
  const rows = runKvMemoryBench({ shape, concurrency: [1], chunkBytes: 4096, lengths: () => [{ prompt: 100, total: 1024 }] });
  const at = (layout: string) => rows.find((r) => r.layout === layout)!;
  assert.deepEqual(rows.map((r) => r.layout).sort(), ['contiguous', 'paged', 'vtensor', 'vtensor-nowindow']);
  // No unmapping: 1024 tokens = 32 chunks in each of 4 tensors (K and V of 2 layers).
  assert.equal(at('vtensor-nowindow').peakMappedBytes, 4 * 32 * 4096);
  // Unmapping: the global layer keeps 2 x 32 chunks; the local layer's next query (position 1024)
  // reads keys 961..1023, slots 30 and 31: 2 x 2 chunks.
  assert.equal(at('vtensor').peakMappedBytes, (2 * 32 + 2 * 2) * 4096);
  assert.equal(at('contiguous').peakMappedBytes, 1024 * 2 * 2 * 64 * 2);
});
