/** `flexinfer run` end to end on a synthetic model: streaming text, --json, bad arguments. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { synthesize } from '../synth/synth.js';
import { loadModel } from '../index.js';

const bin = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'flexinfer-run-test-'));
const model = join(dir, 'tiny.gguf');

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, 'run', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  await synthesize(model, 'tiny-15m', 'q4_0', { seed: 2 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('--json prints the greedy tokens the API generates, with timings', async () => {
  const r = cli(model, '-p', 'Once upon a time', '-n', '6', '--temp', '0', '--repeat-penalty', '1', '--threads', '2', '--json');
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.tokens.length, 6);
  assert.equal(typeof out.text, 'string');
  assert.ok(out.timings.genTokensPerSec > 0 && out.peakRssBytes > 0);
  const m = await loadModel(model, { threads: 2, parallel: 1 });
  try {
    const api = await m.complete('Once upon a time', { temperature: 0, repeatPenalty: 1, maxTokens: 6 });
    assert.deepEqual(out.tokens, api.tokens);
    assert.equal(out.text, api.text);
  } finally {
    await m.dispose();
  }
});

test('streams text to stdout and a timing line to stderr', () => {
  const r = cli(model, '-p', 'Hello', '-n', '4', '--temp', '0');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.length > 1);
  assert.match(r.stderr, /prompt: \d+ tokens, [\d.]+ tokens\/s \| generation: 4 tokens, [\d.]+ tokens\/s \| peak RSS: \d+ MiB/);
});

test('bad arguments: one-line messages and non-zero exit codes', () => {
  let r = cli(model);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--prompt: missing/);
  r = cli(model, '-p', 'x', '--top-k', 'many');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--top-k: must be a number/);
  r = cli(model, '-p', 'x', '--kv', 'pages');
  assert.match(r.stderr, /--kv: must be one of vtensor, paged, contiguous, got 'pages'/);
  r = cli(join(dir, 'missing.gguf'), '-p', 'x');
  assert.equal(r.code, 1);
  assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
  r = cli('--help');
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: flexinfer run MODEL -p PROMPT/);
});

test('--json-schema FILE: the output is JSON the schema accepts; a bad schema is a one-line error', () => {
  const schemaFile = join(dir, 'schema.json');
  const schema = { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['ok', 'n'], additionalProperties: false };
  writeFileSync(schemaFile, JSON.stringify(schema));
  const r = cli(model, '-p', 'JSON:', '-n', '200', '--temp', '1', '--seed', '4', '--threads', '2', '--json-schema', schemaFile, '--json');
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { text: string; finishReason: string };
  assert.equal(out.finishReason, 'eog');
  const value = JSON.parse(out.text) as { ok: unknown; n: unknown };
  assert.deepEqual(Object.keys(value).sort(), ['n', 'ok']);
  assert.equal(typeof value.ok, 'boolean');
  assert.ok(Number.isInteger(value.n) && (value.n as number) >= 0 && (value.n as number) <= 9);
  writeFileSync(schemaFile, JSON.stringify({ type: 'string', format: 'credit-card' }));
  const bad = cli(model, '-p', 'x', '--json-schema', schemaFile);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /format "credit-card" is not supported/);
});

test('a model file truncated while `run` streams it: one line naming the file, no stack trace, exit 1', async () => {
  const copy = join(dir, 'changing.gguf');
  copyFileSync(model, copy);
  // The smallest budget at this context: nearly every weight streams from the file.
  const plan = spawnSync(process.execPath, [bin, 'plan', copy, '--memory-budget', '1MiB', '--ctx-size', '2048'], { encoding: 'utf8' });
  const minimum = Number(/minimum of (\d+) bytes/.exec(plan.stderr)?.[1]);
  assert.ok(minimum > 0, plan.stderr);
  const child = spawn(process.execPath, [bin, 'run', copy, '-p', 'Once upon a time', '-n', '1900', '-c', '2048', '--memory-budget', String(minimum + (1 << 20)), '--temp', '0', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let truncated = false;
  child.stdout.on('data', (d) => {
    stdout += d;
    if (!truncated && stdout.length > 20) {
      truncateSync(copy, 4096);
      truncated = true;
    }
  });
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.ok(truncated, `generation ended before the file could be truncated: ${stderr}`);
  assert.equal(code, 1, stderr);
  const lines = stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0]!, new RegExp(`^flexinfer: model file ${copy.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} was truncated while the model was running`));
  assert.doesNotMatch(stderr, /internal error|\n\s+at /);
});
