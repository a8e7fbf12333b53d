/**
 * Test helpers of the engine's invariance tests. @internal
 */
import assert from 'node:assert/strict';

/** Bit-exact comparison of two float arrays, naming the first differing element. */
export function assertSameBits(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${what}: logit ${i} is ${actual[i]} instead of ${expected[i]} (bits differ)`);
  }
}
