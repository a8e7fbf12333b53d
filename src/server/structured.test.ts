/**
 * Structured output through the server, driven by the clients agent code uses: the Vercel AI
 * SDK (`generateObject` with a Zod schema, through @ai-sdk/openai-compatible) and the official
 * `openai` client. The model has random weights, so without the constraint its output is never
 * JSON: every valid object below is the grammar's doing, checked by Zod / ajv, not by us.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { generateObject, NoObjectGeneratedError } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { z } from 'zod';
import { synthesize } from '../synth/synth.js';
import { loadModel, type Model } from '../index.js';
import { createServer, type FlexinferServer } from './server.js';

const MODEL_ID = 'tiny';
let dir: string;
let model: Model;
let server: FlexinferServer;
let client: OpenAI;
let provider: ReturnType<typeof createOpenAICompatible>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-structured-'));
  const path = join(dir, 'tiny.gguf');
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 11 });
  model = await loadModel(path, { threads: 2, contextSize: 512, parallel: 4 });
  server = createServer(model, { modelId: MODEL_ID, port: 0, parallel: 4 });
  const base = await server.listen();
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
  provider = createOpenAICompatible({ name: 'flexinfer', baseURL: `${base}/v1`, apiKey: 'unused', supportsStructuredOutputs: true });
});

after(async () => {
  await server?.close();
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('structured output', () => {
  test('AI SDK generateObject with a Zod schema: a valid object in 20 of 20 runs at temperature 1', async () => {
    const schema = z.object({
      color: z.enum(['red', 'green', 'blue']),
      count: z.number().int().min(0).max(12),
      ok: z.boolean(),
      sizes: z.array(z.enum(['S', 'M', 'L'])).min(1).max(3),
      nested: z.object({ level: z.number().int().min(-3).max(3), on: z.boolean().optional() }),
    });
    for (let i = 0; i < 20; i++) {
      const { object, finishReason } = await generateObject({ model: provider.chatModel(MODEL_ID), schema, temperature: 1, maxOutputTokens: 400, seed: 100 + i, prompt: 'Describe a shirt.' });
      assert.equal(finishReason, 'stop');
      assert.ok(schema.safeParse(object).success, JSON.stringify(object));
    }
  });

  test('an unbounded string cut by max_tokens ends with finish_reason length and an honest error, never as complete JSON', async () => {
    const schema = z.object({ story: z.string() });
    let cut = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const run = generateObject({ model: provider.chatModel(MODEL_ID), schema, temperature: 1, maxOutputTokens: 10, seed, prompt: 'Tell a story.' });
      const outcome = await run.then(
        (r) => ({ ok: true as const, r }),
        (e: unknown) => ({ ok: false as const, e }),
      );
      if (outcome.ok) {
        assert.equal(outcome.r.finishReason, 'stop'); // the string closed in time: a complete, valid object
        assert.ok(schema.safeParse(outcome.r.object).success);
      } else {
        assert.ok(NoObjectGeneratedError.isInstance(outcome.e) && outcome.e.finishReason === 'length', String(outcome.e));
        cut++;
      }
    }
    assert.ok(cut > 0, 'no run was cut short: the test did not exercise the length case');
    const r = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'Tell a story.' }],
      max_tokens: 4,
      temperature: 1,
      seed: 3,
      response_format: { type: 'json_schema', json_schema: { name: 's', schema: z.toJSONSchema(schema) } },
    });
    assert.equal(r.choices[0]!.finish_reason, 'length');
    assert.throws(() => JSON.parse(r.choices[0]!.message.content!));
  });

  test('json_object with the openai client, streaming and not: a JSON object', async () => {
    const r = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'JSON please' }], max_tokens: 300, temperature: 0.7, seed: 9, response_format: { type: 'json_object' } });
    if (r.choices[0]!.finish_reason === 'stop') assert.equal(typeof JSON.parse(r.choices[0]!.message.content!), 'object');
    const stream = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'JSON please' }], max_tokens: 300, temperature: 0.7, seed: 9, stream: true, response_format: { type: 'json_object' } });
    let text = '';
    let finish: string | null = null;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, r.choices[0]!.message.content, 'same seed, same text streamed or not');
    assert.equal(finish, r.choices[0]!.finish_reason);
  });

  test('a schema feature the grammar cannot enforce is a 400 that names it', async () => {
    const bad = { type: 'object', properties: { n: { type: 'integer', multipleOf: 5 } } };
    await assert.rejects(
      client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_schema', json_schema: { name: 'b', schema: bad } } }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && /multipleOf/.test(e.message) && (e.error as { param?: string }).param === 'response_format.json_schema.schema.properties.n.multipleOf',
    );
  });
});
