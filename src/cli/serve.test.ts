/**
 * `flexinfer serve` as a user starts it: a real process on a free port, its stderr (only
 * flexinfer's own lines: no library warnings), a chat completion through the OpenAI client,
 * and SIGTERM draining to exit code 0.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { synthesize } from '../synth/synth.js';

const bin = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'flexinfer-serve-test-'));
const model = join(dir, 'tiny.gguf');

before(async () => {
  await synthesize(model, 'tiny-15m', 'q8_0', { seed: 4 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('serve: stderr holds only its own lines, a chat completion answers, SIGTERM drains and exits 0', { timeout: 120_000 }, async () => {
  const child = spawn(process.execPath, [bin, 'serve', model, '--port', '0', '--threads', '2', '--alias', 'tiny'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const base = await new Promise<string>((resolve, reject) => {
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (d: string) => {
        stderr += d;
        const url = /at (http:\/\/\S+\/v1)/.exec(stderr)?.[1];
        if (url && /ready \(/.test(stderr)) resolve(url);
      });
      void exited.then((code) => reject(new Error(`serve exited (${code}) before it was ready: ${stderr}`)));
    });
    const client = new OpenAI({ baseURL: base, apiKey: 'none' });
    const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0 });
    assert.equal(r.choices.length, 1);
    assert.ok(r.usage!.completion_tokens >= 1 && r.usage!.completion_tokens <= 4);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    const lines = stderr.split('\n').filter((l) => l.length > 0);
    for (const l of lines) assert.match(l, /^flexinfer: /, `a line on stderr that is not flexinfer's own: ${JSON.stringify(l)}`);
    assert.match(stderr, /ready \(llama, 6 layers, context 256, parallel 4, kv vtensor\)/);
    assert.match(stderr, /drained in [\d.]+ s; shutting down/);
  } finally {
    child.kill('SIGKILL');
  }
});
