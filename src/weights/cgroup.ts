/**
 * Runs a command inside a cgroup-v1 memory cgroup with a hard limit, and reports its peak
 * usage and whether it was OOM-killed: how the budget tests prove that a run stays within
 * its memory budget. The cgroup is created under this process's own memory cgroup (so the
 * child stays inside whatever limits already apply to us) and removed afterwards.
 *
 * NOTE: cgroup v1 charges page cache to the cgroup (memory.max_usage_in_bytes includes it);
 * cache is reclaimable, so hitting the limit with cache only slows reads, it does not OOM.
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
  /** memory.max_usage_in_bytes (RSS + page cache charged to the cgroup). */
  maxUsageBytes: number;
  /** Times the limit was hit (memory.failcnt). */
  failcnt: number;
  /** The kernel OOM killer killed a process of the cgroup. */
  oomKilled: boolean;
  stdout: string;
  stderr: string;
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
    return { ok: false, reason: `cannot create a cgroup under ${parent}: ${(e as Error).message}` };
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

/** oom_kill count from memory.oom_control (kernels >= 4.13 report it). */
function oomKills(dir: string): number {
  try {
    const m = /oom_kill (\d+)/.exec(readFileSync(join(dir, 'memory.oom_control'), 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Runs `command args` in a new memory cgroup limited to `limitBytes` (memory and, where
 * accounted, memory+swap, so the limit cannot be dodged by swapping). Throws if cgroups are
 * unavailable (check memoryCgroupSupport() first to skip with a message).
 */
export async function runInMemoryCgroup(
  limitBytes: number,
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; name?: string } = {},
): Promise<CgroupRunResult> {
  const support = memoryCgroupSupport();
  if (!support.ok) throw new Error(support.reason);
  const dir = join(support.parent, options.name ?? `flexinfer-${process.pid}-${Date.now()}`);
  mkdirSync(dir);
  try {
    writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitBytes));
    const memsw = join(dir, 'memory.memsw.limit_in_bytes');
    if (existsSync(memsw)) {
      try {
        writeFileSync(memsw, String(limitBytes));
      } catch {
        // swap accounting off: memory.limit alone
      }
    }
    // The shell joins the cgroup, then execs the command, so every byte the command
    // allocates is charged to the cgroup.
    const script = `echo $$ > '${join(dir, 'cgroup.procs')}' && exec "$@"`;
    const child = spawn('/bin/sh', ['-c', script, 'sh', command, ...args], { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : undefined;
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, sig) => resolve([code, sig]));
    });
    if (timer) clearTimeout(timer);
    const kills = oomKills(dir);
    return {
      exitCode,
      signal,
      limitBytes,
      maxUsageBytes: readNumber(join(dir, 'memory.max_usage_in_bytes')),
      failcnt: readNumber(join(dir, 'memory.failcnt')),
      oomKilled: kills > 0 || (signal === 'SIGKILL' && readNumber(join(dir, 'memory.failcnt')) > 0 && !options.timeoutMs),
      stdout,
      stderr,
    };
  } finally {
    // Empty cgroups can be removed; charged page cache moves to the parent.
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
