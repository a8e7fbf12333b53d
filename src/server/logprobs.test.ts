/**
 * logprobs / top_logprobs: the engine's values against log-softmax computed here from the logits
 * of an independent full-sequence evaluation, and the server's shapes (chat and completions,
 * streamed and not: the same values), with the openai client.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { Model } from '../index.js';
import { startTestServer, type TestServer } from './server-testing.js';

const MODEL_ID = 'tiny';
let t: TestServer;
let model: Model;
let client: OpenAI;

before(async () => {
  t = await startTestServer({ modelId: MODEL_ID, seed: 13, contextSize: 256, parallel: 2 });
  ({ model, client } = t);
});

after(async () => {
  await t?.close();
});

describe('logprobs', () => {
  test('the chosen token\'s logprob is log-softmax of the logits it was drawn from; top-k sorted and summing to at most 1', async () => {
    const prompt = model.tokenize('Once upon a time');
    // Temperature 1 and no filters: the sampler draws from softmax(logits) itself.
    const r = await model.complete(prompt, { maxTokens: 10, temperature: 1, topK: 0, topP: 1, minP: 0, seed: 5, logprobs: 20, ignoreEos: true });
    assert.equal(r.logprobs!.length, r.tokens.length);
    const all = new Uint32Array([...prompt, ...r.tokens]);
    const logits = await model.evaluate(all, { allLogits: true });
    const V = model.info.vocabSize;
    for (let i = 0; i < r.tokens.length; i++) {
      const row = logits.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      const logZ = max + Math.log(sum);
      const lp = r.logprobs![i]!;
      assert.equal(lp.token, r.tokens[i]);
      // Batched prefill vs one-token decode: the same math in a different order.
      assert.ok(Math.abs(lp.logprob - (row[lp.token]! - logZ)) < 2e-3, `token ${i}: ${lp.logprob} vs ${row[lp.token]! - logZ}`);
      assert.equal(lp.top.length, 20);
      const ranked = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]!);
      assert.equal(lp.top[0]!.token, ranked[0]);
      for (let k = 1; k < 20; k++) assert.ok(lp.top[k - 1]!.logprob >= lp.top[k]!.logprob);
      const mass = lp.top.reduce((s, t) => s + Math.exp(t.logprob), 0);
      assert.ok(mass <= 1 + 1e-6, `top-20 mass ${mass}`);
      if (lp.logprob >= lp.top[19]!.logprob) assert.ok(lp.top.some((t) => t.token === lp.token));
    }
  });

  test('chat and completions: OpenAI shapes, the same values streamed or not', async () => {
    const base = { model: MODEL_ID, messages: [{ role: 'user' as const, content: 'Hi' }], max_tokens: 8, temperature: 1, seed: 4, logprobs: true, top_logprobs: 3 };
    const r = await client.chat.completions.create(base);
    const content = r.choices[0]!.logprobs!.content!;
    assert.equal(content.length, r.usage!.completion_tokens);
    for (const c of content) {
      assert.equal(c.top_logprobs.length, 3);
      assert.ok(c.logprob <= 0);
      assert.deepEqual(c.bytes, Array.from(Buffer.from(c.token, 'utf8')));
      assert.ok(c.top_logprobs.reduce((s, t) => s + Math.exp(t.logprob), 0) <= 1 + 1e-6);
    }
    const stream = await client.chat.completions.create({ ...base, stream: true });
    const streamed: unknown[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    assert.deepEqual(streamed, content);
    const none = await client.chat.completions.create({ ...base, logprobs: false, top_logprobs: undefined });
    assert.equal(none.choices[0]!.logprobs, null);

    const cbase = { model: MODEL_ID, prompt: 'Once upon', max_tokens: 6, temperature: 1, seed: 2, logprobs: 2 };
    const c = await client.completions.create(cbase);
    const lp = c.choices[0]!.logprobs!;
    assert.equal(lp.tokens!.length, 6);
    assert.equal(lp.tokens!.join(''), c.choices[0]!.text);
    assert.deepEqual(lp.text_offset, lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join('').length));
    for (const top of lp.top_logprobs!) assert.ok(Object.keys(top).length >= 1 && Object.keys(top).length <= 2);
    const cs = await client.completions.create({ ...cbase, stream: true });
    const tokens: string[] = [];
    const values: number[] = [];
    const offsets: number[] = [];
    for await (const chunk of cs) {
      const l = chunk.choices[0]?.logprobs;
      if (!l) continue;
      tokens.push(...l.tokens!);
      values.push(...l.token_logprobs!);
      offsets.push(...l.text_offset!);
    }
    assert.deepEqual(tokens, lp.tokens);
    assert.deepEqual(values, lp.token_logprobs);
    assert.deepEqual(offsets, lp.text_offset);
  });

  test('bad logprobs requests are 400s naming the field', async () => {
    const msg = [{ role: 'user' as const, content: 'x' }];
    await assert.rejects(client.chat.completions.create({ model: MODEL_ID, messages: msg, top_logprobs: 2 }), (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === 'top_logprobs');
    await assert.rejects(client.chat.completions.create({ model: MODEL_ID, messages: msg, logprobs: true, top_logprobs: 21 }), (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === 'top_logprobs');
    await assert.rejects(model.complete('x', { logprobs: 21 }), /logprobs/);
  });
});
