/**
 * Small helpers shared by the KV layouts: shape validation and byte arithmetic.
 * @internal
 */
import type { KvShape, SeqId } from './cache.js';

/** Bytes of one f16 element. */
export const F16_BYTES = 2;

/** Bytes one token occupies in one layer's K (or V): kvDim f16 values. */
export function rowBytes(shape: KvShape): number {
  return shape.kvDim * F16_BYTES;
}

/** Bytes one token occupies over all layers, K and V. */
export function bytesPerToken(shape: KvShape): number {
  return shape.numLayers * 2 * rowBytes(shape);
}

/** Throws a RangeError naming the bad field unless the shape is usable. */
export function validateShape(shape: KvShape): void {
  for (const key of ['numLayers', 'kvDim', 'maxContext'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v <= 0) {
      throw new RangeError(`KvShape.${key} must be a positive integer, got ${String(v)}`);
    }
  }
  const w = shape.layerWindows;
  if (w !== undefined) {
    if (w.length !== shape.numLayers) throw new RangeError(`KvShape.layerWindows has ${w.length} entries for ${shape.numLayers} layers`);
    w.forEach((x, l) => {
      if (!Number.isSafeInteger(x) || x < 0) throw new RangeError(`KvShape.layerWindows[${l}] must be an integer >= 0 (0 = global), got ${String(x)}`);
    });
  }
}

/** Broken invariant: the caller used a sequence id it does not own. */
export class UnknownSequenceError extends Error {
  constructor(readonly seq: SeqId) {
    super(`KV sequence ${seq} does not exist (never created, or already released)`);
    this.name = 'UnknownSequenceError';
  }
}

/** Throws a RangeError unless 0 <= n <= max and n is an integer. */
export function checkTokenCount(what: string, n: number, max: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new RangeError(`${what} must be an integer in [0, ${max}], got ${String(n)}`);
  }
}

/** Returns layer, or throws a RangeError unless it is an integer in [0, numLayers). */
export function checkLayer(layer: number, numLayers: number): number {
  if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
    throw new RangeError(`layer must be in [0, ${numLayers}), got ${layer}`);
  }
  return layer;
}

/** Length of the common prefix of two token arrays. */
export function commonPrefixLength(a: Uint32Array, b: Uint32Array): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
