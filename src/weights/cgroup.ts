/**
 * Runs a command inside a cgroup-v1 memory cgroup with a hard limit, and reports its peak
 * usage and whether it was OOM-killed: how the budget tests and the budget benchmarks prove
 * that a run stays within its memory budget. The cgroup is created under this process's own
 * memory cgroup (so the child stays inside whatever limits already apply to us) and removed
 * afterwards.
 *
 * NOTE: cgroup v1 charges page cache to the cgroup (memory.max_usage_in_bytes includes it:
 * mmapped or buffered file pages count, which is what makes llama.cpp's mmap thrash under a
 * limit). Cache is reclaimable, so hitting the limit with cache only slows reads; the OOM
 * killer comes only when anonymous memory alone does not fit.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmdirSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = '/sys/fs/cgroup/memory';

/** Outcome of a command run under a memory limit. */
export interface CgroupRunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  limitBytes: number;
  /** memory.max_usage_in_bytes: peak RSS + page cache charged to the cgroup, bytes. */
  maxUsageBytes: number;
  /** Times the limit was hit (memory.failcnt); informational: recent kernels (6.x) may leave it at 0 even on an OOM kill. */
  failcnt: number;
  /** The kernel's OOM killer ended a process of the cgroup (limit reached, nothing left to reclaim). */
  oomKilled: boolean;
  /** Killed by us because it ran past timeoutMs. */
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, ms. */
  wallMs: number;
}

/** Options of runInMemoryCgroup. */
export interface CgroupRunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** SIGKILL the command after this long (reported as timedOut, not oomKilled). */
  timeoutMs?: number;
  /** Name of the cgroup directory (default flexinfer-PID-N). */
  name?: string;
}

