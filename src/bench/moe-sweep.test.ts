import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFigures } from './moe-sweep.js';

test('MoE sweep: generation-phase figures are the difference of two stats snapshots (hand-computed)', () => {
  const snap = (experts: Record<string, number>, denseBytes = 0) => ({ weights: { experts, streaming: { bytesRead: denseBytes } } });
  const first = snap({ passes: 1, lookups: 80, hits: 10, bytesRead: 700, prefetchBytes: 100, prefetchUsedBytes: 40, ioWaitSec: 1, predictedLookups: 50, predictedCorrect: 20 }, 5);
  const last = snap({ passes: 11, lookups: 480, hits: 110, bytesRead: 4700, prefetchBytes: 1100, prefetchUsedBytes: 640, ioWaitSec: 3, predictedLookups: 450, predictedCorrect: 220 }, 105);
  const d = decodeFigures(first, last)!;
  assert.equal(d.tokens, 10);
  assert.equal(d.hitRate, 100 / 400);
  // (4000 expert + 100 dense) / 10 tokens; required drops the 1000 - 600 bytes of unused prefetches.
  assert.equal(d.bytesPerToken, 410);
  assert.equal(d.requiredBytesPerToken, 370);
  assert.equal(d.ioWaitSecPerToken, 0.2);
  assert.equal(d.predictionAccuracy, 0.5);
  assert.equal(decodeFigures(undefined, last), null);
  assert.equal(decodeFigures(last, last), null);
});
