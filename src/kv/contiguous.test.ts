import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ContiguousKvManager } from './contiguous.js';
import { runKvConformance } from './kv-conformance.js';

runKvConformance({
  name: 'contiguous',
  create: (shape, capacityTokens) =>
    new ContiguousKvManager({ shape, capacityBytes: capacityTokens * shape.numLayers * 2 * shape.kvDim * 2 }),
  assertAllFree: (m) => {
    const c = m as ContiguousKvManager;
    assert.equal(c.numFreeSlots(), c.numSlots);
  },
});

test('contiguous: slots come from the capacity; the next sequence is refused, not thrown', () => {
  const shape = { numLayers: 2, kvDim: 8, maxContext: 16 };
  const slotBytes = 16 * 2 * 2 * 8 * 2; // tokens * layers * (K,V) * kvDim * f16
  const m = new ContiguousKvManager({ shape, capacityBytes: 3 * slotBytes + slotBytes - 1 });
  assert.equal(m.numSlots, 3);
  const seqs = [m.createSequence(), m.createSequence(), m.createSequence()];
  assert.ok(seqs.every((s) => s !== null));
  assert.equal(m.createSequence(), null);
  assert.equal(m.fork(seqs[0]!, 0), null);
  assert.equal(m.stats().mappedBytes, 3 * slotBytes);
  m.release(seqs[1]!);
  assert.notEqual(m.createSequence(), null);
});
