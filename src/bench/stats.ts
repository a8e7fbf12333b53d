/**
 * Small statistics for benchmarks: these machines are noisy, so every figure is a median
 * (or a percentile) of several runs, and comparisons are ratios measured in the same run.
 */

/** Median of the values (mean of the middle two for an even count). NaN for none. */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Linear-interpolated percentile p in [0, 100] (the "R-7" definition numpy uses). */
export function percentile(values: readonly number[], p: number): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const rank = (p / 100) * (v.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return v[lo]! + (v[hi]! - v[lo]!) * (rank - lo);
}

/** a / b rounded to 3 decimals, or null when either side is missing. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return Math.round((a / b) * 1000) / 1000;
}

/** Rounds for printing/JSON: 3 significant decimals past the point for small numbers. */
export function round(x: number, digits = 2): number {
  const f = Math.pow(10, digits);
  return Math.round(x * f) / f;
}