/** Whether memory cgroups can be created here, and why not. */
export function memoryCgroupSupport(): { ok: true; parent: string } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: 'memory cgroups need Linux' };
  if (!existsSync(join(ROOT, 'memory.limit_in_bytes'))) return { ok: false, reason: `no cgroup-v1 memory controller at ${ROOT}` };
  const parent = ownMemoryCgroup();
  const probe = join(parent, `flexinfer-probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return { ok: true, parent };
  } catch (e) {
    return { ok: false, reason: `cannot create a cgroup under ${parent} (${(e as Error).message}); run as root` };
  }
}

/** This process's memory cgroup directory (from /proc/self/cgroup), or the root. */
function ownMemoryCgroup(): string {
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const [, controllers, path] = line.split(':');
      if (controllers?.split(',').includes('memory') && path) {
        const dir = join(ROOT, path);
        if (existsSync(dir)) return dir;
      }
    }
  } catch {
    // fall through to the root
  }
  return ROOT;
}

function readNumber(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim());
  } catch {
    return 0;
  }
}

/** oom_kill count from memory.oom_control (kernels >= 4.13 report it), or null if not reported. */
function oomKills(dir: string): number | null {
  try {
    const m = /oom_kill (\d+)/.exec(readFileSync(join(dir, 'memory.oom_control'), 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

let serial = 0;

/**
 * Runs `command args` in a new memory cgroup limited to `limitBytes` (memory and, where
 * accounted, memory+swap, so the limit cannot be dodged by swapping); resolves when it exits
 * (or is killed after `timeoutMs`). The cgroup is removed afterwards. Throws if cgroups are
 * unavailable (check memoryCgroupSupport() first to skip with a message).
 */
export async function runInMemoryCgroup(
  command: string,
  args: string[],
  limitBytes: number,
  options: CgroupRunOptions = {},
): Promise<CgroupRunResult> {
  if (!Number.isSafeInteger(limitBytes) || limitBytes <= 0) throw new RangeError(`runInMemoryCgroup: limitBytes must be a positive integer, got ${limitBytes}`);
  const support = memoryCgroupSupport();
  if (!support.ok) throw new Error(support.reason);
  const dir = join(support.parent, options.name ?? `flexinfer-${process.pid}-${serial++}`);
  mkdirSync(dir);
  try {
    // memory.limit first: memsw.limit may never be below it.
    writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitBytes));
    const memsw = join(dir, 'memory.memsw.limit_in_bytes');
    if (existsSync(memsw)) {
      try {
        writeFileSync(memsw, String(limitBytes));
      } catch {
        // swap accounting off: memory.limit alone
      }
    }
    try {
      // Where swap exists but is not accounted, keep it out of the picture anyway.
      writeFileSync(join(dir, 'memory.swappiness'), '0');
    } catch {
      // optional
    }
    const t0 = performance.now();
    // The shell joins the cgroup, then execs the command, so every byte the command touches
    // is charged to the cgroup from its first instruction. Arguments go through "$@": no quoting.
    const script = `echo $$ > '${join(dir, 'cgroup.procs')}' && exec "$@"`;
    const child = spawn('/bin/sh', ['-c', script, 'sh', command, ...args], {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = options.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, options.timeoutMs)
      : undefined;
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, sig) => resolve([code, sig]));
    }).finally(() => {
      if (timer) clearTimeout(timer);
    });
    const wallMs = performance.now() - t0;
    const failcnt = readNumber(join(dir, 'memory.failcnt'));
    const kills = oomKills(dir);
    // Without an oom_kill counter (old kernels), a SIGKILL we did not send after the limit
    // was hit is the OOM killer's.
    const oomKilled = kills != null ? kills > 0 : signal === 'SIGKILL' && !timedOut && failcnt > 0;
    return {
      exitCode,
      signal,
      limitBytes,
      maxUsageBytes: readNumber(join(dir, 'memory.max_usage_in_bytes')),
      failcnt,
      oomKilled,
      timedOut,
      stdout,
      stderr,
      wallMs,
    };
  } finally {
    // Empty cgroups can be removed (the child has exited by now, but the kernel may take a
    // moment to notice); charged page cache moves to the parent.
    for (let i = 0; i < 50; i++) {
      try {
        rmdirSync(dir);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}

/** Limits from 2^60 up mean "no limit" (cgroup v1 reports 2^63 rounded down to a page). */
const NO_LIMIT = 2 ** 60;

/**
 * The memory limit that applies to this process, bytes: the smallest limit of its memory
 * cgroup and the cgroups above it (cgroup v1: memory.stat's hierarchical_memory_limit; v2:
 * memory.max up the tree), or undefined when there is none (or no cgroup filesystem).
 */
export function memoryLimitBytes(): number | undefined {
  if (existsSync(join(ROOT, 'memory.limit_in_bytes'))) {
    const v1 = ownMemoryCgroup();
    let limit = 0;
    try {
      const m = /^hierarchical_memory_limit (\d+)$/m.exec(readFileSync(join(v1, 'memory.stat'), 'utf8'));
      if (m) limit = Number(m[1]);
    } catch {
      // no memory.stat: the cgroup's own limit below
    }
    if (!(limit > 0)) limit = readNumber(join(v1, 'memory.limit_in_bytes'));
    return limit > 0 && limit < NO_LIMIT ? limit : undefined;
  }
  try {
    const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
    if (!line) return undefined;
    let least = Infinity;
    for (let dir = join('/sys/fs/cgroup', line.slice(3)); dir.startsWith('/sys/fs/cgroup'); dir = join(dir, '..')) {
      try {
        const v = readFileSync(join(dir, 'memory.max'), 'utf8').trim();
        if (v !== 'max') least = Math.min(least, Number(v));
      } catch {
        // the root has no memory.max
      }
      if (dir === '/sys/fs/cgroup') break;
    }
    return Number.isFinite(least) && least < NO_LIMIT ? least : undefined;
  } catch {
    return undefined;
  }
}

/** RssAnon / RssFile / RssShmem / VmHWM / VmRSS of this process from /proc/self/status, bytes ({} off Linux). */
export function processRss(): Record<string, number> {
  try {
    const out: Record<string, number> = {};
    for (const line of readFileSync('/proc/self/status', 'utf8').split('\n')) {
      const m = /^(RssAnon|RssFile|RssShmem|VmHWM|VmRSS):\s+(\d+) kB/.exec(line);
      if (m) out[m[1]!] = Number(m[2]) * 1024;
    }
    return out;
  } catch {
    return {};
  }
}

/**
 * Samples RssAnon + RssShmem of this process every `everyMs` (the memory the kernel cannot
 * take back from a process without swap: heaps, anonymous mappings, memfd pages) until
 * stop(), which returns the peak seen.
 */
export function sampleAnonShmemPeak(everyMs = 10): { stop(): number } {
  const s = samplePeaks([processAnonShmem], everyMs);
  return { stop: () => s.stop()[0]! };
}

function processAnonShmem(): number {
  const r = processRss();
  return (r['RssAnon'] ?? 0) + (r['RssShmem'] ?? 0);
}

/** Samples every read() every `everyMs` on one timer until stop(), which samples once more and returns each one's peak. */
function samplePeaks(reads: ReadonlyArray<() => number>, everyMs: number): { stop(): number[] } {
  const peaks = reads.map(() => 0);
  const sample = (): void => {
    reads.forEach((read, i) => {
      peaks[i] = Math.max(peaks[i]!, read());
    });
  };
  sample();
  const timer = setInterval(sample, everyMs);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return peaks.slice();
    },
  };
}

/**
 * Anonymous (`rss`) and shared (`shmem`) bytes charged to this process's cgroup-v1 memory
 * cgroup (its memory.stat), or undefined without one. Unlike a process's RssShmem, which counts
 * a memfd page once per mapping of it (a vTensor chunk mapped into several sequences, and the
 * pool's own view) and not at all while no one maps it (a cached prefix chunk), the cgroup
 * charges every page once, for as long as it exists.
 */
export function cgroupMemoryStat(dir = ownMemoryCgroup()): { anonBytes: number; shmemBytes: number } | undefined {
  try {
    const stat = readFileSync(join(dir, 'memory.stat'), 'utf8');
    const field = (name: string): number | undefined => {
      const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(stat);
      return m ? Number(m[1]) : undefined;
    };
    const anon = field('rss');
    const shmem = field('shmem');
    return anon === undefined || shmem === undefined ? undefined : { anonBytes: anon, shmemBytes: shmem };
  } catch {
    return undefined;
  }
}

/**
 * Samples, on one timer every `everyMs` until stop(), this process's RssAnon + RssShmem
 * (sampleAnonShmemPeak) and the anonymous + shared memory of its memory cgroup
 * (cgroupMemoryStat(); 0 without one: for a process in a cgroup of its own, its memory that
 * cannot be reclaimed, every page once); stop() returns both peaks.
 */
export function sampleMemoryPeaks(everyMs = 10): { stop(): { anonShmem: number; cgroupAnonShmem: number } } {
  const dir = ownMemoryCgroup();
  const s = samplePeaks(
    [
      processAnonShmem,
      () => {
        const m = cgroupMemoryStat(dir);
        return m ? m.anonBytes + m.shmemBytes : 0;
      },
    ],
    everyMs,
  );
  return {
    stop: () => {
      const [anonShmem, cgroupAnonShmem] = s.stop();
      return { anonShmem: anonShmem!, cgroupAnonShmem: cgroupAnonShmem! };
    },
  };
}
