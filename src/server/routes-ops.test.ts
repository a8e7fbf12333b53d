/**
 * The endpoints routers call (routes-ops.ts) on a real model on loopback: /tokenize and
 * /detokenize in vLLM's shapes (round trip, equal to model.tokenize, the chat form equal to the
 * prompt_tokens a chat completion reports), /v1/models fields, /version, and /health checks.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { synthesize } from '../synth/synth.js';
import { loadModel, type Model } from '../index.js';
import { createServer, type FlexinferServer } from './server.js';

const MODEL_ID = 'tiny-ops';
let dir: string;
let path: string;
let model: Model;
let server: FlexinferServer;
let base: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-routes-ops-'));
  path = join(dir, 'tiny.gguf');
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 5 });
  model = await loadModel(path, { threads: 2, contextSize: 512, parallel: 2, kv: 'vtensor' });
  server = createServer(model, { modelId: MODEL_ID, port: 0, parallel: 2 });
  base = await server.listen();
});

after(async () => {
  await server?.close();
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function post(route: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

const TEXTS = ['Hello world', ' leading space and  double spaces', 'Unicode: héllo wörld — 你好 🙂', 'Once upon a time, there was a tiny model.\nThe end.', ''];

test('/tokenize {prompt}: the ids of model.tokenize, count, max_model_len; add_special_tokens false drops BOS; token_strs', async () => {
  for (const text of TEXTS) {
    const r = await post('/tokenize', { model: MODEL_ID, prompt: text });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const expected = Array.from(model.tokenize(text, { special: true }));
    assert.deepEqual(r.json.tokens, expected, JSON.stringify(text));
    assert.equal(r.json.count, expected.length);
    assert.equal(r.json.max_model_len, 512);
    assert.equal(r.json.token_strs, undefined);
    const noBos = await post('/tokenize', { prompt: text, add_special_tokens: false, return_token_strs: true });
    const expectedNoBos = Array.from(model.tokenize(text, { special: true, addBos: false }));
    assert.deepEqual(noBos.json.tokens, expectedNoBos);
    assert.equal(expected[0], model.info.bosId, 'tiny-15m adds BOS');
    assert.deepEqual(noBos.json.token_strs, expectedNoBos.map((t) => model.detokenize([t])));
  }
});

test('/detokenize round-trips /tokenize without BOS, and matches model.detokenize', async () => {
  for (const text of TEXTS) {
    const t = await post('/tokenize', { prompt: text, add_special_tokens: false });
    const d = await post('/detokenize', { model: MODEL_ID, tokens: t.json.tokens });
    assert.equal(d.status, 200);
    assert.equal(d.json.prompt, text);
  }
  const ids = [1, 450, 4996, 29871, 13];
  assert.deepEqual((await post('/detokenize', { tokens: ids })).json, { prompt: model.detokenize(ids) });
});

test('/tokenize {messages}: the prompt a chat completion computes (its usage.prompt_tokens)', async () => {
  const messages = [
    { role: 'system' as const, content: 'Be brief.' },
    { role: 'user' as const, content: 'What is a tiny model?' },
  ];
  const t = await post('/tokenize', { model: MODEL_ID, messages });
  assert.equal(t.status, 200, JSON.stringify(t.json));
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
  const r = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 1, temperature: 0 });
  assert.equal(t.json.count, r.usage!.prompt_tokens);
  const without = await post('/tokenize', { messages, add_generation_prompt: false });
  assert.ok((without.json.count as number) < (t.json.count as number), 'no assistant header');
});

test('/tokenize and /detokenize: bad input is a 4xx in the OpenAI shape', async () => {
  const cases: Array<[string, unknown, number]> = [
    ['/tokenize', {}, 400],
    ['/tokenize', { prompt: 3 }, 400],
    ['/tokenize', { prompt: 'x', messages: [{ role: 'user', content: 'y' }] }, 400],
    ['/tokenize', { prompt: 'x', extra: true }, 400],
    ['/tokenize', { model: 'other', prompt: 'x' }, 404],
    ['/detokenize', { tokens: [-1] }, 400],
    ['/detokenize', { tokens: [1e9] }, 400],
    ['/detokenize', { tokens: 'abc' }, 400],
  ];
  for (const [route, body, status] of cases) {
    const r = await post(route, body);
    assert.equal(r.status, status, `${route} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
    const e = r.json.error as { message: string; type: string };
    assert.ok(e && typeof e.message === 'string' && e.message.length > 0);
  }
});

test('/v1/models carries owned_by, root and max_model_len; /version is the package version', async () => {
  const m = (await (await fetch(`${base}/v1/models`)).json()) as { data: Array<Record<string, unknown>> };
  assert.equal(m.data.length, 1);
  assert.deepEqual(
    { id: m.data[0]!.id, owned_by: m.data[0]!.owned_by, root: m.data[0]!.root, max_model_len: m.data[0]!.max_model_len },
    { id: MODEL_ID, owned_by: 'flexinfer', root: path, max_model_len: 512 },
  );
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.deepEqual(await (await fetch(`${base}/version`)).json(), { version: pkg.version });
});

test('/health: a failing named check (e.g. the model file changed) turns a ready server 503 with the reason', async () => {
  assert.equal((await fetch(`${base}/health`)).status, 200);
  let reason: string | null = 'the model file changed on disk';
  server.health.addCheck('model-file', () => reason);
  const h = await fetch(`${base}/health`);
  assert.equal(h.status, 503);
  assert.deepEqual(await h.json(), { status: 'unhealthy', error: 'model-file: the model file changed on disk', failing: { 'model-file': 'the model file changed on disk' } });
  reason = null;
  assert.equal((await fetch(`${base}/health`)).status, 200);
  server.health.removeCheck('model-file');
});
