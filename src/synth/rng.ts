/**
 * Seedable PRNG for synthetic weights: xoshiro128** (Blackman & Vigna) seeded through
 * splitmix32, one independent stream per tensor (seed + tensor name), so a tensor's values
 * do not depend on the order tensors are generated in.
 */

/** 32-bit FNV-1a of a string (stream key for a tensor name). */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** xoshiro128** state; `next()` returns a uniform uint32. */
export class Xoshiro128 {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** Seeds the four state words from (seed, stream) with splitmix32, never all zero. */
  constructor(seed: number, stream = 0) {
    let s = (Math.imul(seed >>> 0, 0x9e3779b9) ^ stream) >>> 0;
    const split = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Next uniform 32-bit unsigned integer. */
  next(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }

  /**
   * Fills `out` with approximately normal values mean + std * z: z is the sum of the four
   * bytes of one uniform draw, centred and scaled to unit variance (Irwin-Hall with 4 terms;
   * tails end at 3.46 sigma, which suits weights: no outliers to blow up activations).
   * One draw per value keeps a 7B synth cheap.
   */
  fillNormal(out: Float32Array, mean: number, std: number): void {
    // each byte has variance (256^2 - 1) / 12; four of them: (256^2 - 1) / 3
    const k = std / Math.sqrt((256 * 256 - 1) / 3);
    let a = this.a, b = this.b, c = this.c, d = this.d;
    for (let i = 0; i < out.length; i++) {
      const r = Math.imul(rotl(Math.imul(b, 5), 7), 9);
      const t = b << 9;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = rotl(d, 11);
      const z = (r & 0xff) + ((r >>> 8) & 0xff) + ((r >>> 16) & 0xff) + (r >>> 24) - 510;
      out[i] = mean + z * k;
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
