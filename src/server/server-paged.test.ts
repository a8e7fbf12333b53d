/**
 * The server with the paged KV layout (`--kv paged`), driven by the official `openai` client:
 * concurrent streamed and plain chat completions give the same greedy text as a server on the
 * vtensor layout, and a conversation's next turn is served from the cached blocks.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { synthesize } from '../synth/synth.js';
import { loadModel, type Model } from '../index.js';
import { createServer, type FlexinferServer } from './server.js';

const MODEL_ID = 'tiny';
let dir: string;
const models: Model[] = [];
const servers: FlexinferServer[] = [];
const clients: Record<'paged' | 'vtensor', OpenAI> = {} as Record<'paged' | 'vtensor', OpenAI>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-server-paged-'));
  const path = join(dir, 'tiny.gguf');
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 9 });
  for (const kv of ['paged', 'vtensor'] as const) {
    const model = await loadModel(path, { threads: 2, contextSize: 512, parallel: 4, kv });
    const server = createServer(model, { modelId: MODEL_ID, port: 0, parallel: 4 });
    models.push(model);
    servers.push(server);
    clients[kv] = new OpenAI({ baseURL: `${await server.listen()}/v1`, apiKey: 'unused', maxRetries: 0 });
  }
});

after(async () => {
  for (const s of servers) await s.close();
  for (const m of models) await m.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** One chat completion's text, streamed or not. */
async function ask(client: OpenAI, content: string, stream: boolean, history: OpenAI.Chat.ChatCompletionMessageParam[] = []): Promise<{ text: string; cached: number }> {
  const messages = [...history, { role: 'user' as const, content }];
  if (!stream) {
    const r = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 12, temperature: 0 });
    return { text: r.choices[0]!.message.content ?? '', cached: r.usage?.prompt_tokens_details?.cached_tokens ?? 0 };
  }
  const s = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let cached = 0;
  for await (const chunk of s) {
    text += chunk.choices[0]?.delta.content ?? '';
    cached = chunk.usage?.prompt_tokens_details?.cached_tokens ?? cached;
  }
  return { text, cached };
}

test('paged layout behind the server: concurrent requests give the vtensor server\'s greedy text; a next turn reuses cached blocks', async () => {
  const prompts = ['Tell me a story.', 'Once upon a time', 'The little cat', 'Why is the sky blue?', 'A dragon and a knight', 'Count to five'];
  const results: Record<string, string[]> = {};
  for (const kv of ['paged', 'vtensor'] as const) {
    // More requests than parallel sequences: some wait in the queue, the others run batched.
    const r = await Promise.all(prompts.map((p, i) => ask(clients[kv], p, i % 2 === 0)));
    results[kv] = r.map((x) => x.text);
    assert.ok(r.every((x) => x.text.length > 0), `${kv}: every request answered`);
  }
  assert.deepEqual(results.paged, results.vtensor);

  const history: OpenAI.Chat.ChatCompletionMessageParam[] = [
    { role: 'user', content: prompts[0]! },
    { role: 'assistant', content: results.paged![0]! },
  ];
  const next = await ask(clients.paged, 'And then?', true, history);
  const ref = await ask(clients.vtensor, 'And then?', true, history);
  assert.equal(next.text, ref.text);
  assert.ok(next.cached > 0, `the second turn reused cached blocks (${next.cached} tokens)`);
  const stats = (await models[0]!.stats()) as { kv: { layout: string; prefixHits: number; numSequences: number } };
  assert.equal(stats.kv.layout, 'paged');
  assert.ok(stats.kv.prefixHits > 0);
  assert.equal(stats.kv.numSequences, 0, 'every sequence released');
});
