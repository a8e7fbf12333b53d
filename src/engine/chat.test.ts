/**
 * ChatSession over four turns on a synthetic tiny-15m: later turns find the earlier turns' K/V
 * in the prefix cache, and the replies are exactly what a model with no cache produces for the
 * same history (a fresh loadModel, one complete() over the whole rendered prompt per turn).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { SYNTH_PRESETS } from '../synth/presets.js';
import { readGgufSync } from '../gguf/reader.js';
import { tokenizerFromGguf } from '../tokenizer/index.js';
import { loadModel, type Model } from '../index.js';
import { ChatSession } from './chat.js';
import type { ChatMessage } from './chat-template.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-chat-test-'));
const path = join(dir, 'tiny-15m-q8_0.gguf');
const USER = ['Hello! Who are you?', 'Tell me a short story about a dog.', 'Why did the dog run away?', 'Thank you, goodbye.'];
const GREEDY = { temperature: 0, maxTokens: 12 } as const;
// tiny-15m's K/V row (288 f16 values) makes 1024-token vTensor chunks; 2048 tokens of context
// leave the pool room to copy a cached tail while the cache still holds it.
const LOAD = { threads: 2, contextSize: 2048 } as const;

before(async () => {
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 5 });
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** Replies of a model that never reuses K/V: every turn on a freshly loaded model. */
async function uncachedReplies(systemPrompt: string, turns: number): Promise<{ texts: string[]; prompts: number[] }> {
  const history: ChatMessage[] = [{ role: 'system', content: systemPrompt }];
  const texts: string[] = [];
  const prompts: number[] = [];
  for (let i = 0; i < turns; i++) {
    history.push({ role: 'user', content: USER[i]! });
    const model = await loadModel(path, { ...LOAD, parallel: 1 });
    try {
      // The session only renders the prompt here (its model is not asked to generate).
      const prompt = new ChatSession(model).promptTokens(history);
      const r = await model.complete(prompt, GREEDY);
      assert.equal(r.cachedPromptTokens, 0, `reference turn ${i} must not reuse K/V`);
      texts.push(r.text);
      prompts.push(r.promptTokens);
      history.push({ role: 'assistant', content: r.text });
    } finally {
      await model.dispose();
    }
  }
  return { texts, prompts };
}

for (const kv of ['vtensor', 'paged', 'contiguous'] as const) {
  test(`ChatSession (${kv}): four turns reuse the earlier turns' K/V and reply as an uncached model does`, async () => {
    const system = 'You are a friendly storyteller.';
    const model: Model = await loadModel(path, { ...LOAD, parallel: 2, kv });
    const results = [];
    try {
      const chat = new ChatSession(model, { systemPrompt: system });
      const prompts: Uint32Array[] = [];
      for (let i = 0; i < USER.length; i++) {
        const expectedPrompt = chat.promptTokens([...chat.messages, { role: 'user', content: USER[i]! }]);
        prompts.push(expectedPrompt);
        // Streaming: the chunks add up to the reply.
        const stream = chat.send(USER[i]!, GREEDY);
        let streamed = '';
        for await (const c of stream) streamed += c.text;
        const r = await stream.result;
        assert.equal(streamed, r.text, `turn ${i}: streamed text`);
        assert.equal(r.promptTokens, expectedPrompt.length, `turn ${i}: prompt length`);
        results.push(r);
      }
      assert.equal(chat.messages.length, 1 + 2 * USER.length, 'system + user/assistant per turn');
      assert.equal(results[0]!.cachedPromptTokens, 0, 'nothing cached before the first turn');
      for (let i = 1; i < results.length; i++) {
        const prev = results[i - 1]!;
        // The previous turn's prompt and reply are in the cache, except the last reply token
        // (sampled, never run through the model). The reply comes back as text, so only the
        // part of it that retokenizes to the same ids can match (at least the previous prompt).
        const cached = Uint32Array.from([...prompts[i - 1]!, ...prev.tokens.slice(0, -1)]);
        let common = 0;
        while (common < cached.length && cached[common] === prompts[i]![common]) common++;
        // The session continues from the previous turn's exact tokens when its reply ended on
        // an end-of-generation token or the length limit: then the whole turn is reused.
        const exact = prev.finishReason === 'eog' || prev.finishReason === 'length';
        const minReuse = exact ? cached.length : Math.max(common, prev.promptTokens);
        assert.ok(
          results[i]!.cachedPromptTokens >= minReuse,
          `turn ${i}: ${results[i]!.cachedPromptTokens} cached prompt tokens, expected >= ${minReuse}`,
        );
        assert.ok(results[i]!.cachedPromptTokens < results[i]!.promptTokens, `turn ${i}: the new message is computed`);
      }
      const stats = (await model.stats()) as { kv: { prefixHits: number; prefixTokensReused: number } };
      assert.ok(stats.kv.prefixHits >= USER.length - 1, `prefix hits ${stats.kv.prefixHits}`);
    } finally {
      await model.dispose();
    }
    const ref = await uncachedReplies(system, USER.length);
    assert.deepEqual(
      results.map((r) => r.text),
      ref.texts,
      'replies with K/V reuse == replies recomputed from scratch',
    );
    assert.deepEqual(results.map((r) => r.promptTokens), ref.prompts);
  });
}

