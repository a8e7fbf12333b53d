import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LOGITS_EXTRA_BYTES, maxLogitRowsFor } from './memory.js';

test('maxLogitRowsFor: one row per sequence, up to 64 for allLogits as 16 MiB of logits holds them (hand-computed)', () => {
  assert.equal(LOGITS_EXTRA_BYTES, 16 * 2 ** 20);
  // 32,000 logits are 128,000 bytes a row: 16 MiB holds 131, capped at 64.
  assert.equal(maxLogitRowsFor(1, 512, 32000), 64);
  // Llama 3 (128,256): floor(16,777,216 / 513,024) = 32. Qwen (151,936): floor(16,777,216 / 607,744) = 27.
  assert.equal(maxLogitRowsFor(1, 512, 128256), 32);
  assert.equal(maxLogitRowsFor(1, 512, 151936), 27);
  // Gemma 3 (262,144): 16 rows, 16 MiB instead of 64 rows' 64 MiB.
  assert.equal(maxLogitRowsFor(1, 512, 262144), 16);
  // Sequences always get a row each; a batch bounds it all.
  assert.equal(maxLogitRowsFor(40, 512, 262144), 40);
  assert.equal(maxLogitRowsFor(100, 512, 32000), 100);
  assert.equal(maxLogitRowsFor(1, 8, 32000), 8);
  assert.equal(maxLogitRowsFor(1, 512, 10_000_000), 1);
});
