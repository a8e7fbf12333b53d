import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatTemplate, ChatTemplateError } from './chat-template.js';

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
