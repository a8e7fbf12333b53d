import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatTemplate, ChatTemplateError } from './chat-template.js';
import { loadVocabSource } from '../tokenizer/vocab-sources.js';

const msgs = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi' },
];

test('no template: ChatML fallback, rendered as written by hand', () => {
  const t = new ChatTemplate(undefined);
  assert.equal(t.source, 'chatml-fallback');
  assert.equal(
    t.render(msgs),
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(t.render(msgs, { addGenerationPrompt: false }).endsWith('Hi<|im_end|>\n'), true);
});

test('a model template gets bos/eos tokens and the generation prompt', () => {
  // A Llama-3-style template, shortened.
  const src =
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
  const t = new ChatTemplate(src, { bosToken: '<|begin_of_text|>', eosToken: '<|eot_id|>' });
  assert.equal(t.source, 'model');
  assert.equal(
    t.render(msgs),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
  );
});

test('raise_exception in a template and broken templates are ChatTemplateErrors', () => {
  const strict = new ChatTemplate(
    "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok",
  );
  assert.throws(() => strict.render(msgs), (e: unknown) => e instanceof ChatTemplateError && /first message/.test((e as Error).message));
  assert.equal(strict.render([{ role: 'user', content: 'x' }]), 'ok');
  assert.throws(() => new ChatTemplate('{% for m in messages %}'), ChatTemplateError);
  assert.throws(() => new ChatTemplate(undefined).render([{ role: 'user', content: 3 as unknown as string }]), ChatTemplateError);
});

test('jinja shim: `mapping | string` is Python\'s repr (str of a dict), nested values included', () => {
  const t = new ChatTemplate('{{ tools[0] | string }}');
  const m = { role: 'user', content: 'a\nb', n: 2, x: 0.5, ok: true, none: null, list: ['q', { k: "it's" }] };
  assert.equal(
    t.renderWithTools([{ role: 'user', content: '' }], [m]),
    // what Python prints for the same dict (hand-written)
    "{'role': 'user', 'content': 'a\\nb', 'n': 2, 'x': 0.5, 'ok': True, 'none': None, 'list': ['q', {'k': \"it's\"}]}",
  );
});

test('SmolLM3\'s template renders tools (each definition as Python prints it) and Phi-3.5\'s its turns', () => {
  const smol = loadVocabSource('smollm3');
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
  const out = new ChatTemplate(smol.chatTemplate).renderWithTools([{ role: 'user', content: 'Weather in Paris?' }], tools);
  assert.ok(
    out.includes("{'type': 'function', 'function': {'name': 'get_weather', 'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']}}}\n"),
    out,
  );
  assert.ok(out.includes('<|im_start|>user\nWeather in Paris?<|im_end|>\n') && out.endsWith('<|im_start|>assistant\n<think>\n'), out); // reasoning mode /think by default
  const phi = loadVocabSource('phi3');
  const t = new ChatTemplate(phi.chatTemplate, { eosToken: phi.tokens[phi.eosId] });
  const turns = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }, { role: 'user', content: 'Bye' }];
  assert.equal(t.render(turns), '<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n');
  assert.equal(t.render(turns.slice(1, 3), { addGenerationPrompt: false }), '<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n<|endoftext|>');
});
