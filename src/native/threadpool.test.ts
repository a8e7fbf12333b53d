/**
 * The compute thread pool under job turnover: many short parallelFor jobs back to back, each
 * index counted, so a chunk run twice, skipped, or run with another job's fields shows up as a
 * miscount. The hand-over between jobs had a race (a descheduled worker's stale claim could
 * succeed against the next job's fields) that made the caller wait forever or crash; it is
 * caught here as a child process that does not finish in time or dies on a signal.
 * Threads above the core count oversubscribe the 2-core machine, which widens the window.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const addonModule = fileURLToPath(new URL('./addon.js', import.meta.url));

for (const threads of [2, 3, 4]) {
  test(`parallelFor: 200k short jobs on ${threads} threads run every index exactly once, no hang`, { timeout: 120_000 }, () => {
    const script = `
      const { addon } = await import(${JSON.stringify(addonModule)});
      addon.setThreads(${threads});
      let bad = 0;
      for (let r = 0; r < 10; r++) bad += addon._stressParallelFor(20000, r + ${threads * 100});
      console.log(JSON.stringify({ bad }));`;
    // 200k jobs take ~5 s on this machine when idle; 60 s means the pool is stuck.
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.signal, null, `child died on ${r.signal} (SIGTERM = the 60 s timeout: a job never finished)\n${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim()), { bad: 0 });
  });
}
