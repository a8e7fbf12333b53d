import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryCgroupSupport, runInMemoryCgroup } from './cgroup.js';

const MiB = 1048576;
const support = memoryCgroupSupport();
const skip = support.ok ? false : `memory cgroups unavailable: ${support.reason}`;

// Touches `mb` MiB of anonymous memory (one write per page), then prints ok and the size.
const alloc = (mb: number) => `const b = Buffer.alloc(${mb} * 1048576); for (let i = 0; i < b.length; i += 4096) b[i] = 1; console.log('ok', b.length)`;

test('a command within its memory limit runs, is charged and reports its peak usage', { skip }, async () => {
  // 64 MiB in 256 MiB (the bench helper's case) and 100 MiB in 400 MiB.
  for (const [mb, limitMb] of [[64, 256], [100, 400]] as const) {
    const r = await runInMemoryCgroup(process.execPath, ['-e', alloc(mb)], limitMb * MiB, { timeoutMs: 120_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), `ok ${mb * MiB}`);
    assert.equal(r.oomKilled, false);
    assert.equal(r.timedOut, false);
    assert.equal(r.limitBytes, limitMb * MiB);
    assert.ok(r.maxUsageBytes >= mb * MiB, `peak ${r.maxUsageBytes} < ${mb} MiB: the allocation was not charged`);
    assert.ok(r.maxUsageBytes <= limitMb * MiB, `peak ${r.maxUsageBytes}`);
    assert.ok(r.wallMs > 0);
  }
});

test('a command over its memory limit is OOM-killed and that is reported', { skip }, async () => {
  // 300 MiB in 128 MiB and 400 MiB in 120 MiB.
  for (const [mb, limitMb] of [[300, 128], [400, 120]] as const) {
    const r = await runInMemoryCgroup(process.execPath, ['-e', alloc(mb)], limitMb * MiB, { timeoutMs: 120_000 });
    assert.notEqual(r.exitCode, 0);
    assert.equal(r.oomKilled, true, `signal ${r.signal}, failcnt ${r.failcnt}, stderr ${r.stderr.slice(0, 200)}`);
    assert.equal(r.timedOut, false);
    assert.ok(r.maxUsageBytes <= limitMb * MiB + 4096 * 64, `peak ${r.maxUsageBytes}`);
  }
});

test('a command past its timeout is killed and reported as timed out, not OOM', { skip }, async () => {
  const r = await runInMemoryCgroup(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], 256 * MiB, { timeoutMs: 1500 });
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, 'SIGKILL');
  assert.equal(r.oomKilled, false);
});

test('arguments reach the command verbatim (no shell quoting), with env and cwd', { skip }, async () => {
  const odd = `it's "quoted" $HOME \`x\` ; echo no`;
  const r = await runInMemoryCgroup(process.execPath, ['-e', 'console.log(JSON.stringify([process.argv[1], process.env.FLEXINFER_CG, process.cwd()]))', odd], 256 * MiB, {
    timeoutMs: 60_000,
    env: { ...process.env, FLEXINFER_CG: 'x1' },
    cwd: '/tmp',
  });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [odd, 'x1', '/tmp']);
});

test('a bad limit is refused before anything runs', async () => {
  await assert.rejects(runInMemoryCgroup(process.execPath, ['-e', '1'], 0), RangeError);
  await assert.rejects(runInMemoryCgroup(process.execPath, ['-e', '1'], 1.5), RangeError);
});

test('sampleMemoryPeaks: one timer sees the process\'s anonymous memory and its cgroup\'s charge peak and fall back', { skip }, async () => {
  // In a cgroup of its own: 96 MiB touched, then dropped (the child's heap shrinks after gc);
  // both peaks count it, neither sees more than the limit, and after stop() they stay.
  const url = new URL('./cgroup.js', import.meta.url).href;
  const script = `
    const { sampleMemoryPeaks, processRss, cgroupMemoryStat } = await import(${JSON.stringify(url)});
    const anon0 = (processRss().RssAnon ?? 0) + (processRss().RssShmem ?? 0);
    const cg0 = cgroupMemoryStat().anonBytes + cgroupMemoryStat().shmemBytes;
    const s = sampleMemoryPeaks(5);
    // (Held on globalThis and read before it is dropped: V8 frees a local it sees unused.)
    globalThis.held = Buffer.alloc(96 * 1048576);
    for (let i = 0; i < globalThis.held.length; i += 4096) globalThis.held[i] = 1;
    await new Promise((r) => setTimeout(r, 60));
    if (globalThis.held[4096] !== 1) throw new Error('lost');
    globalThis.held = null; globalThis.gc();
    await new Promise((r) => setTimeout(r, 60));
    const p = s.stop();
    console.log(JSON.stringify({ anon0, cg0, ...p, after: s.stop() }));`;
  const r = await runInMemoryCgroup(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], 512 * MiB, { timeoutMs: 60_000 });
  assert.equal(r.exitCode, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { anon0: number; cg0: number; anonShmem: number; cgroupAnonShmem: number; after: { anonShmem: number; cgroupAnonShmem: number } };
  assert.ok(j.anonShmem >= j.anon0 + 90 * MiB, `process peak ${j.anonShmem} vs start ${j.anon0}`);
  assert.ok(j.cgroupAnonShmem >= j.cg0 + 90 * MiB, `cgroup peak ${j.cgroupAnonShmem} vs start ${j.cg0}`);
  assert.ok(j.cgroupAnonShmem <= 512 * MiB);
  assert.ok(j.after.anonShmem >= j.anonShmem && j.after.cgroupAnonShmem >= j.cgroupAnonShmem, 'a peak never falls');
});
