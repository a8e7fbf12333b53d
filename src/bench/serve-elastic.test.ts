/**
 * The budgeted --serve-sweep's flags for one configuration per run (--configs, --resume): bad
 * values and an earlier result measured with other settings are refused before anything runs.
 * Its static baseline for long prompts loads, and one more sequence would not.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../cli/bench.js';
import { InsufficientMemoryError, InvalidOptionError } from '../errors.js';
import { loadModel } from '../index.js';
import { synthesize } from '../synth/synth.js';
import { staticLayout } from './serve-elastic.js';
import { runtimeReserveFor } from '../engine/memory.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-serve-elastic-'));
after(() => rmSync(dir, { recursive: true, force: true }));
// Only its size is read before the checks: 1 MiB, so 50% is 524288 bytes.
const MODEL = join(dir, 'm.gguf');
writeFileSync(MODEL, Buffer.alloc(1 << 20));
const FLAGS = [MODEL, '--serve-sweep', '--memory-budget', '50%', '--parallel', '16', '--ctx-size', '4096', '--threads', '2', '--prompt-tokens', '128', '--gen-tokens', '32'];

test('--configs names only known configurations', async () => {
  await assert.rejects(run([...FLAGS, '--configs', 'elastic,nope']), (e: unknown) => {
    assert.ok(e instanceof InvalidOptionError, String(e));
    assert.match(e.message, /unknown configuration 'nope'; choose from elastic, static, llamacpp, llamacpp_budget/);
    return true;
  });
});

test('--resume needs an earlier result of the same sweep, measured with the same settings', async () => {
  const notJson = join(dir, 'bad.json');
  writeFileSync(notJson, 'not json');
  await assert.rejects(run([...FLAGS, '--configs', 'static', '--resume', notJson]), /cannot read .* as JSON/);
  const noRuns = join(dir, 'noruns.json');
  writeFileSync(noRuns, JSON.stringify({ rows: [] }));
  await assert.rejects(run([...FLAGS, '--configs', 'static', '--resume', noRuns]), /has no "runs"/);
  const other = join(dir, 'other.json');
  const earlier = { runs: { elastic: { rows: [] } }, budget_bytes: 524288, parallel: 16, ctx_size: 2048, gen_tokens: 32, prompt_tokens: 128, threads: 2 };
  writeFileSync(other, JSON.stringify(earlier));
  await assert.rejects(run([...FLAGS, '--configs', 'static', '--resume', other]), (e: unknown) => {
    assert.ok(e instanceof InvalidOptionError, String(e));
    assert.match(e.message, /other settings \(ctx_size 2048 there, 4096 here\)/);
    return true;
  });
});

test('static baseline for requests longer than --parallel\'s largest context: the most sequences of that context the engine loads with its runtime reserve', async () => {
  const path = join(dir, 'tiny.gguf');
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 5 });
  const load = (parallel: number, contextSize: number, memoryBudget: number) => loadModel(path, { threads: 1, parallel, contextSize, memoryPool: 'static', memoryBudget });
  const minimum = (parallel: number, ctx: number) =>
    load(parallel, ctx, 1).then(
      () => assert.fail('a 1-byte budget loaded'),
      (e: unknown) => (e instanceof InsufficientMemoryError ? e.minimum : assert.fail(String(e))),
    );
  // The engine's own minimum for 8 sequences of 192 tokens: 16 of them cannot hold a 160 + 32 token request.
  const budget = (await minimum(8, 192)) + runtimeReserveFor(8);
  const st = staticLayout(path, budget, 16, 4096, 160 + 32);
  assert.ok(st, 'no static layout');
  assert.equal(st.ctx, 192);
  assert.ok(st.parallel >= 8 && st.parallel < 16, `parallel ${st.parallel}`);
  // It loads with its runtime reserve set apart; one more sequence does not.
  const m = await load(st.parallel, st.ctx, budget - runtimeReserveFor(st.parallel));
  await m.dispose();
  await assert.rejects(load(st.parallel + 1, st.ctx, budget - runtimeReserveFor(st.parallel + 1)), InsufficientMemoryError);
  // A request that fits the largest context at --parallel keeps --parallel.
  const four = staticLayout(path, budget, 4, 4096, 160 + 32);
  assert.equal(four?.parallel, 4);
  assert.ok(four.ctx >= 192 && four.ctx % 64 === 0, `ctx ${four.ctx}`);
});
