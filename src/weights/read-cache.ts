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
 */
import { readFileSync } from 'node:fs';
import { blockDeviceDir } from './block-device.js';
import { parseMemoryBudget } from './budget.js';

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
