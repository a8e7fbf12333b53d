import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PackedRing } from './packed-ring.js';

test('PackedRing: small layers share a slot (hand-worked 22/10/10 MB pattern, two slots of 22)', () => {
  const r = new PackedRing(2, 22, 100);
  // Fill: s0 (22) -> slot 0; s1 (10) -> slot 1; s2 (10) -> slot 1 behind s1; s3 (22) waits.
  assert.equal(r.place(0, 22), 0);
  assert.equal(r.place(1, 10), 22);
  assert.equal(r.place(2, 10), 32);
  assert.equal(r.place(3, 22), undefined);
  // s0 released: slot 0 is free, s3 goes there; s4 (10) must wait for slot 1 (s1, s2).
  r.freeBefore(1);
  assert.equal(r.place(3, 22), 0);
  assert.equal(r.place(4, 10), undefined);
  // s1 released: slot 1 still holds s2.
  r.freeBefore(2);
  assert.equal(r.place(4, 10), undefined);
  r.freeBefore(3);
  assert.equal(r.place(4, 10), 22);
  assert.equal(r.place(5, 10), 32);
  assert.equal(r.offsetOf(3), 0);
  assert.equal(r.outstanding, 3);
  assert.throws(() => r.offsetOf(2), RangeError);
});

test('PackedRing: placements never overlap an outstanding one, and the ring is never behind one layer per slot (random layers)', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let trial = 0; trial < 300; trial++) {
    const numSlots = 1 + Math.floor(rand() * 4);
    const numLayers = 1 + Math.floor(rand() * 12);
    const sizes = Array.from({ length: numLayers }, () => Math.floor(rand() * 100));
    const slotBytes = Math.max(...sizes);
    const maxOutstanding = Math.max(numSlots, numLayers);
    const r = new PackedRing(numSlots, slotBytes, maxOutstanding);
    const live = new Map<number, [number, number]>(); // s -> [start, end)
    let next = 0;
    let oldest = 0;
    for (let step = 0; step < 200; step++) {
      // Issue as far as the ring allows.
      for (;;) {
        const bytes = sizes[next % numLayers]!;
        const at = r.place(next, bytes);
        if (at === undefined) break;
        assert.ok(at >= 0 && at + bytes <= numSlots * slotBytes, `inside the ring (trial ${trial})`);
        for (const [s, [a, b]] of live) {
          assert.ok(at + bytes <= a || b <= at || bytes === 0 || a === b, `s${next} [${at}, ${at + bytes}) overlaps s${s} [${a}, ${b}) (trial ${trial})`);
        }
        live.set(next, [at, at + bytes]);
        next++;
      }
      // A one-layer-per-slot ring holds [oldest, oldest + numSlots): this one at least as much.
      assert.ok(next >= oldest + numSlots, `issued up to ${next}, a slot ring would reach ${oldest + numSlots} (trial ${trial})`);
      assert.ok(next - oldest <= maxOutstanding);
      // Release the oldest.
      live.delete(oldest);
      oldest++;
      r.freeBefore(oldest);
    }
  }
});

test('PackedRing: bad sizes and out-of-order sequences are errors', () => {
  assert.throws(() => new PackedRing(0, 10, 4), RangeError);
  assert.throws(() => new PackedRing(2, 10, 1), RangeError);
  const r = new PackedRing(2, 10, 4);
  assert.throws(() => r.place(0, 11), /does not fit a slot of 10/);
  r.place(5, 4);
  assert.throws(() => r.place(5, 4), /in order/);
});
