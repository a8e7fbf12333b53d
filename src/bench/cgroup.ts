/**
 * Runs a child process inside a cgroup-v1 memory cgroup, so a memory budget is enforced by
 * the kernel (page cache included: mmapped or buffered file pages are charged to the cgroup,
 * which is what makes llama.cpp's mmap thrash under a limit).
 *
 * Needs root and a mounted v1 memory controller (/sys/fs/cgroup/memory). `cgroupSupport()`
 * says whether this machine can, and why not.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = '/sys/fs/cgroup/memory';

/** Whether memory cgroups can be created here; `reason` when not. */
export function cgroupSupport(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: 'cgroups are Linux-only' };
  if (!existsSync(join(ROOT, 'memory.limit_in_bytes'))) return { ok: false, reason: `no cgroup-v1 memory controller at ${ROOT}` };
  const probe = join(ROOT, `flexinfer-probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `cannot create a memory cgroup (${(err as Error).message}); run as root` };
  }
}

export interface CgroupRunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The kernel's OOM killer ended the process (limit reached with nothing left to reclaim). */
  oomKilled: boolean;
  /** Killed because it ran past timeoutMs. */
  timedOut: boolean;
  /** Peak memory charged to the cgroup (memory.max_usage_in_bytes), bytes. */
  maxUsageBytes: number;
  limitBytes: number;
  stdout: string;
  stderr: string;
  wallMs: number;
}

let serial = 0;

/**
 * Runs `command args` in a fresh memory cgroup limited to `limitBytes`; resolves when it
 * exits (or is killed after `timeoutMs`). The cgroup is removed afterwards.
 */
export async function runInMemoryCgroup(
  command: string,
  args: string[],
  limitBytes: number,
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CgroupRunResult> {
  const dir = join(ROOT, `flexinfer-${process.pid}-${serial++}`);
  mkdirSync(dir);
  try {
    writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitBytes));
    // No swap here, but keep swap out of the picture where it exists.
    try {
      writeFileSync(join(dir, 'memory.swappiness'), '0');
    } catch {
      /* optional */
    }
    const t0 = performance.now();
    // The shell moves itself into the cgroup, then becomes the command: every byte the
    // command touches is charged to the cgroup from its first instruction.
    const quoted = [command, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const child = spawn('/bin/sh', ['-c', `echo $$ > '${join(dir, 'cgroup.procs')}' && exec ${quoted}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      cwd: options.cwd,
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
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
    if (timer) clearTimeout(timer);
    const wallMs = performance.now() - t0;
    const maxUsageBytes = Number(readFileSync(join(dir, 'memory.max_usage_in_bytes'), 'utf8').trim());
    const oomControl = readFileSync(join(dir, 'memory.oom_control'), 'utf8');
    const oomKills = Number(/oom_kill (\d+)/.exec(oomControl)?.[1] ?? '0');
    return { exitCode, signal, oomKilled: oomKills > 0 || (signal === 'SIGKILL' && !timedOut),
      timedOut, maxUsageBytes, limitBytes, stdout, stderr, wallMs };
  } finally {
    // The cgroup can only go once it is empty; the child has exited by now.
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
