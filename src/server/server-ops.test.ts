/**
 * The server's operational surface, each on its own server over a real model on loopback:
 * /health and requests while the model is still loading (503) or failed to load; the bounded
 * queue (429 once `parallel + maxQueue` requests are in flight, the others unaffected); and
 * /metrics in the Prometheus text format, with counters that equal what the clients saw.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { synthesize } from '../synth/synth.js';
import { loadModel, type Model } from '../index.js';
import { createServer, type FlexinferServer } from './server.js';
import { parsePrometheus } from './prometheus-testing.js';

const MODEL_ID = 'tiny';
let dir: string;
let path: string;
let model: Model;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-server-ops-'));
  path = join(dir, 'tiny.gguf');
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 11 });
  model = await loadModel(path, { threads: 2, contextSize: 512, parallel: 2, kv: 'vtensor' });
});

after(async () => {
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function withServer<T>(m: Model | Promise<Model>, opts: { parallel: number; maxQueue: number }, fn: (base: string, s: FlexinferServer) => Promise<T>): Promise<T> {
  const server = createServer(m, { modelId: MODEL_ID, port: 0, ...opts });
  const base = await server.listen();
  try {
    return await fn(base, server);
  } finally {
    await server.close();
  }
}

const chatBody = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ model: MODEL_ID, messages: [{ role: 'user', content: 'Tell me a story' }], max_tokens: 4, temperature: 0, ...extra });

async function post(base: string, body: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, ...(signal ? { signal } : {}) });
}

test('while the model loads: /health 503 "loading", requests 503 model_loading; then 200 and answers', async () => {
  let resolve!: (m: Model) => void;
  const loading = new Promise<Model>((r) => (resolve = r));
  await withServer(loading, { parallel: 2, maxQueue: 4 }, async (base) => {
    const h = await fetch(`${base}/health`);
    assert.equal(h.status, 503);
    assert.deepEqual(await h.json(), { status: 'loading' });
    const r = await post(base, chatBody());
    assert.equal(r.status, 503);
    const e = (await r.json()) as { error: { code: string; type: string } };
    assert.equal(e.error.code, 'model_loading');
    assert.equal(e.error.type, 'service_unavailable');
    resolve(model);
    await loading;
    await new Promise((r) => setImmediate(r));
    assert.equal((await fetch(`${base}/health`)).status, 200);
    const ok = await post(base, chatBody());
    assert.equal(ok.status, 200, await ok.clone().text());
    const j = (await ok.json()) as { usage: { completion_tokens: number } };
    assert.equal(j.usage.completion_tokens, 4);
  });
});

test('a model that fails to load: /health 503 with the reason, requests 503 model_load_failed', async () => {
  const bad = join(dir, 'corrupt.gguf');
  writeFileSync(bad, Buffer.from('GGUF\x03\x00\x00\x00 this is not a model'));
  const failing = loadModel(bad, { threads: 1 });
  failing.catch(() => {}); // the server reports it
  await withServer(failing, { parallel: 1, maxQueue: 1 }, async (base) => {
    await failing.catch(() => {});
    await new Promise((r) => setImmediate(r));
    const h = await fetch(`${base}/health`);
    assert.equal(h.status, 503);
    const hj = (await h.json()) as { status: string; error: string };
    assert.equal(hj.status, 'error');
    assert.match(hj.error, /GGUF/i, 'the health body says why');
    const r = await post(base, chatBody());
    assert.equal(r.status, 503);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'model_load_failed');
  });
});

test('bounded queue: with parallel 1 and maxQueue 1 a third request gets 429 queue_full; the others finish; /metrics counts it all', async () => {
  await withServer(model, { parallel: 1, maxQueue: 1 }, async (base, server) => {
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
    // A: a long stream, held open until the third request has been refused.
    const abortA = new AbortController();
    const streamA = await client.chat.completions.create(
      { model: MODEL_ID, messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 400, temperature: 0, stream: true },
      { signal: abortA.signal },
    );
    const itA = streamA[Symbol.asyncIterator]();
    await itA.next(); // A is running
    // B: queued behind A.
    const b = post(base, chatBody({ max_tokens: 3 }));
    while (server.inFlight < 2) await new Promise((r) => setTimeout(r, 5));
    // C: over the limit.
    const c = await post(base, chatBody());
    assert.equal(c.status, 429);
    const ce = (await c.json()) as { error: { type: string; code: string; message: string } };
    assert.equal(ce.error.type, 'rate_limit_error');
    assert.equal(ce.error.code, 'queue_full');
    assert.match(ce.error.message, /busy/);
    // A goes away mid-stream; B then runs to the end.
    abortA.abort();
    await itA.next().catch(() => {});
    const rb = await b;
    assert.equal(rb.status, 200);
    const jb = (await rb.json()) as { usage: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens?: number } } };
    assert.equal(jb.usage.completion_tokens, 3);
    while (server.inFlight > 0) await new Promise((r) => setTimeout(r, 5));

    // One more finished completion, to check the token counters against the usage we saw.
    const d = await client.completions.create({ model: MODEL_ID, prompt: 'The cat', max_tokens: 5, temperature: 0 });
    assert.equal(d.usage!.completion_tokens, 5);

    const m = await fetch(`${base}/metrics`);
    assert.equal(m.status, 200);
    assert.match(m.headers.get('content-type') ?? '', /^text\/plain/);
    const samples = parsePrometheus(await m.text());
    assert.equal(samples.get('flexinfer_requests_total{endpoint="chat"}'), 2, 'A and B (C was refused before it started)');
    assert.equal(samples.get('flexinfer_requests_total{endpoint="text"}'), 1);
    assert.equal(samples.get('flexinfer_request_errors_total{status="429"}'), 1);
    assert.equal(samples.get('flexinfer_requests_aborted_total'), 1, 'A');
    assert.equal(samples.get('flexinfer_requests_in_flight'), 0);
    assert.equal(samples.get('flexinfer_queue_length'), 0);
    // B and D finished normally; A's tokens up to the abort count too, so at least B + D.
    const generated = samples.get('flexinfer_generated_tokens_total')!;
    assert.ok(generated >= 3 + 5, `generated_tokens_total ${generated}`);
    assert.ok(generated < 3 + 5 + 400, `generated_tokens_total ${generated}`);
    assert.ok(samples.get('flexinfer_prompt_tokens_total')! >= jb.usage.prompt_tokens + d.usage!.prompt_tokens);
    // Engine statistics are exported as gauges (KV pool in use, prefix cache).
    assert.ok([...samples.keys()].some((k) => k.startsWith('flexinfer_engine_kv_')), 'KV statistics');
    assert.ok(samples.get('flexinfer_generated_tokens_per_second')! > 0);
  });
});
