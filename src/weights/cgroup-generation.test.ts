/**
 * "The budget is real" (issue 4): a generation with --memory-budget B runs inside a kernel
 * memory cgroup limited to B + 64 MiB (the 64 MiB is for Node itself: V8 heap, code, the
 * addon), finishes with the same greedy tokens as an unbudgeted run, and the process's peak
 * resident set stays under the limit (the cgroup's charge, which also counts reclaimable page
 * cache, may touch it). B is 40% of a tinyllama-1.1b q4_0 file (~620 MB), and the same command without a budget, under the same limit, is OOM-killed:
 * proof that the limit is well below what the model needs resident. At the minimum budget the
 * CLI reports (about a quarter of the file), minimum + 64 MiB is enough as well.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { synthesize } from '../synth/synth.js';
import { memoryCgroupSupport, runInMemoryCgroup } from './cgroup.js';
import { runNode } from './testing.js';

const MiB = 1048576;
const support = memoryCgroupSupport();
const skip = support.ok ? false : `memory cgroups unavailable, the budget cannot be checked against the kernel: ${support.reason}`;
const CLI = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'flexinfer-cgroup-gen-'));
const MODEL = join(dir, 'tinyllama-1.1b-q4_0.gguf');
const LONG = { timeout: 15 * 60_000 };

/** CLI arguments of an 8-token greedy generation, with a budget or without. */
function runArgs(budget: number | null): string[] {
  const args = [CLI, 'run', MODEL, '-p', 'Once upon a time, in a small town,', '-n', '8', '--temp', '0', '--repeat-penalty', '1', '-c', '256', '-t', '2', '--json'];
  return budget == null ? args : [...args, '--memory-budget', String(budget)];
}

/** Tokens from the CLI's --json line. */
function tokensOf(stdout: string, label: string): number[] {
  const line = stdout.trim().split('\n').pop() ?? '';
  let j: { tokens?: unknown };
  try {
    j = JSON.parse(line) as { tokens?: unknown };
  } catch {
    return assert.fail(`${label}: no JSON on stdout: ${stdout.slice(0, 300)}`);
  }
  assert.ok(Array.isArray(j.tokens) && j.tokens.length === 8, `${label}: expected 8 tokens, got ${line.slice(0, 200)}`);
  return j.tokens as number[];
}

let refTokens: number[] = [];

before(async () => {
  if (skip) return;
  await synthesize(MODEL, 'tinyllama-1.1b', 'q4_0', { seed: 9 });
  const ref = await runNode(runArgs(null));
  assert.equal(ref.code, 0, ref.stderr);
  refTokens = tokensOf(ref.stdout, 'unbudgeted run');
});

/** Runs the budgeted generation in a cgroup of budget + 64 MiB and checks fit and tokens. */
async function assertFits(budget: number): Promise<void> {
  const limit = budget + 64 * MiB;
  const r = await runInMemoryCgroup(process.execPath, runArgs(budget), limit, { timeoutMs: 10 * 60_000 });
  const what = `budget ${budget}, limit ${limit}: exit ${r.exitCode}, signal ${r.signal}, peak ${r.maxUsageBytes}, stderr ${r.stderr.slice(-400)}`;
  assert.equal(r.oomKilled, false, `OOM-killed: ${what}`);
  assert.equal(r.timedOut, false, `timed out: ${what}`);
  assert.equal(r.exitCode, 0, what);
  assert.deepEqual(tokensOf(r.stdout, 'budgeted run'), refTokens, `${what}: tokens differ from the unbudgeted run`);
  // The peak was measured (a run charges at least Node itself and the resident part of the
  // plan). The process's own peak resident set (anonymous memory and mapped files: everything
  // the kernel cannot simply drop) stays under the limit. The cgroup's charge also counts the
  // page cache of buffered reads, which the kernel reclaims only when the limit is reached:
  // measured at the minimum budget, that charge touched the limit in 2 of 3 runs while the
  // process peaked ~40 MiB below it (172 of 212 MB). Reaching the limit is then reclaim, not
  // a failure: memory the run could not give back would have been an OOM kill, asserted above.
  assert.ok(r.maxUsageBytes > 64 * MiB, `peak ${r.maxUsageBytes}: nothing was charged to the cgroup?`);
  assert.ok(r.maxUsageBytes <= limit, `cgroup peak ${r.maxUsageBytes} above the limit ${limit}`);
  const peakRss = JSON.parse(r.stdout.trim().split('\n').pop()!).peakRssBytes as number;
  assert.ok(Number.isSafeInteger(peakRss) && peakRss > 64 * MiB, `${what}: no peak RSS reported`);
  assert.ok(peakRss < limit, `process peak RSS ${peakRss} reached the limit ${limit} (${what})`);
}

after(() => rmSync(dir, { recursive: true, force: true }));

test('a generation under a 40% budget fits a cgroup of budget + 64 MiB, with the unbudgeted tokens', { ...LONG, skip }, async () => {
  const fileSize = statSync(MODEL).size;
  const budget = Math.floor(fileSize * 0.4);
  assert.ok(budget + 64 * MiB < fileSize * 0.6, `the limit is not well below the file (${fileSize})`);
  await assertFits(budget);
});

test('the same generation without a budget does not fit that cgroup (it is OOM-killed)', { ...LONG, skip }, async () => {
  const fileSize = statSync(MODEL).size;
  const limit = Math.floor(fileSize * 0.4) + 64 * MiB;
  const r = await runInMemoryCgroup(process.execPath, runArgs(null), limit, { timeoutMs: 10 * 60_000 });
  assert.notEqual(r.exitCode, 0, `an unbudgeted run fit in ${limit} bytes (peak ${r.maxUsageBytes}): the limit proves nothing`);
  assert.equal(r.oomKilled, true, `expected an OOM kill: exit ${r.exitCode}, signal ${r.signal}, peak ${r.maxUsageBytes}, stderr ${r.stderr.slice(-400)}`);
});

test('at the minimum budget the CLI reports, the generation fits minimum + 64 MiB too', { ...LONG, skip }, async () => {
  // The CLI's own minimum for these settings, from its error for a 1-byte budget.
  const tooSmall = await runNode(runArgs(1));
  assert.notEqual(tooSmall.code, 0);
  const m = /below the minimum of (\d+) bytes/.exec(tooSmall.stderr);
  assert.ok(m, `no minimum in the CLI's error: ${tooSmall.stderr.slice(0, 300)}`);
  const minimum = Number(m[1]);
  assert.ok(minimum < statSync(MODEL).size / 3, `minimum ${minimum}`);
  await assertFits(minimum);
});
