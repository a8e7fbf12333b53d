// The shipped chat templates render the prompt formats the model cards document.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Template } from '@huggingface/jinja';
import { LLAMA2_CHAT_TEMPLATE, LLAMA32_CHAT_TEMPLATE, QWEN25_CHAT_TEMPLATE, TINYLLAMA_CHAT_TEMPLATE } from './chat-templates.js';

const chat = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: 'Bye' },
];
const render = (template: string, vars: Record<string, unknown>) => new Template(template).render(vars);

test('Llama 2 chat: [INST] turns with <<SYS>> in the first one', () => {
  assert.equal(
    render(LLAMA2_CHAT_TEMPLATE, { messages: chat, bos_token: '<s>', eos_token: '</s>' }),
    '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]',
  );
});

test('TinyLlama chat: Zephyr format', () => {
  assert.equal(
    render(TINYLLAMA_CHAT_TEMPLATE, { messages: chat, eos_token: '</s>', add_generation_prompt: true }),
    '<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nBye</s>\n<|assistant|>\n',
  );
});

test('Llama 3.2 chat: header ids, dated system block, eot after each turn', () => {
  assert.equal(
    render(LLAMA32_CHAT_TEMPLATE, { messages: chat, bos_token: '<|begin_of_text|>', add_generation_prompt: true, date_string: '26 Jul 2024' }),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
  );
});

test('Qwen2.5 chat: ChatML with the default system prompt', () => {
  assert.equal(
    render(QWEN25_CHAT_TEMPLATE, { messages: [{ role: 'user', content: 'Hi' }], add_generation_prompt: true }),
    '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(
    render(QWEN25_CHAT_TEMPLATE, { messages: chat, add_generation_prompt: false }),
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n',
  );
});
