/**
 * Memory budget parsing: "1.5GiB", "512MiB", "2GB", "60%" (of the model file), or bytes.
 */
import { InvalidOptionError } from '../errors.js';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1e3,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1e9,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1e12,
  tib: 1024 ** 4,
};

/**
 * Bytes of a memory budget. Accepts a number of bytes, a decimal with a unit (B, KB, MB, GB,
 * TB = powers of 1000; KiB, MiB, GiB, TiB and bare K, M, G, T = powers of 1024; case
 * insensitive) or a percentage of the model file's size. Throws InvalidOptionError for
 * anything else, zero or negative.
 */
export function parseMemoryBudget(text: string | number, modelFileBytes: number, option = '--memory-budget'): number {
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text <= 0) throw new InvalidOptionError(option, `expected a positive number of bytes, got ${text}`);
    return Math.floor(text);
  }
  const s = text.trim();
  const m = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*|%)$/.exec(s);
  const hint = 'use bytes, a size such as 1.5GiB, 512MiB or 2GB, or a percentage of the model file such as 60%';
  if (!m) throw new InvalidOptionError(option, `cannot read '${text}' as a memory size; ${hint}`);
  const value = Number(m[1]);
  const unit = m[2]!.toLowerCase();
  let bytes: number;
  if (unit === '%') {
    if (value > 1000) throw new InvalidOptionError(option, `'${text}' is more than 1000% of the model file`);
    if (!(modelFileBytes > 0)) throw new InvalidOptionError(option, `a percentage needs the model file's size`);
    bytes = (value / 100) * modelFileBytes;
  } else {
    const scale = UNITS[unit];
    if (scale === undefined) throw new InvalidOptionError(option, `unknown unit '${m[2]}' in '${text}'; ${hint}`);
    bytes = value * scale;
  }
  bytes = Math.floor(bytes);
  if (!(bytes > 0)) throw new InvalidOptionError(option, `'${text}' is not a positive size`);
  if (!Number.isSafeInteger(bytes)) throw new InvalidOptionError(option, `'${text}' is too large`);
  return bytes;
}

/** Human-readable size ("1.50 GiB"). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(2)} ${units[i]}`;
}
