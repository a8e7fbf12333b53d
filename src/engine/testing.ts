/**
 * Test helpers of the engine's invariance tests. @internal
 */
import assert from 'node:assert/strict';
import { InsufficientMemoryError } from '../errors.js';
import { loadModel, type LoadModelOptions } from './model.js';

/** Bit-exact comparison of two float arrays, naming the first differing element. */
export function assertSameBits(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${what}: logit ${i} is ${actual[i]} instead of ${expected[i]} (bits differ)`);
  }
}

/** The minimum budget for these load options: what the error of a 1-byte budget names. */
export async function minimumBudget(path: string, options: LoadModelOptions = {}): Promise<number> {
  const err = await loadModel(path, { ...options, memoryBudget: 1 }).then(
    async (m) => {
      await m.dispose();
      return assert.fail('a 1-byte budget loaded');
    },
    (e: unknown) => e,
  );
  assert.ok(err instanceof InsufficientMemoryError, String(err));
  return err.minimum;
}
