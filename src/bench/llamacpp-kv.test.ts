/**
 * llama.cpp's KV size as bench --kv-sweep reads it from llama.cpp's own log: the parsed bytes
 * equal the hand-computed size of an f16 cache for the same shape.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { llamaCppKvCaches, loadLlamaCpp } from './llamacpp.js';

test('llama.cpp KV size from its log: tiny-15m, 2 sequences x 256 tokens = 6 layers x 2 streams x 256 cells x 288 x (K + V) x f16', async () => {
  const handle = await loadLlamaCpp();
  assert.ok(!('error' in handle), 'node-llama-cpp is a dev dependency');
  const dir = mkdtempSync(join(tmpdir(), 'fi-llkv-'));
  try {
    const path = join(dir, 'tiny.gguf');
    await synthesize(path, 'tiny-15m', 'q8_0', { seed: 3 });
    const [caches] = await llamaCppKvCaches(handle, path, 256, [2]);
    assert.ok(caches);
    assert.equal(caches.length, 1, 'no sliding window: one cache');
    assert.equal(caches[0]!.layers, 6);
    assert.equal(caches[0]!.cells, 256);
    assert.equal(caches[0]!.sequences, 2);
    const expected = 6 * 2 * 256 * 288 * 2 * 2;
    // The log prints MiB with 2 decimals (3.375 MiB prints as 3.38): within half a unit of the last digit.
    assert.ok(Math.abs(caches[0]!.bytes - expected) <= 0.00501 * 1024 * 1024, `${caches[0]!.bytes} vs ${expected}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
