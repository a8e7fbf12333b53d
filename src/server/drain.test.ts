/**
 * Graceful drain (drain.ts), in-process and through the real CLI (`flexinfer serve` + SIGTERM):
 * a stream in flight completes, /health and new requests get 503 (with Retry-After) at once,
 * GETs still answer; at the timeout or on a second SIGTERM the requests still running end with
 * an OpenAI-shaped error; the process exits 0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { loadModel, type Model } from '../index.js';
import { createServer } from './server.js';
import { startServe, type ServeProcess } from './serve-testing.js';

const MODEL_ID = 'tiny-drain';
let dir: string;
let path: string;
let model: Model;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-drain-'));
  path = join(dir, 'tiny.gguf');
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 3 });
  model = await loadModel(path, { threads: 1, contextSize: 2048, parallel: 2, kv: 'vtensor' });
});

after(async () => {
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** An SSE stream read incrementally: events as parsed JSON, and whether [DONE] came. */
class SseReader {
  events: Array<Record<string, unknown>> = [];
  done = false;
  status = 0;
  private wake: (() => void) | null = null;
  readonly finished: Promise<void>;

  constructor(base: string, body: Record<string, unknown>) {
    this.finished = (async () => {
      const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
      this.status = r.status;
      const decoder = new TextDecoder();
      let buf = '';
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const line = buf.slice(0, i).replace(/^data: /, '');
          buf = buf.slice(i + 2);
          if (line === '[DONE]') this.done = true;
          else this.events.push(JSON.parse(line) as Record<string, unknown>);
          this.wake?.();
        }
      }
      this.wake?.();
    })();
  }

  /** Resolves once the stream has delivered at least one event. */
  async started(): Promise<void> {
    while (this.events.length === 0 && !this.done) await new Promise<void>((r) => (this.wake = r));
  }

  finishReason(): string | null {
    const last = this.events.at(-1) as { choices?: Array<{ finish_reason: string | null }> } | undefined;
    return last?.choices?.[0]?.finish_reason ?? null;
  }

  error(): { code: string; type: string; message: string } | undefined {
    return (this.events.find((e) => 'error' in e) as { error: { code: string; type: string; message: string } } | undefined)?.error;
  }
}

const body = (maxTokens: number, prompt = 'Once upon a time'): Record<string, unknown> => ({ model: MODEL_ID, prompt, max_tokens: maxTokens, temperature: 0 });

async function postJson(base: string, b: Record<string, unknown>): Promise<Response> {
  return fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
}

test('in-process drain: the stream in flight completes, new requests get 503 + Retry-After, /health 503, GETs answer, then the server closes', async () => {
  const server = createServer(model, { modelId: MODEL_ID, port: 0, parallel: 2 });
  const base = await server.listen();
  const a = new SseReader(base, body(600));
  await a.started();
  let drained = false;
  const draining = server.drain({ timeoutMs: 60_000 }).then((r) => {
    drained = true;
    return r;
  });
  const h = await fetch(`${base}/health`);
  assert.equal(h.status, 503);
  assert.deepEqual(await h.json(), { status: 'draining' });
  const refused = await postJson(base, body(4));
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get('retry-after'), '1');
  const e = (await refused.json()) as { error: { code: string; type: string } };
  assert.deepEqual([e.error.type, e.error.code], ['service_unavailable', 'server_shutting_down']);
  assert.equal((await fetch(`${base}/metrics`)).status, 200, 'metrics still answer while draining');
  assert.equal(drained, false, 'the drain waits for the stream');
  await a.finished;
  assert.equal(a.status, 200);
  assert.ok(a.done, 'the stream ended with [DONE]');
  assert.equal(a.error(), undefined);
  assert.ok(['length', 'stop'].includes(a.finishReason()!), `finish ${a.finishReason()}`);
  const r = await draining;
  assert.deepEqual([r.clean, r.numCut], [true, 0]);
  await assert.rejects(fetch(`${base}/health`), 'the server stopped listening');
});

test('in-process drain timeout: a stream and a non-streamed request still running end with an OpenAI-shaped 503 error', async () => {
  const server = createServer(model, { modelId: MODEL_ID, port: 0, parallel: 2 });
  const base = await server.listen();
  const a = new SseReader(base, body(1900));
  await a.started();
  const b = postJson(base, body(1900, 'The cat sat'));
  while (server.inFlight < 2) await new Promise((r) => setTimeout(r, 5));
  const r = await server.drain({ timeoutMs: 200 });
  assert.deepEqual([r.clean, r.numCut], [false, 2]);
  assert.ok(r.ms >= 190, `waited ${r.ms} ms`);
  await a.finished;
  assert.ok(a.done, 'the cut stream still ends with [DONE]');
  assert.equal(a.error()?.code, 'server_shutting_down');
  assert.equal(a.error()?.type, 'service_unavailable');
  const rb = await b;
  assert.equal(rb.status, 503);
  assert.equal(((await rb.json()) as { error: { code: string } }).error.code, 'server_shutting_down');
});

test('forceDrain() cuts the wait short', async () => {
  const server = createServer(model, { modelId: MODEL_ID, port: 0, parallel: 2 });
  const base = await server.listen();
  const a = new SseReader(base, body(1900));
  await a.started();
  const t0 = performance.now();
  const draining = server.drain({ timeoutMs: 60_000 });
  setTimeout(() => server.forceDrain(), 100);
  const r = await draining;
  assert.ok(performance.now() - t0 < 10_000);
  assert.equal(r.numCut, 1);
  await a.finished;
  assert.equal(a.error()?.code, 'server_shutting_down');
});

async function startCli(extra: string[]): Promise<ServeProcess> {
  return startServe(path, ['--alias', MODEL_ID, '--threads', '1', '--ctx-size', '2048', '--parallel', '2', ...extra]);
}

test('CLI: SIGTERM drains (stream completes, new requests 503, /health 503) and the process exits 0', async () => {
  const { proc, base, stderr, exit } = await startCli(['--drain-timeout', '60']);
  const a = new SseReader(base, body(600));
  await a.started();
  proc.kill('SIGTERM');
  // The signal is handled asynchronously: /health turns 503 as soon as it is.
  let h = await fetch(`${base}/health`);
  for (let i = 0; i < 100 && h.status === 200; i++) {
    await new Promise((r) => setTimeout(r, 10));
    h = await fetch(`${base}/health`);
  }
  assert.equal(h.status, 503);
  const refused = await postJson(base, body(4));
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get('retry-after'), '1');
  await a.finished;
  assert.ok(a.done);
  assert.equal(a.error(), undefined, 'the stream in flight completed');
  assert.ok(['length', 'stop'].includes(a.finishReason()!));
  assert.equal(await exit, 0, stderr());
  assert.match(stderr(), /drained in/);
});

test('CLI: a second SIGTERM ends the stream in flight with an error; the process exits 0', async () => {
  const { proc, base, stderr, exit } = await startCli(['--drain-timeout', '60']);
  const a = new SseReader(base, body(1900));
  await a.started();
  proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  proc.kill('SIGTERM');
  await a.finished;
  assert.ok(a.done);
  assert.equal(a.error()?.code, 'server_shutting_down');
  assert.equal(await exit, 0, stderr());
  assert.match(stderr(), /1 requests ended with an error/);
});
