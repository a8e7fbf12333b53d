/**
 * The block device under a file, seen through sysfs: how many bytes it has read since boot
 * (/sys/dev/block/MAJOR:MINOR/stat, field 3 = 512-byte sectors read). The difference over a
 * stretch of a run is what the device really read: the streamed bytes plus any read-ahead
 * past them and any other process's reads (the budget sweep measures inside a quiet slot).
 */
import { readFileSync, statSync } from 'node:fs';

/** The sysfs directory of the block device holding `path` (a partition's own), or undefined. */
export function blockDeviceDir(path: string): string | undefined {
  let dev: number;
  try {
    dev = statSync(path).dev;
  } catch {
    return undefined;
  }
  // Linux dev_t: major in bits 8-19, minor in bits 0-7 and 20-31.
  const major = Math.floor(dev / 256) % 4096;
  const minor = (dev % 256) + (Math.floor(dev / 1048576) % 4096) * 256;
  return `/sys/dev/block/${major}:${minor}`;
}

/** Bytes the device holding `path` has read since boot, or undefined where sysfs does not say. */
export function deviceReadBytes(path: string): number | undefined {
  const dir = blockDeviceDir(path);
  if (!dir) return undefined;
  try {
    const sectors = Number(readFileSync(`${dir}/stat`, 'utf8').trim().split(/\s+/)[2]);
    return Number.isFinite(sectors) ? sectors * 512 : undefined;
  } catch {
    return undefined;
  }
}
