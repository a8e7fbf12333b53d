/**
 * The page cache that buffered streaming reads need, as memory an elastic budget keeps free.
 *
 * NOTE (measured, 2026-12-06 00:05-00:15, quiet; tinyllama-1.1b Q4_0 at 50% = 296 MiB,
 * --parallel 16 --ctx-size 4096, one stream of 128 + 32 tokens through the HTTP server, in a
 * memory cgroup of budget + 64 MiB, file evicted before each run; the device's read_ahead_kb
 * is 8192): both the static split and the elastic pool settle on buffered reads (1.5-1.9 GB/s
 * O_DIRECT against 2.5-3.6 GB/s buffered), whose pages the I/O engine drops after each
 * piece, so no read hits the cache (device reads per pass: 511-529 MiB for 444-489 MiB
 * asked). What the buffered rate depends on is the page cache the cgroup leaves free for the
 * kernel's read-ahead windows:
 *
 *   resident weights (elastic, kv floor varied)  110     104     90      83     65  | static 68
 *   buffered rate GB/s                           2.5-2.9 2.7-2.8 3.1-3.2 3.4    3.6 | 3.2-3.5
 *   tokens/s                                     4.6-5.3 4.9-5.1 5.5-5.7 5.85  6.08 | 5.6-6.1
 *
 * In a 2 GiB cgroup the same runs read at 4.6-5.1 GB/s and give 7.4-7.5 tok/s. So memory the
 * pool gives to resident weights is taken from the read-ahead, and below ~30 MiB more room
 * than the pool leaves by itself each resident byte costs more read time than it saves. The
 * static split has that room by accident (its unused KV reservation); the pool keeps it on
 * purpose: readCacheBytesFor() = 4 read-ahead windows of the file's device (32 MiB here, which
 * gave the static split's rate above), at most 64 MiB and 1/16 of the file, 0 when every
 * read is O_DIRECT.
 * MemoryPool keeps it free from the weights; KV above the floor takes it first (clean page
 * cache the kernel reclaims).
 *
 * NOTE (measured, 2026-12-06, same setup; logs /work/scratch/elastic/diag): 4 windows are
 * enough for Q4_0 but not for Q8_0 (559 MiB budget, ~980 MiB streamed per pass), where the
 * buffered rate kept rising with the room: elastic with 288 / 238 / 158 / 90 MiB resident
 * read at 2.8 / 2.7 / 3.6 / 5.0 GB/s (3.2 / 2.9 / 3.4 / 4.17 tok/s) against the static split's
 * 4.9 GB/s (4.13 tok/s, 68 MiB resident). Over both files the rate reaches the static split's
 * once the cgroup leaves page-cache room (limit - rss - shmem) of ~35-40% of the bytes streamed
 * per pass (Q4_0 ~160-180 of ~480 MiB, Q8_0 ~370 of ~960 MiB). Interleaved at 02:54 (one
 * stream, slow disk day): FLEXINFER_READ_CACHE=240MiB (78 MiB resident) 2.44 / 3.04 tok/s,
 * static 3.06 / 2.60, the 32 MiB default (288 resident) 2.93 / 2.07. So under a memory limit
 * the read cache follows the load (readCacheAtLoad): ROOM_PER_STREAMED_BYTE of the bytes the
 * level streams, less the room the limit leaves above the budget, at the highest level where
 * weights and that cache fit; without a limit (the page cache is the machine's) the 4 windows.
 */
import { readFileSync } from 'node:fs';
import { blockDeviceDir } from './block-device.js';
import { parseMemoryBudget } from './budget.js';
import { memoryLimitBytes } from './cgroup.js';

const MiB = 1024 * 1024;
/** Read-ahead windows kept (see NOTE). */
const WINDOWS = 4;
/** Most bytes kept, whatever the device's read-ahead. */
export const MAX_READ_CACHE_BYTES = 64 * MiB;
/** Read-ahead assumed when the device does not say (the one measured above). */
const DEFAULT_READ_AHEAD = 8 * MiB;

/** The read-ahead (bytes) of the block device holding `path`, or undefined when sysfs does not say. */
export function readAheadBytes(path: string): number | undefined {
  const dev = blockDeviceDir(path);
  if (!dev) return undefined;
  // A partition has no queue of its own: its disk's is one level up.
  for (const q of [`${dev}/queue/read_ahead_kb`, `${dev}/../queue/read_ahead_kb`]) {
    try {
      const kb = Number(readFileSync(q, 'utf8').trim());
      if (Number.isFinite(kb) && kb >= 0) return kb * 1024;
    } catch {
      // not this one
    }
  }
  return undefined;
}

/**
 * Bytes of page cache an elastic budget keeps free for buffered streaming reads of `path`
 * (see NOTE; FLEXINFER_READ_CACHE sets it): 4 read-ahead windows, at most 64 MiB and 1/16 of the file (a small model's few
 * streamed MiB need no such room); 0 when `buffered` is false (every read O_DIRECT).
 */
