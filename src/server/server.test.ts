/**
 * The server against a live model on loopback, driven by the official `openai` client and by
 * raw fetch for what a client library would never send.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { synthesize } from '../synth/synth.js';
import { loadModel, type Model } from '../index.js';
import { createServer, type FlexinferServer } from './server.js';
import { ChatTemplate } from '../engine/chat-template.js';

const MODEL_ID = 'tiny';
let dir: string;
let model: Model;
let server: FlexinferServer;
let base: string;
let client: OpenAI;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-server-'));
  const path = join(dir, 'tiny.gguf');
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 7 });
  model = await loadModel(path, { threads: 2, contextSize: 512, parallel: 8, kv: 'vtensor' });
  server = createServer(model, { modelId: MODEL_ID, port: 0, parallel: 8, maxQueue: 256, bodyLimit: 64 * 1024 });
  base = await server.listen();
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  await server?.close();
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function activeSequences(): Promise<number> {
  const s = (await model.stats()) as { kv?: { numSequences?: number } };
  return s.kv?.numSequences ?? -1;
}

describe('OpenAI client: chat and completions', () => {
  test('non-streaming chat: text, finish reason and usage that add up', async () => {
    const r = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Tell me a story.' },
      ],
      max_tokens: 12,
      temperature: 0,
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, MODEL_ID);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0]!.message.role, 'assistant');
    assert.equal(typeof r.choices[0]!.message.content, 'string');
    assert.ok(['length', 'stop'].includes(r.choices[0]!.finish_reason));
    const u = r.usage!;
    assert.ok(u.completion_tokens >= 1 && u.completion_tokens <= 12);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    if (r.choices[0]!.finish_reason === 'length') assert.equal(u.completion_tokens, 12);
    // prompt_tokens is the length of the prompt the model's template makes of the messages.
    const bos = model.detokenize([model.info.bosId!]);
    const text = new ChatTemplate(model.info.chatTemplate ?? undefined, { bosToken: bos, eosToken: model.detokenize([model.info.eosId!]) }).render([
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Tell me a story.' },
    ]);
    // tiny-15m's template does not write <s>; the file's add_bos_token (true) adds it.
    assert.ok(!text.startsWith(bos));
    assert.equal(u.prompt_tokens, 1 + model.tokenize(text, { special: true, addBos: false }).length);
  });

  test('streaming chat: role first, deltas that join to the non-streamed text, usage chunk, [DONE]', async () => {
    const messages = [{ role: 'user' as const, content: 'Once upon a time' }];
    const whole = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 16, temperature: 0 });
    const stream = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let role: string | undefined;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      if (c.usage) usage = c.usage;
      const ch = c.choices[0];
      if (!ch) continue;
      role ??= ch.delta.role;
      text += ch.delta.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert.equal(role, 'assistant');
    assert.ok(chunks >= 3);
    assert.equal(text, whole.choices[0]!.message.content);
    assert.equal(finish, whole.choices[0]!.finish_reason);
    // Same counts; the streamed request reuses the first one's prompt from the prefix cache.
    assert.equal(usage!.prompt_tokens, whole.usage!.prompt_tokens);
    assert.equal(usage!.completion_tokens, whole.usage!.completion_tokens);
    assert.equal(usage!.total_tokens, whole.usage!.total_tokens);
    assert.equal(usage!.prompt_tokens_details?.cached_tokens, whole.usage!.prompt_tokens - 1);
  });

  test('completions, streaming and not, agree; prompt as token ids works', async () => {
    const r = await client.completions.create({ model: MODEL_ID, prompt: 'The little dog', max_tokens: 10, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    const s = await client.completions.create({ model: MODEL_ID, prompt: 'The little dog', max_tokens: 10, temperature: 0, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.text ?? '';
    assert.equal(text, r.choices[0]!.text);
    const ids = Array.from(model.tokenize('The little dog'));
    const byIds = await client.completions.create({ model: MODEL_ID, prompt: ids, max_tokens: 10, temperature: 0 });
    assert.equal(byIds.choices[0]!.text, r.choices[0]!.text);
    assert.equal(byIds.usage!.prompt_tokens, ids.length);
  });

  test('stop strings end the text before the stop, finish_reason stop', async () => {
    const free = await client.completions.create({ model: MODEL_ID, prompt: 'One day', max_tokens: 24, temperature: 0 });
    const text = free.choices[0]!.text;
    assert.ok(text.length > 8, `need some text to cut: '${text}'`);
    // A stop string from the middle of the free-running output.
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    const cut = await client.completions.create({ model: MODEL_ID, prompt: 'One day', max_tokens: 24, temperature: 0, stop: [stop] });
    assert.equal(cut.choices[0]!.text, text.slice(0, text.indexOf(stop)));
    assert.equal(cut.choices[0]!.finish_reason, 'stop');
    // Streaming honours it too.
    const s = await client.completions.create({ model: MODEL_ID, prompt: 'One day', max_tokens: 24, temperature: 0, stop, stream: true });
    let streamed = '';
    for await (const c of s) streamed += c.choices[0]?.text ?? '';
    assert.equal(streamed, text.slice(0, text.indexOf(stop)));
  });

  test('seeded sampling is reproducible over HTTP', async () => {
    const ask = (seed: number): Promise<string> =>
      client.completions.create({ model: MODEL_ID, prompt: 'A cat', max_tokens: 16, temperature: 1, seed }).then((r) => r.choices[0]!.text);
    assert.equal(await ask(5), await ask(5));
    assert.notEqual(await ask(5), await ask(6));
  });

  test('/v1/models lists the model; /health is ok', async () => {
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      [MODEL_ID],
    );
    const h = await fetch(`${base}/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: 'ok' });
  });
});

describe('batching, prefix reuse, disconnects', () => {
  test('8 concurrent greedy requests return exactly what each returns alone', async () => {
    const prompts = Array.from({ length: 8 }, (_, i) => `Story number ${i}: there was a`);
    const alone: string[] = [];
    for (const p of prompts) alone.push((await client.completions.create({ model: MODEL_ID, prompt: p, max_tokens: 16, temperature: 0 })).choices[0]!.text);
    const together = await Promise.all(prompts.map((p) => client.completions.create({ model: MODEL_ID, prompt: p, max_tokens: 16, temperature: 0 })));
    assert.deepEqual(
      together.map((r) => r.choices[0]!.text),
      alone,
    );
  });

  test('multi-turn: the second request reports cached prompt tokens and processes fewer', async () => {
    const long = Array.from({ length: 20 }, (_, i) => `line ${i} of the shared system prompt`).join('. ');
    const first = [
      { role: 'system' as const, content: long },
      { role: 'user' as const, content: 'Hello there' },
    ];
    const r1 = await client.chat.completions.create({ model: MODEL_ID, messages: first, max_tokens: 8, temperature: 0 });
    const second = [...first, { role: 'assistant' as const, content: r1.choices[0]!.message.content ?? '' }, { role: 'user' as const, content: 'And then?' }];
    const r2 = await client.chat.completions.create({ model: MODEL_ID, messages: second, max_tokens: 8, temperature: 0 });
    const cached1 = r1.usage!.prompt_tokens_details?.cached_tokens ?? 0;
    const cached2 = r2.usage!.prompt_tokens_details?.cached_tokens ?? 0;
    assert.ok(cached2 > cached1, `cached tokens: first ${cached1}, second ${cached2}`);
    assert.ok(cached2 >= r1.usage!.prompt_tokens - 1, `the whole first prompt is reused (${cached2} of ${r1.usage!.prompt_tokens})`);
    // The engine processed only the new part (llama-server's timings extension).
    const t1 = (r1 as unknown as { timings: { prompt_n: number; prompt_ms: number } }).timings;
    const t2 = (r2 as unknown as { timings: { prompt_n: number; prompt_ms: number } }).timings;
    assert.ok(t2.prompt_n < t1.prompt_n / 4, `prompt tokens computed: first ${t1.prompt_n}, second ${t2.prompt_n}`);
  });

  test('a client that disconnects mid-stream frees its sequence within a step', async () => {
    const before = await activeSequences();
    const controller = new AbortController();
    const stream = await client.completions.create(
      { model: MODEL_ID, prompt: 'A very long story begins', max_tokens: 200, temperature: 0, stream: true },
      { signal: controller.signal },
    );
    let n = 0;
    try {
      for await (const _c of stream) {
        if (++n === 3) {
          controller.abort(); // closes the connection; chunks already buffered are not read
          break;
        }
      }
    } catch {
      // The client library reports the abort as an error or just ends the stream.
    }
    assert.equal(n, 3, 'the stream was cut after 3 chunks');
    // Poll: released at the engine's next step (a few ms); allow a generous second.
    let now = -2;
    for (let i = 0; i < 100; i++) {
      now = await activeSequences();
      if (now === before) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(now, before);
    assert.equal(server.inFlight, 0);
  });
});

interface BadCase {
  name: string;
  method?: string;
  path?: string;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
  status: number;
  param?: string | null;
}

const chat = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });
const comp = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ model: MODEL_ID, prompt: 'hi', max_tokens: 2, ...extra });

const BAD: BadCase[] = [
  { name: 'malformed JSON', raw: '{"model": "tiny", "messages": [', status: 400 },
  { name: 'empty body', raw: '', status: 400 },
  { name: 'body is an array', body: [1, 2], status: 400 },
  { name: 'body is a string', body: 'hello', status: 400 },
  { name: 'missing model', body: { messages: [{ role: 'user', content: 'hi' }] }, status: 400, param: 'model' },
  { name: 'missing messages', body: { model: MODEL_ID }, status: 400, param: 'messages' },
  { name: 'messages not an array', body: chat({ messages: 'hi' }), status: 400, param: 'messages' },
  { name: 'messages empty', body: chat({ messages: [] }), status: 400, param: 'messages' },
  { name: 'message without role', body: chat({ messages: [{ content: 'hi' }] }), status: 400, param: 'messages[0].role' },
  { name: 'message with unknown role', body: chat({ messages: [{ role: 'wizard', content: 'hi' }] }), status: 400, param: 'messages[0].role' },
  { name: 'user message without content', body: chat({ messages: [{ role: 'user' }] }), status: 400, param: 'messages[0].content' },
  { name: 'message content a number', body: chat({ messages: [{ role: 'user', content: 5 }] }), status: 400, param: 'messages[0].content' },
  { name: 'message with unknown field', body: chat({ messages: [{ role: 'user', content: 'hi', mood: 'happy' }] }), status: 400, param: 'messages[0].mood' },
  { name: 'temperature a string', body: chat({ temperature: 'hot' }), status: 400, param: 'temperature' },
  { name: 'temperature too high', body: chat({ temperature: 5 }), status: 400, param: 'temperature' },
  { name: 'negative temperature', body: chat({ temperature: -0.5 }), status: 400, param: 'temperature' },
  { name: 'top_p above 1', body: chat({ top_p: 1.5 }), status: 400, param: 'top_p' },
  { name: 'top_k fractional', body: chat({ top_k: 2.5 }), status: 400, param: 'top_k' },
  { name: 'min_p negative', body: chat({ min_p: -1 }), status: 400, param: 'min_p' },
  { name: 'max_tokens zero', body: chat({ max_tokens: 0 }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens a string', body: chat({ max_tokens: '10' }), status: 400, param: 'max_tokens' },
  { name: 'max_completion_tokens negative', body: chat({ max_completion_tokens: -3 }), status: 400, param: 'max_completion_tokens' },
  { name: 'seed a float', body: chat({ seed: 1.5 }), status: 400, param: 'seed' },
  { name: 'stop a number', body: chat({ stop: 7 }), status: 400, param: 'stop' },
  { name: 'stop with an empty string', body: chat({ stop: [''] }), status: 400, param: 'stop' },
  { name: 'presence_penalty out of range', body: chat({ presence_penalty: 3 }), status: 400, param: 'presence_penalty' },
  { name: 'frequency_penalty a bool', body: chat({ frequency_penalty: true }), status: 400, param: 'frequency_penalty' },
  { name: 'repeat_penalty zero', body: chat({ repeat_penalty: 0 }), status: 400, param: 'repeat_penalty' },
  { name: 'stream a string', body: chat({ stream: 'yes' }), status: 400, param: 'stream' },
  { name: 'stream_options unknown field', body: chat({ stream: true, stream_options: { foo: 1 } }), status: 400, param: 'stream_options.foo' },
  { name: 'n above 16', body: chat({ n: 17 }), status: 400, param: 'n' },
  { name: 'unknown top-level field', body: chat({ best_of: 3 }), status: 400, param: 'best_of' },
  { name: 'unknown model', body: chat({ model: 'gpt-4' }), status: 404, param: 'model' },
  { name: 'prompt longer than the context', body: comp({ prompt: 'word '.repeat(700) }), path: '/v1/completions', status: 400 },
  { name: 'completions without prompt', body: { model: MODEL_ID }, path: '/v1/completions', status: 400, param: 'prompt' },
  { name: 'completions prompt an object', body: comp({ prompt: { text: 'hi' } }), path: '/v1/completions', status: 400, param: 'prompt' },
  { name: 'completions token id out of vocabulary', body: comp({ prompt: [1, 99999999] }), path: '/v1/completions', status: 400 },
  { name: 'completions negative token id', body: comp({ prompt: [1, -5] }), path: '/v1/completions', status: 400, param: 'prompt' },
  { name: 'completions two prompts', body: comp({ prompt: ['a', 'b'] }), path: '/v1/completions', status: 400, param: 'prompt' },
  { name: 'body too large', raw: JSON.stringify(chat({ messages: [{ role: 'user', content: 'x'.repeat(100_000) }] })), status: 413 },
  { name: 'wrong content type', raw: 'model=tiny', headers: { 'content-type': 'text/plain' }, status: 415 },
  { name: 'unknown endpoint', path: '/v1/engines', method: 'GET', status: 404 },
  { name: 'GET on a POST endpoint', path: '/v1/chat/completions', method: 'GET', status: 404 },
];

describe('bad requests: OpenAI-shaped errors with the right status', () => {
  for (const c of BAD) {
    test(`${c.name} -> ${c.status}`, async () => {
      const method = c.method ?? 'POST';
      const res = await fetch(`${base}${c.path ?? '/v1/chat/completions'}`, {
        method,
        headers: method === 'POST' ? { 'content-type': 'application/json', ...c.headers } : {},
        ...(method === 'POST' ? { body: c.raw ?? JSON.stringify(c.body) } : {}),
      });
      assert.equal(res.status, c.status, await res.clone().text());
      const j = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
      assert.equal(typeof j.error.message, 'string');
      assert.ok(j.error.message.length > 5);
      assert.equal(typeof j.error.type, 'string');
      assert.ok('param' in j.error && 'code' in j.error);
      if (c.param !== undefined) assert.equal(j.error.param, c.param);
    });
  }

  test('the server keeps serving after the bad requests', async () => {
    assert.ok(BAD.length >= 30);
    const r = await client.completions.create({ model: MODEL_ID, prompt: 'Still alive', max_tokens: 4, temperature: 0 });
    assert.ok(r.choices[0]!.text.length >= 0);
    assert.equal(r.usage!.completion_tokens, 4);
  });
});

describe('api key', () => {
  test('with --api-key, /v1 needs the bearer token; /health does not', async () => {
    const guarded = createServer(model, { modelId: MODEL_ID, port: 0, apiKey: 'sekret' });
    const url = await guarded.listen();
    try {
      const denied = await fetch(`${url}/v1/models`);
      assert.equal(denied.status, 401);
      assert.equal(((await denied.json()) as { error: { type: string } }).error.type, 'authentication_error');
      const ok = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sekret', maxRetries: 0 });
      assert.equal((await ok.models.list()).data[0]!.id, MODEL_ID);
      assert.equal((await fetch(`${url}/health`)).status, 200);
    } finally {
      await guarded.close();
    }
  });
});

describe('load', () => {
  test('200 requests from 16 concurrent clients: no errors, no memory growth afterwards', async () => {
    const run = async (n: number): Promise<void> => {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < n) {
          const i = next++;
          const stream = i % 2 === 0;
          if (stream) {
            const s = await client.completions.create({ model: MODEL_ID, prompt: `Request ${i % 7}`, max_tokens: 4, temperature: 0, stream: true });
            for await (const _c of s) {
              /* drain */
            }
          } else {
            const r = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: `Question ${i % 5}` }], max_tokens: 4, temperature: 0 });
            assert.ok(r.choices.length === 1);
          }
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
    };
    await run(40); // warm-up: caches, pools and JIT reach their working size
    const mem = async (): Promise<number> => {
      const s = (await model.stats()) as { memory: { rss: number }; kv: { mappedBytes: number } };
      return s.memory.rss;
    };
    const rss0 = await mem();
    await run(200);
    const rss1 = await mem();
    assert.equal(await activeSequences(), 0);
    assert.equal(server.inFlight, 0);
    // Allow 64 MiB of noise (allocator, JIT); a leak of a sequence's KV or buffers per request would exceed it.
    assert.ok(rss1 - rss0 < 64 * 1024 * 1024, `rss grew by ${((rss1 - rss0) / 1048576).toFixed(1)} MiB`);
  });
});
