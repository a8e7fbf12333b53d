/**
 * Test inputs shared by the quantizer tests (deterministic, independent of the synth PRNG).
 * @internal
 */

/** Deterministic approximately-normal values (sum of 4 uniforms), independent of the synth PRNG. */
export function gaussian(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let g = 0;
    for (let k = 0; k < 4; k++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      g += s / 2 ** 32;
    }
    out[i] = (g - 2) * Math.sqrt(3) * scale;
  }
  return out;
}

/**
 * 48 super-blocks of varied data: gaussian at several scales, heavy outliers, all-zero,
 * constant, all-positive, all-negative, tiny values, f16-overflowing values.
 */
export function oracleInputs(): Float32Array {
  const parts: Float32Array[] = [];
  for (let k = 0; k < 24; k++) parts.push(gaussian(256, 100 + k, 10 ** ((k % 7) - 3)));
  const spiky = gaussian(256, 7, 0.02);
  spiky[13] = 3;
  spiky[200] = -5;
  parts.push(spiky, new Float32Array(256), new Float32Array(256).fill(0.7), new Float32Array(256).fill(-2));
  parts.push(gaussian(256, 9).map(Math.abs), gaussian(256, 10).map((v) => -Math.abs(v)), gaussian(256, 11, 1e-6));
  const big = gaussian(256, 12, 3e4);
  parts.push(big);
  const half = gaussian(256, 13);
  half.fill(0, 0, 128);
  parts.push(half);
  for (let k = 0; k < 15; k++) parts.push(gaussian(256, 200 + k, 0.05));
  const x = new Float32Array(parts.length * 256);
  parts.forEach((p, i) => x.set(p, i * 256));
  return x;
}

