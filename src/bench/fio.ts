/**
 * fio's sequential read rate on a file, as the device ceiling a streaming figure is compared
 * with: `fio --rw=read --direct=1 --ioengine=io_uring --bs=1M --iodepth=32` (the job),
 * cold. null when fio is not installed (`apt-get install -y fio`).
 */
import { spawnSync } from 'node:child_process';
import { evictFromPageCache } from '../native/io.js';

/** The fio job's figures. */
export interface FioResult {
  bytesPerSec: number;
  iops: number;
  /** Completion latency percentiles, microseconds. */
  latencyP50Us: number;
  latencyP99Us: number;
  command: string;
}

/** Runs fio's sequential read of the first `sizeBytes` of `path`; null without fio. */
export function fioSequentialRead(path: string, sizeBytes: number, options: { iodepth?: number; ioengine?: string } = {}): FioResult | null {
  const iodepth = options.iodepth ?? 32;
  const ioengine = options.ioengine ?? 'io_uring';
  const args = ['--name=seqread', `--filename=${path}`, '--rw=read', '--direct=1', `--ioengine=${ioengine}`, '--bs=1M', `--iodepth=${iodepth}`, `--size=${Math.max(1 << 20, Math.floor(sizeBytes / (1 << 20)) << 20)}`, '--readonly', '--output-format=json'];
  evictFromPageCache(path);
  const r = spawnSync('fio', args, { encoding: 'utf8', timeout: 120_000 });
  if (r.error || r.status !== 0) return null;
  try {
    const read = JSON.parse(r.stdout).jobs[0].read;
    const pct = read.clat_ns?.percentile ?? {};
    return {
      bytesPerSec: read.bw_bytes,
      iops: read.iops,
      latencyP50Us: (pct['50.000000'] ?? 0) / 1000,
      latencyP99Us: (pct['99.000000'] ?? 0) / 1000,
      command: `fio ${args.filter((a) => a !== '--output-format=json').join(' ')}`,
    };
  } catch {
    return null;
  }
}
