/** The CLI on a MoE model: `plan` explains the expert cache, `run --json` reports its statistics. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { synthesize } from '../synth/synth.js';

const bin = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'flexinfer-moe-cli-'));
const model = join(dir, 'tmx.gguf');

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  await synthesize(model, 'tiny-mixtral', 'q8_0', { seed: 5 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('plan: the expert cache (slots per layer, expected hit rate under uniform routing, the other layout), as text and JSON', () => {
  const r = cli('plan', model, '--memory-budget', '30MiB', '--read-bandwidth', '1GB', '--ctx-size', '512');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /budget: {4}30\.00 MiB = weights .* \+ expert cache /);
  assert.match(r.stdout, /experts: {3}per-layer cache, \d+(-\d+)? slots per layer of 8 experts/);
  assert.match(r.stdout, /expected hit rate under uniform routing \d+\.\d%; expert reads .* per token/);
  assert.match(r.stdout, /global instead: \d+ slots, hit rate/);
  assert.match(r.stdout, /expert slots/);
  const rows = r.stdout.split('\n').filter((l) => /^\s*\d+ +[\d.]+ [KMG]?i?B/.test(l));
  assert.equal(rows.length, 4);
  for (const row of rows) assert.match(row, /\d of 8$/);
  const g = cli('plan', model, '--memory-budget', '30MiB', '--read-bandwidth', '1GB', '--expert-cache', 'global', '--expert-policy', 'lru', '--json');
  assert.equal(g.code, 0, g.stderr);
  const plan = JSON.parse(g.stdout);
  assert.equal(plan.experts.mode, 'global');
  assert.equal(plan.experts.policy, 'lru');
  assert.ok(plan.experts.numSlots >= 4 && plan.experts.expectedHitRate > 0 && plan.experts.expectedHitRate < 1);
  const bad = cli('plan', model, '--memory-budget', '30MiB', '--expert-policy', 'mru');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--expert-policy: must be one of lru, lfu, least-stale/);
});

test('run --json: same tokens with and without a budget; expert statistics beside them', () => {
  const args = ['-p', 'Once upon a time', '-n', '8', '--temp', '0', '--repeat-penalty', '1', '--threads', '2', '--ctx-size', '64', '--json'];
  const free = cli('run', model, ...args);
  assert.equal(free.code, 0, free.stderr);
  const budget = cli('run', model, ...args, '--memory-budget', '27MiB', '--expert-cache', 'global', '--no-expert-prefetch');
  assert.equal(budget.code, 0, budget.stderr);
  const a = JSON.parse(free.stdout);
  const b = JSON.parse(budget.stdout);
  assert.deepEqual(b.tokens, a.tokens);
  assert.equal(a.weights.mode, 'resident');
  assert.equal(b.weights.mode, 'experts');
  const e = b.weights.experts;
  assert.equal(e.mode, 'global');
  assert.equal(e.prefetchEnabled, false);
  assert.equal(e.layerHits.length, 4);
  for (const key of ['hitRate', 'bytesRead', 'bytesReadPerPass', 'ioWaitSec', 'predictionAccuracy', 'lookups']) assert.equal(typeof e[key], 'number', key);
  assert.ok(e.reads > 0 && e.bytesRead > 0);
  const bad = cli('run', model, ...args, '--expert-cache', 'shared');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--expert-cache: must be auto, global or per-layer/);
});
