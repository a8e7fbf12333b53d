/**
 * Tools through the server, driven by the official `openai` client and the Vercel AI SDK. The
 * model has random weights and a template without tools (TinyLlama's: the generic `<tool_call>`
 * syntax): a forced call is valid only because the grammar makes it so, and ajv / Zod check it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ajv } from 'ajv';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { z } from 'zod';
import { startTestServer, type TestServer } from './server-testing.js';

const MODEL_ID = 'tiny';
let t: TestServer;
let client: OpenAI;
let provider: ReturnType<typeof createOpenAICompatible>;

const weatherParams = {
  type: 'object',
  properties: { city: { enum: ['Paris', 'Oslo', 'Lima'] }, days: { type: 'integer', minimum: 1, maximum: 7 }, metric: { type: 'boolean' } },
  required: ['city', 'days'],
  additionalProperties: false,
};
const addParams = { type: 'object', properties: { a: { type: 'integer', minimum: -9, maximum: 9 }, b: { type: 'integer', minimum: -9, maximum: 9 } }, required: ['a', 'b'], additionalProperties: false };
const tools: OpenAI.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather forecast', parameters: weatherParams } },
  { type: 'function', function: { name: 'add', description: 'Adds two integers', parameters: addParams } },
];
const ajv = new Ajv();
const validators: Record<string, ReturnType<Ajv['compile']>> = { get_weather: ajv.compile(weatherParams), add: ajv.compile(addParams) };

before(async () => {
  t = await startTestServer({ modelId: MODEL_ID, seed: 12, contextSize: 1024 });
  client = t.client;
  provider = createOpenAICompatible({ name: 'flexinfer', baseURL: `${t.base}/v1`, apiKey: 'unused' });
});

after(async () => {
  await t?.close();
});

const checkCall = (c: OpenAI.ChatCompletionMessageToolCall, names: string[]): void => {
  assert.equal(c.type, 'function');
  assert.match(c.id, /^call_/);
  const fn = (c as OpenAI.ChatCompletionMessageFunctionToolCall).function;
  assert.ok(names.includes(fn.name), fn.name);
  const args: unknown = JSON.parse(fn.arguments);
  assert.ok(validators[fn.name]!(args), `${fn.name}(${fn.arguments}): ${ajv.errorsText(validators[fn.name]!.errors)}`);
};

describe('tools', () => {
  test("openai client: tool_choice 'required' and a named function give calls valid against the tool's schema, streamed or not", async () => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools, tool_choice: 'required', temperature: 1, seed, max_tokens: 200 });
      const choice = r.choices[0]!;
      assert.equal(choice.finish_reason, 'tool_calls');
      assert.equal(choice.message.content, null);
      assert.equal(choice.message.tool_calls?.length, 1);
      checkCall(choice.message.tool_calls![0]!, ['get_weather', 'add']);
      // The same request streamed: OpenAI's deltas (id, type, name first; then arguments), same call.
      const stream = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools, tool_choice: 'required', temperature: 1, seed, max_tokens: 200, stream: true });
      const got: Array<{ id?: string; name?: string; args: string }> = [];
      let finish: string | null = null;
      let content = '';
      for await (const chunk of stream) {
        const delta = chunk.choices[0]?.delta;
        content += delta?.content ?? '';
        for (const d of delta?.tool_calls ?? []) {
          got[d.index] ??= { args: '' };
          if (d.id) got[d.index]!.id = d.id;
          if (d.function?.name) got[d.index]!.name = d.function.name;
          got[d.index]!.args += d.function?.arguments ?? '';
        }
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(finish, 'tool_calls');
      assert.equal(content, '');
      const fn = (choice.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function;
      assert.deepEqual(got.map((g) => [g.name, g.args]), [[fn.name, fn.arguments]]);
      assert.match(got[0]!.id!, /^call_/);
    }
    const named = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'Add' }], tools, tool_choice: { type: 'function', function: { name: 'add' } }, temperature: 1, seed: 5 });
    checkCall(named.choices[0]!.message.tool_calls![0]!, ['add']);
  });

  test("tool_choice 'auto' with a random model: its text comes back as content (never a crash), the same streamed", async () => {
    const req = { model: MODEL_ID, messages: [{ role: 'user' as const, content: 'Hi' }], tools, temperature: 1, seed: 3, max_tokens: 24 };
    const r = await client.chat.completions.create(req);
    const stream = await client.chat.completions.create({ ...req, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(r.choices[0]!.message.tool_calls, undefined);
    assert.equal(text, r.choices[0]!.message.content);
  });

  test('bad tool requests are 400s naming the field', async () => {
    const msg = [{ role: 'user' as const, content: 'x' }];
    await assert.rejects(client.chat.completions.create({ model: MODEL_ID, messages: msg, tools, tool_choice: { type: 'function', function: { name: 'nope' } } }), (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === 'tool_choice.function.name');
    const bad = [{ type: 'function' as const, function: { name: 'f', parameters: { type: 'object', properties: { s: { type: 'number', multipleOf: 2 } } } } }];
    await assert.rejects(client.chat.completions.create({ model: MODEL_ID, messages: msg, tools: bad, tool_choice: 'required' }), (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === 'tools[0].function.parameters.properties.s.multipleOf');
    await assert.rejects(
      client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'add', arguments: 'not json' } }] }] }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && /arguments/.test(e.message),
    );
  });

  test('AI SDK: a forced call runs the tool with valid input, its result is fed back and the conversation continues; streamText with tools', async () => {
    const seen: unknown[] = [];
    const weather = tool({
      description: 'Weather forecast',
      inputSchema: z.object({ city: z.enum(['Paris', 'Oslo', 'Lima']), days: z.number().int().min(1).max(7) }),
      execute: async (input) => {
        seen.push(input);
        return { tempC: 21, sky: 'clear' };
      },
    });
    const r = await generateText({
      model: provider.chatModel(MODEL_ID),
      tools: { weather },
      toolChoice: 'required',
      // Step 2 gets the tool result and answers in text.
      prepareStep: ({ stepNumber }) => (stepNumber > 0 ? { toolChoice: 'none' } : undefined),
      stopWhen: stepCountIs(2),
      temperature: 1,
      seed: 7,
      maxOutputTokens: 160,
      prompt: 'What is the weather in Lima?',
    });
    assert.equal(r.steps.length, 2);
    assert.equal(r.steps[0]!.finishReason, 'tool-calls');
    assert.equal(r.steps[0]!.toolCalls.length, 1);
    assert.equal(seen.length, 1);
    assert.deepEqual(r.steps[0]!.toolResults[0]!.output, { tempC: 21, sky: 'clear' });
    assert.ok(['stop', 'length'].includes(r.steps[1]!.finishReason), r.steps[1]!.finishReason);
    assert.ok(r.steps[1]!.text.length > 0);

    const s = streamText({ model: provider.chatModel(MODEL_ID), tools: { weather }, toolChoice: 'required', temperature: 1, seed: 8, maxOutputTokens: 200, prompt: 'Weather in Paris?' });
    const calls: unknown[] = [];
    for await (const part of s.fullStream) {
      if (part.type === 'tool-call') calls.push(part.input);
      if (part.type === 'error') throw part.error;
    }
    assert.equal(calls.length, 1);
    assert.ok(z.object({ city: z.enum(['Paris', 'Oslo', 'Lima']), days: z.number().int().min(1).max(7) }).safeParse(calls[0]).success, JSON.stringify(calls[0]));
  });
});
