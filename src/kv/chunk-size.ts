/**
 * Default vTensor chunk size. Every mapped chunk is one VMA (plus the PROT_NONE gaps between
 * them), and Linux caps a process at vm.max_map_count VMAs (65530 by default), so the chunk
 * size must grow with the pool.
 */
import { readFileSync } from 'node:fs';
import type { KvShape } from './cache.js';
import { DEFAULT_CHUNK_BYTES } from '../native/vmem.js';
import { rowBytes } from './shape.js';

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** vm.max_map_count of this system (65530 when unknown). @internal */
export function maxMapCount(): number {
  try {
    const n = Number.parseInt(readFileSync('/proc/sys/vm/max_map_count', 'utf8'), 10);
    return Number.isFinite(n) && n > 0 ? n : 65530;
  } catch {
    return 65530;
  }
}

/**
 * Default chunk size: 64 KiB (a multiple of the token row), doubled while a full pool would
 * need more than a quarter of vm.max_map_count mappings. Every mapped chunk is one VMA, plus the
 * PROT_NONE gaps between them; at the default 65530 limit, 64 KiB chunks cap the pool near
 * 1 GiB, so a larger KV budget gets larger chunks instead of failing maps later.
 */
export function chooseChunkBytes(shape: KvShape, capacityBytes: number, mapLimit = maxMapCount()): number {
  const unit = (a: number, b: number) => (a / gcd(a, b)) * b;
  let cb = unit(DEFAULT_CHUNK_BYTES, rowBytes(shape)); // lcm(64 KiB, row): 4096-aligned too
  while (capacityBytes / cb > mapLimit / 4 && cb < (256 << 20)) cb *= 2;
  return cb;
}
