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
 * need more than half of vm.max_map_count mappings. Every mapped chunk is one VMA, plus the
 * PROT_NONE gaps between them; a sequence maps at most its own context, so `capacityBytes` (the
 * pool's sequences at full context, prefix sharing included) bounds the pool's mappings. The
 * other half is for the rest of the process: the serve bench's server (tinyllama, 16 streams,
 * weights, two JS heaps, the HTTP server) had 1,447-1,571 mappings in all (measured,
 * /proc/PID/maps, 2026-12-06). At the default 65530 limit, 64 KiB chunks cap the pool near
 * 2 GiB, so a larger KV budget gets larger chunks instead of failing maps later.
 *
 * NOTE: it was a quarter, which gave 16 x 4096 tokens of tinyllama (1.4 GiB) 128 KiB chunks,
 * 256 tokens each: under a 50% budget the elastic pool then held 24 chunk slots, so 8
 * sequences of 544 tokens (3 slots each, 224 tokens of them empty) and 4 of 1056 (5 slots),
 * where the static split's 64 KiB chunks hold 10 and 5 in about the same memory.
 */
export function chooseChunkBytes(shape: KvShape, capacityBytes: number, mapLimit = maxMapCount()): number {
  const unit = (a: number, b: number) => (a / gcd(a, b)) * b;
  let cb = unit(DEFAULT_CHUNK_BYTES, rowBytes(shape)); // lcm(64 KiB, row): 4096-aligned too
  while (capacityBytes / cb > mapLimit / 2 && cb < (256 << 20)) cb *= 2;
  return cb;
}
