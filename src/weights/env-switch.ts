/**
 * The FLEXINFER_* on/off switches kept for comparisons (FLEXINFER_HUGE_PAGES, _RING_PACKING,
 * _OUTPUT_SLICES, _SHALLOW_SIBLING): "1" or "0", unset is the default, anything else is an
 * InvalidOptionError naming the variable.
 */
import { InvalidOptionError } from '../errors.js';

export function switchFromEnv(name: string, value: string | undefined, fallback: boolean, what = ''): boolean {
  const v = (value ?? '').trim();
  if (v === '') return fallback;
  if (v === '1') return true;
  if (v === '0') return false;
  throw new InvalidOptionError(name, `expected 1 or 0${what}, got '${value}'`);
}
