import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryCgroupSupport, runInMemoryCgroup } from './cgroup.js';

const support = memoryCgroupSupport();
const skip = support.ok ? false : `memory cgroups unavailable: ${support.reason}`;

// Touches `mb` MiB of memory, then prints ok.
const alloc = (mb: number) => `const b = Buffer.alloc(${mb} * 1048576); for (let i = 0; i < b.length; i += 4096) b[i] = 1; console.log('ok', b.length)`;

test('a command within its memory limit runs and reports its peak usage', { skip }, async () => {
  const r = await runInMemoryCgroup(400 * 1048576, process.execPath, ['-e', alloc(100)], { timeoutMs: 60_000 });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /^ok 104857600/);
  assert.equal(r.oomKilled, false);
  assert.ok(r.maxUsageBytes >= 100 * 1048576, `peak ${r.maxUsageBytes}`);
  assert.ok(r.maxUsageBytes <= 400 * 1048576);
});

test('a command over its memory limit is OOM-killed and that is reported', { skip }, async () => {
  const r = await runInMemoryCgroup(120 * 1048576, process.execPath, ['-e', alloc(400)], { timeoutMs: 60_000 });
  assert.notEqual(r.exitCode, 0);
  assert.equal(r.oomKilled, true, `signal ${r.signal}, failcnt ${r.failcnt}, stderr ${r.stderr.slice(0, 200)}`);
  assert.ok(r.maxUsageBytes <= 120 * 1048576 + 4096 * 64);
});