export function readCacheBytesFor(path: string, fileBytes: number, buffered = true, env = process.env.FLEXINFER_READ_CACHE): number {
  if (!buffered) return 0;
  // FLEXINFER_READ_CACHE=SIZE (0, 96MiB, 20%...): a fixed size instead, for measuring the trade.
  if (env !== undefined && env.trim() !== '') return env.trim() === '0' ? 0 : parseMemoryBudget(env, fileBytes, 'FLEXINFER_READ_CACHE');
  return Math.floor(Math.min(MAX_READ_CACHE_BYTES, fileBytes / 16, WINDOWS * (readAheadBytes(path) ?? DEFAULT_READ_AHEAD)));
}

/** Page-cache room buffered reads need per byte streamed per pass, under a memory limit (see NOTE). */
export const ROOM_PER_STREAMED_BYTE = 0.4;

/** How an elastic budget sizes its read cache (readCachePolicy). */
export interface ReadCachePolicy {
  /** The least it keeps: readCacheBytesFor (4 windows, or FLEXINFER_READ_CACHE, or 0 on O_DIRECT only). */
  baseBytes: number;
  /** FLEXINFER_READ_CACHE or O_DIRECT only: baseBytes, whatever the load. */
  fixed: boolean;
  /** Memory the process's limit leaves above the budget (Infinity without a limit). */
  marginBytes: number;
  /**
   * At most this, whatever the law asks (readCacheCap: the memory a static split at the same
   * budget leaves unused, its KV reservation above the floor): the cache never keeps the
   * weights below the static split's resident set. Undefined: no cap.
   */
  maxBytes?: number;
}

/**
 * The most read cache an elastic load takes (ReadCachePolicy.maxBytes): what a static split at
 * the same budget reserves for KV beyond the elastic floor (`staticKvBytes` - `floorBytes`),
 * plus the part of the runtime reserve the floor holds for the elastic pool. So the elastic pool
 * starts with at least the static split's resident weights, and the page-cache room the law asks
 * for comes out of memory the static split would leave unused, never out of its weights.
 *
 * NOTE (measured, quiet 2026-12-06 04:38-04:43, tinyllama-1.1b Q8_0 `bench --budget-sweep
 * --runs 3`, parallel 1, cgroup of budget + 64 MiB, main 1ca5383): without the cap the law's
 * fixed point at 50% kept the weights at their minimum for a 0.4 x 958 MiB read cache; the run
 * streamed 958 MiB per token (655 in the 04:00 sweep of the build before) on O_DIRECT, where a
 * page cache buys nothing, and generated 1.53 tok/s against 2.98 (0.90x llama.cpp, 3.16x before).
 * With --parallel 16 --ctx-size 4096 (the serve sweep) the static reservation leaves ~1.3 GiB
 * unused and the cap does not bind.
 */
export function readCacheCap(staticKvBytes: number, floorBytes: number, runtimeReserveBytes: number): number {
  return Math.max(0, staticKvBytes - floorBytes) + Math.min(Math.max(0, runtimeReserveBytes), floorBytes);
}

/** The read-cache policy for `path` under `budget` bytes (see NOTE); `limit`: the process's memory limit. */
export function readCachePolicy(path: string, fileBytes: number, budget: number, buffered = true, env = process.env.FLEXINFER_READ_CACHE, limit = memoryLimitBytes()): ReadCachePolicy {
  const baseBytes = readCacheBytesFor(path, fileBytes, buffered, env);
  const fixed = !buffered || (env !== undefined && env.trim() !== '');
  return { baseBytes, fixed, marginBytes: limit === undefined ? Infinity : Math.max(0, limit - budget) };
}

/**
 * The read cache for a load (see NOTE): at the highest ladder level k where the weights
 * (`bytesAt[k]`) and min(law, max(base, law - margin)) fit `room`, law =
 * ROOM_PER_STREAMED_BYTE x `streamedAt[k]`
 * (what the budget leaves to weights and read cache), that cache; at no fitting level, the
 * cache of the least-memory level (callers clip it to what the room holds above the minimum).
 */
export function readCacheAtLoad(p: ReadCachePolicy, levels: { bytesAt: readonly number[]; streamedAt: readonly number[] }, room: number): number {
  if (p.fixed) return p.baseBytes;
  // Never more than the law asks of the level: a level that streams little needs little room
  // (at 100% of tinyllama Q8_0 a 32 MiB cache made the pool stream 81 MiB per token where the
  // static split streamed 5, and generate ~20% slower).
  const need = (k: number) => {
    const law = ROOM_PER_STREAMED_BYTE * levels.streamedAt[k]!;
    return Math.ceil(Math.min(law, Math.max(p.baseBytes, law - p.marginBytes), p.maxBytes ?? Infinity));
  };
  let least = 0;
  for (let k = levels.bytesAt.length - 1; k >= 0; k--) {
    if (levels.bytesAt[k]! + need(k) <= room) return need(k);
    if (levels.bytesAt[k]! < levels.bytesAt[least]!) least = k;
  }
  return need(least);
}