test('ChatSession: an aborted turn leaves the history unchanged; a concurrent send is refused', async () => {
  const model = await loadModel(path, { ...LOAD, parallel: 1 });
  try {
    const chat = new ChatSession(model);
    const first = await chat.ask(USER[0]!, GREEDY);
    assert.equal(first.finishReason, 'length');
    assert.equal(chat.messages.length, 2);
    const ctrl = new AbortController();
    const stream = chat.send(USER[1]!, { temperature: 0, maxTokens: 1000, signal: ctrl.signal });
    assert.throws(() => chat.send('again'), /previous turn has not finished/);
    let n = 0;
    for await (const c of stream) {
      n += c.tokens.length;
      if (n >= 2) ctrl.abort();
    }
    const r = await stream.result;
    assert.equal(r.finishReason, 'abort');
    assert.ok(r.tokens.length < 1000);
    assert.equal(chat.messages.length, 2, 'aborted turn not added');
    // The session is usable again, and the next turn still reuses the first turn's K/V.
    const again = await chat.ask(USER[1]!, GREEDY);
    assert.equal(chat.messages.length, 4);
    assert.ok(again.cachedPromptTokens >= first.promptTokens, `cached ${again.cachedPromptTokens} < first prompt ${first.promptTokens}`);
  } finally {
    await model.dispose();
  }
});

test('ChatSession prompts: one BOS where the file asks for it (add_bos_token), none for Qwen2', async () => {
  // Small models with the presets' tokenizers and chat templates (layers do not matter here).
  for (const name of ['qwen2.5-0.5b', 'llama-3.2-1b', 'tinyllama-1.1b']) {
    const file = join(dir, `${name}-shrunk.gguf`);
    await synthesize(file, { ...SYNTH_PRESETS[name]!, name: `${name}-shrunk`, dim: 64, nLayers: 1, nHeads: 2, nKvHeads: 1, ffn: 128 }, 'q8_0', { seed: 1 });
    const gguf = readGgufSync(file);
    const addBos = gguf.get('tokenizer.ggml.add_bos_token') === true;
    const tok = tokenizerFromGguf(gguf);
    // Only what ChatSession uses of a Model: info and the tokenizer.
    const stub = {
      info: { bosId: tok.bosId ?? null, eosId: tok.eosId ?? null, chatTemplate: tok.chatTemplate ?? null },
      tokenize: (text: string, o: { addBos?: boolean; special?: boolean } = {}) =>
        tok.encode(text, { parseSpecial: o.special ?? false, ...(o.addBos !== undefined ? { addBos: o.addBos } : {}) }),
      detokenize: (ids: ArrayLike<number>) => tok.decode(Array.from(ids)),
    } as unknown as Model;
    const chat = new ChatSession(stub, { systemPrompt: 'Be kind.' });
    assert.equal(chat.templateSource, 'model', name);
    const ids = chat.promptTokens([...chat.messages, { role: 'user', content: 'Hello' }]);
    const bos = tok.bosId!;
    assert.equal(ids[0] === bos, addBos, `${name}: starts with BOS iff add_bos_token (${addBos})`);
    assert.notEqual(ids[1], bos, `${name}: no second BOS`);
  }
});
