import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HEADER_RESERVE_FACTOR, LOGITS_EXTRA_BYTES, maxLogitRowsFor, runtimeReserveFor } from './memory.js';

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

test('runtimeReserveFor: 8 MiB + 1 MiB per sequence + 8 bytes per GGUF header byte beyond the first MiB (hand-computed)', () => {
  const MiB = 2 ** 20;
  assert.equal(HEADER_RESERVE_FACTOR, 8);
  // No header given, or one within the first MiB (tinyllama's 32k vocabulary: dataOffset 737,280): as before.
  assert.equal(runtimeReserveFor(1), 9 * MiB);
  assert.equal(runtimeReserveFor(16), 24 * MiB);
  assert.equal(runtimeReserveFor(0), 9 * MiB); // at least one sequence
  assert.equal(runtimeReserveFor(1, 737_280), 9 * MiB);
  assert.equal(runtimeReserveFor(16, MiB), 24 * MiB);
  // Gemma 3 1B (262,144 tokens): dataOffset 6,537,216 = 6.234 MiB; 8 x (6,537,216 - 1,048,576)
  // = 43,909,120 bytes; + 9 MiB = 53,346,304 (50.875 MiB).
  assert.equal(runtimeReserveFor(1, 6_537_216), 53_346_304);
  // Llama 3.2 (128,256 tokens + 280,147 merges): dataOffset 7,823,360; 8 x 6,774,784 = 54,198,272; + 24 MiB at 16.
  assert.equal(runtimeReserveFor(16, 7_823_360), 54_198_272 + 24 * MiB);
});
