/**
 * n > 1: the prompt is computed once and its K/V forked for the other choices. Checked against
 * independent runs (choice i equals a plain generation with seed + i: forked K/V gives the same
 * tokens as computed K/V), the engine's row counter (prompt rows computed once), the KV
 * manager's shared bytes while the choices run, and through the server (usage, /metrics, SSE).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { SYNTH_PRESETS } from '../synth/presets.js';
import type { Model } from '../index.js';
import { startTestServer, type TestServer } from './server-testing.js';

const MODEL_ID = 'tiny';
let t: TestServer;
let model: Model;
let base: string;
let client: OpenAI;

before(async () => {
  // tiny-15m with a 256-wide K/V row: 512-byte rows make 128-token chunks (tiny-15m's 288 make
  // 1024-token chunks, longer than this context), so a prompt spans full, shareable chunks.
  const preset = { ...SYNTH_PRESETS['tiny-15m']!, name: 'tiny-256', dim: 256, nHeads: 4, nKvHeads: 4, ffn: 512 };
  t = await startTestServer({ modelId: MODEL_ID, seed: 14, preset });
  ({ model, base, client } = t);
});

after(async () => {
  await t?.close();
});

type Stats = { scheduler: { rows: number; forkedPromptTokens: number }; kv: { sharedBytes: number } };
const stats = async (): Promise<Stats> => (await model.stats()) as unknown as Stats;

describe('n choices', () => {
  test('n = 4 with a seed: 4 different choices, each equal to a plain run with seed + i; prompt rows computed once; chunks shared', async () => {
    const prompt = model.tokenize('The little robot walked to the market. '.repeat(34));
    assert.ok(prompt.length > 250, `${prompt.length}`);
    // 64 decode steps after the first token: time for the stats query to land while all four run.
    const opts = { maxTokens: 64, temperature: 1, seed: 40, ignoreEos: true };
    const before = await stats();
    const gens = model.generateChoices(prompt, 4, opts);
    // While the choices run, the KV manager maps the prompt's full chunks into all four.
    const it = gens[0]![Symbol.asyncIterator]();
    await it.next();
    const during = await stats();
    const results = await Promise.all(gens.map((g) => g.result));
    const after1 = await stats();
    assert.ok(during.kv.sharedBytes > 0, `sharedBytes ${during.kv.sharedBytes}`);
    assert.equal(after1.scheduler.forkedPromptTokens - before.scheduler.forkedPromptTokens, 3 * prompt.length);
    // Rows: the prompt once plus one decode row per further token of each choice.
    const rows = after1.scheduler.rows - before.scheduler.rows;
    assert.ok(rows <= prompt.length + 4 * opts.maxTokens, `rows ${rows} for a ${prompt.length}-token prompt`);
    assert.equal(new Set(results.map((r) => r.tokens.join(','))).size, 4, 'four different choices');
    for (const r of results) {
      assert.equal(r.tokens.length, opts.maxTokens);
      assert.equal(r.promptTokens, prompt.length);
    }
    // Independent runs, computing the prompt again: the same tokens for each seed.
    for (let i = 0; i < 4; i++) {
      const plain = await model.complete(prompt, { ...opts, seed: opts.seed + i });
      assert.deepEqual(plain.tokens, results[i]!.tokens, `choice ${i}`);
    }
  });

  test('server: n = 3 gives choices 0..2, usage counts the prompt once; streamed the same; /metrics shows forked prompt tokens', async () => {
    const req = { model: MODEL_ID, messages: [{ role: 'user' as const, content: 'Tell me something.' }], n: 3, max_tokens: 6, temperature: 1, seed: 9 };
    const r = await client.chat.completions.create(req);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    const one = await client.chat.completions.create({ ...req, n: 1 });
    assert.equal(r.usage!.prompt_tokens, one.usage!.prompt_tokens);
    assert.ok(r.usage!.completion_tokens >= 3 && r.usage!.completion_tokens <= 18);
    assert.equal(r.choices[0]!.message.content, one.choices[0]!.message.content, 'choice 0 is the n = 1 choice');
    const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    const texts = ['', '', ''];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      for (const c of chunk.choices) texts[c.index] += c.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    assert.deepEqual(texts, r.choices.map((c) => c.message.content));
    assert.equal(usage!.prompt_tokens, r.usage!.prompt_tokens);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const m = /^flexinfer_\w*forked_prompt_tokens\S* (\d+)/m.exec(metrics);
    assert.ok(m && Number(m[1]) > 0, metrics.split('\n').filter((l) => /fork/.test(l)).join('\n') || 'no forked_prompt_tokens metric');
  });
});
