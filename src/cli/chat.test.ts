/**
 * `flexinfer chat` on a pipe: three user lines in, three replies out (the same text a
 * ChatSession in this process produces for the same conversation, greedy), one status line per
 * reply on stderr whose 2nd and 3rd turns show prompt tokens reused from the KV cache; commands
 * and option errors.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { synthesize } from '../synth/synth.js';
import { loadModel } from '../index.js';
import { ChatSession } from '../engine/chat.js';

const BIN = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'flexinfer-chat-cli-test-'));
const path = join(dir, 'tiny-15m-q8_0.gguf');
const LINES = ['Hello, who are you?', 'Tell me about your day.', 'What happened next?'];

before(async () => {
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 2 });
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the CLI with `input` on stdin; resolves with exit code, stdout and stderr. */
function runCli(args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

const STATUS = /^\[prompt: (\d+) tokens \((\d+) reused, (\d+) computed\) \| first token: \d+ ms \| reply: (\d+) tokens, [\d.]+ tokens\/s\]$/;

test('chat on a pipe (paged KV): three replies, later turns reuse the cached conversation', async () => {
  const { code, stdout, stderr } = await runCli(['chat', path, '--temp', '0', '-n', '8', '-t', '2', '-c', '1024', '--kv', 'paged'], `${LINES.join('\n')}\n`);
  assert.equal(code, 0, stderr);
  const status = stderr
    .split('\n')
    .filter((l) => l.startsWith('[prompt:'))
    .map((l) => {
      const m = STATUS.exec(l);
      assert.ok(m, `status line format: ${l}`);
      return { prompt: Number(m[1]), reused: Number(m[2]), computed: Number(m[3]), reply: Number(m[4]) };
    });
  assert.equal(status.length, 3, stderr);
  assert.equal(status[0]!.reused, 0);
  for (const [i, s] of status.entries()) {
    assert.equal(s.reused + s.computed, s.prompt, `turn ${i}`);
    assert.equal(s.reply, 8, `turn ${i}: -n 8 (the synthetic model never ends a turn early)`);
  }
  for (const i of [1, 2]) {
    const s = status[i]!;
    const prev = status[i - 1]!;
    assert.ok(s.reused > 0 && s.computed < s.prompt, `turn ${i}: ${JSON.stringify(s)}`);
    // At least the whole previous prompt (the reply's text may retokenize differently from
    // the sampled tokens, which limits how much of the reply's K/V matches).
    assert.ok(s.reused >= prev.prompt, `turn ${i}: reused ${s.reused} after ${JSON.stringify(prev)}`);
  }

  // The replies are what the engine's ChatSession gives for the same conversation (on the
  // default vtensor layout: the layout never changes the tokens).
  const model = await loadModel(path, { threads: 2, contextSize: 1024, parallel: 1 });
  let expected = '';
  try {
    const chat = new ChatSession(model);
    for (const line of LINES) expected += `${(await chat.ask(line, { temperature: 0, maxTokens: 8 })).text}\n`;
  } finally {
    await model.dispose();
  }
  assert.equal(stdout, expected);
});

test('chat commands: /stats shows KV and prefix-cache counters, /reset starts over, /exit leaves', async () => {
  const input = ['Hi there', '/stats', '/reset', 'Hi there', '/nope', '/exit', 'never sent'].join('\n');
  const { code, stdout, stderr } = await runCli(['chat', path, '--temp', '0', '-n', '4', '-t', '2', '-c', '1024', '--system', 'Be brief.', '--kv', 'contiguous'], `${input}\n`);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /kv \(contiguous\): mapped [\d.]+ MiB, live [\d.]+ MiB/);
  assert.match(stdout, /prefix cache: \d+ hits, \d+ misses, \d+ tokens reused/);
  assert.match(stderr, /\[new conversation\]/);
  assert.match(stderr, /unknown command \/nope/);
  const status = stderr.split('\n').filter((l) => l.startsWith('[prompt:'));
  assert.equal(status.length, 2, 'two turns, the line after /exit is not sent');
  // After /reset the same first message is a new conversation whose whole prompt but the
  // last token is cached from the first one.
  const m0 = STATUS.exec(status[0]!)!;
  const m1 = STATUS.exec(status[1]!)!;
  assert.equal(m0[1], m1[1], 'same prompt length');
  assert.equal(Number(m1[2]), Number(m1[1]) - 1);
});

test('chat: bad options are one-line errors', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['chat'], /MODEL: missing model path/],
    [['chat', path, '--kv', 'pages'], /--kv: must be one of vtensor, paged, contiguous, got 'pages'/],
    [['chat', path, '-n', '0'], /--n-predict: must be at least 1/],
    [['chat', path, '--temp', 'hot'], /--temp: must be a number/],
    [['chat', path, '--top-p', '2'], /--top-p: must be in \[0, 1\]/],
    [['chat', path, '--top-k', '1.5'], /--top-k: must be an integer/],
    [['chat', path, '--bogus'], /Unknown option '--bogus'/],
    [['chat', path, '--memory-budget', 'lots'], /--memory-budget: cannot read 'lots' as a memory size/],
    [['chat', join(dir, 'missing.gguf')], /missing\.gguf/],
  ];
  for (const [args, re] of cases) {
    const { code, stderr } = await runCli(args, '');
    assert.notEqual(code, 0, args.join(' '));
    assert.match(stderr, re, args.join(' '));
    assert.equal(stderr.trim().split('\n').length, 1, `one line: ${stderr}`);
  }
});
