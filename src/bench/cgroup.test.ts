import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cgroupSupport, runInMemoryCgroup } from './cgroup.js';

const support = cgroupSupport();

test('a process inside a memory cgroup is charged and limited', { skip: support.ok ? false : `cgroups unavailable: ${(support as { reason: string }).reason}` }, async () => {
  const MiB = 1024 * 1024;
  // Touches 64 MiB of anonymous memory: fits in 256 MiB, charged to the cgroup.
  const touch = (mib: number): string[] => ['-e', `const b = Buffer.alloc(${mib} * 1024 * 1024, 1); console.log(b[b.length - 1]);`];
  const ok = await runInMemoryCgroup(process.execPath, touch(64), 256 * MiB, { timeoutMs: 60_000 });
  assert.equal(ok.exitCode, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), '1');
  assert.equal(ok.oomKilled, false);
  assert.ok(ok.maxUsageBytes >= 64 * MiB, `charged ${ok.maxUsageBytes} bytes`);
  assert.ok(ok.maxUsageBytes <= 256 * MiB);
  // 300 MiB in a 128 MiB cgroup: the OOM killer ends it, and we say so.
  const oom = await runInMemoryCgroup(process.execPath, touch(300), 128 * MiB, { timeoutMs: 60_000 });
  assert.equal(oom.oomKilled, true);
  assert.notEqual(oom.exitCode, 0);
});
