/**
 * Tool-call syntaxes, checked on the text the models' own chat templates write for an assistant
 * turn that calls tools (Qwen2.5 / Hermes, Llama 3.2, Mistral v0.3): what a model trained on its
 * template generates is parsed back into the same calls; cut or broken calls come back as plain
 * content; the streaming splitter gives the same result however the text is chunked.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatTemplate, type ToolChatMessage } from '../engine/chat-template.js';
import { LLAMA32_CHAT_TEMPLATE, QWEN25_CHAT_TEMPLATE, TINYLLAMA_CHAT_TEMPLATE } from '../tokenizer/chat-templates.js';
import { detectToolFormat, genericToolMessages, parseToolCalls, planTools, ToolCallStream, type ToolCallFormat } from './tool-calls.js';
import type { ToolDefinition } from './schemas.js';

/** The assistant tool-call part of mistralai/Mistral-7B-Instruct-v0.3's template (tools list, [TOOL_CALLS] turns). */
const MISTRAL_TOOLS_TEMPLATE =
  '{{- bos_token }}{%- for message in messages %}' +
  "{%- if message['role'] == 'user' %}{%- if tools is defined and loop.last %}{{- '[AVAILABLE_TOOLS] ' + tools|tojson + '[/AVAILABLE_TOOLS]' }}{%- endif %}" +
  "{{- '[INST] ' + message['content'] + '[/INST]' }}" +
  "{%- elif message.tool_calls is defined %}{{- '[TOOL_CALLS] [' }}{%- for tool_call in message.tool_calls %}" +
  '{{- tool_call.function|tojson }}{%- if not loop.last %}{{- ", " }}{%- endif %}{%- endfor %}' +
  "{{- ']' + eos_token }}{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}" +
  "{%- elif message['role'] == 'tool' %}{{- '[TOOL_RESULTS] {\"content\": ' + message['content'] + '}[/TOOL_RESULTS]' }}{%- endif %}{%- endfor %}";

const tools: ToolDefinition[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] } } },
  { type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] } } },
];
const calls = [
  { id: 'call_1', type: 'function' as const, function: { name: 'get_weather', arguments: '{"city":"Paris \\"16e\\"","days":3}' } },
  { id: 'call_2', type: 'function' as const, function: { name: 'add', arguments: '{"a":1.5,"b":-2}' } },
];

const cases: Array<{ name: string; template: string; format: ToolCallFormat; eot: string; calls: typeof calls }> = [
  { name: 'Qwen2.5 <tool_call>', template: QWEN25_CHAT_TEMPLATE, format: 'hermes', eot: '<|im_end|>\n', calls },
  { name: 'Llama 3.2 JSON', template: LLAMA32_CHAT_TEMPLATE, format: 'llama3', eot: '<|eot_id|>', calls: calls.slice(0, 1) },
  { name: 'Mistral [TOOL_CALLS]', template: MISTRAL_TOOLS_TEMPLATE, format: 'mistral', eot: '</s>', calls },
];

/** What a model trained on `template` generates for an assistant turn with these calls. */
function assistantText(template: string, eot: string, turnCalls: typeof calls): string {
  const t = new ChatTemplate(template, { bosToken: '<s>', eosToken: '</s>' });
  const user: ToolChatMessage[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
  // The tool list reaches the prompt (Mistral puts it before the last user message, so the turn
  // itself is cut from renderings without it).
  const withTools = t.renderWithTools(user, tools, { addGenerationPrompt: true });
  for (const tool of tools) assert.ok(withTools.includes(`"${tool.function.name}"`), withTools);
  const prompt = t.renderWithTools(user, undefined, { addGenerationPrompt: true });
  const full = t.renderWithTools([...user, { role: 'assistant', content: null, tool_calls: turnCalls }], undefined, { addGenerationPrompt: false });
  assert.ok(full.startsWith(prompt), `the template's prompt is not a prefix of the rendered turn:\n${prompt}\n---\n${full}`);
  const turn = full.slice(prompt.length);
  assert.ok(turn.endsWith(eot), JSON.stringify(turn));
  return turn.slice(0, turn.length - eot.length);
}

const sameCalls = (got: Array<{ function: { name: string; arguments: string } }>, want: typeof calls): void => {
  assert.deepEqual(
    got.map((c) => ({ name: c.function.name, args: JSON.parse(c.function.arguments) as unknown })),
    want.map((c) => ({ name: c.function.name, args: JSON.parse(c.function.arguments) as unknown })),
  );
};

describe('tool calls in the models\' own syntaxes', () => {
  for (const c of cases) {
    test(`${c.name}: detected from the template, parsed from its rendered turn, broken output is content`, () => {
      assert.deepEqual(detectToolFormat(c.template), { format: c.format, native: true });
      const text = assistantText(c.template, c.eot, c.calls);
      const parsed = parseToolCalls(text, c.format);
      sameCalls(parsed.toolCalls, c.calls);
      assert.equal(parsed.content, null);
      for (const call of parsed.toolCalls) assert.match(call.id, /^call_[0-9a-f]{24}$/);
      // Cut anywhere inside the JSON, or with a broken body: plain content, never a throw.
      const open = text.indexOf('{');
      for (const cut of [open + 1, Math.floor((open + text.length) / 2), text.length - 2]) {
        const broken = text.slice(0, cut);
        const p = parseToolCalls(broken, c.format);
        assert.deepEqual(p, { content: broken, toolCalls: [] }, `cut at ${cut}`);
      }
      const garbled = text.replace('"name"', '"nme"');
      assert.deepEqual(parseToolCalls(garbled, c.format), { content: garbled, toolCalls: [] });
      // Streaming, in pieces of every size from 1 to 7 characters: no call text leaks as content.
      for (let size = 1; size <= 7; size++) {
        const s = new ToolCallStream(c.format);
        let content = '';
        for (let i = 0; i < text.length; i += size) content += s.push(text.slice(i, i + size));
        const end = s.finish();
        assert.equal(content + end.content, '', `piece size ${size}`);
        sameCalls(end.toolCalls, c.calls);
      }
    });
  }

  test('plain replies stream through unchanged; a reply that mentions a call opener midway keeps its text', () => {
    for (const format of ['hermes', 'llama3', 'mistral'] as const) {
      for (const text of ['Hello there, no tools needed.', 'Use <tool_ to start a call [TOOL_ and { braces }', '']) {
        const s = new ToolCallStream(format);
        let out = '';
        for (const ch of text) out += s.push(ch);
        const end = s.finish();
        assert.equal(out + end.content, text, `${format}: ${JSON.stringify(text)}`);
        assert.equal(end.toolCalls.length, 0);
      }
    }
  });

  test('a template without tools: the tool list joins the system message, calls and results render as text', () => {
    assert.deepEqual(detectToolFormat(TINYLLAMA_CHAT_TEMPLATE), { format: 'hermes', native: false });
    const messages: ToolChatMessage[] = [
      { role: 'user', content: 'Weather?' },
      { role: 'assistant', content: null, tool_calls: calls.slice(0, 1) },
      { role: 'tool', content: '{"temp": 21}', tool_call_id: 'call_1' },
    ];
    const plain = genericToolMessages(messages, tools);
    assert.equal(plain[0]!.role, 'system');
    assert.ok(plain[0]!.content.includes('"name":"get_weather"') && plain[0]!.content.includes('"name":"add"'));
    const assistant = plain.find((m) => m.role === 'assistant')!;
    sameCalls(parseToolCalls(assistant.content, 'hermes').toolCalls, calls.slice(0, 1));
    assert.equal(plain[plain.length - 1]!.content, '<tool_response>\n{"temp": 21}\n</tool_response>');
    const rendered = new ChatTemplate(TINYLLAMA_CHAT_TEMPLATE, { eosToken: '</s>' }).render(plain);
    assert.ok(rendered.includes('<tool_response>') && rendered.trimEnd().endsWith('<|assistant|>'), rendered);
  });

  test('planTools: choices, a named tool that does not exist and an unenforceable schema are 400s naming the field', () => {
    assert.equal(planTools({ tools: [] }, 'hermes'), null);
    assert.deepEqual(planTools({ tools, tool_choice: 'none' }, 'hermes')?.tools, []);
    const auto = planTools({ tools }, 'hermes')!;
    assert.equal(auto.forced, false);
    assert.equal(auto.constraint, null);
    const named = planTools({ tools, tool_choice: { type: 'function', function: { name: 'add' } } }, 'hermes')!;
    assert.equal(named.prefix, '<tool_call>\n');
    assert.deepEqual((named.constraint as { schema: { properties: { name: unknown } } }).schema.properties.name, { const: 'add' });
    assert.throws(() => planTools({ tools, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'hermes'), (e: { param?: string }) => e.param === 'tool_choice.function.name');
    assert.throws(() => planTools({ tool_choice: 'required' }, 'hermes'), (e: { param?: string }) => e.param === 'tool_choice');
    const bad: ToolDefinition[] = [tools[0]!, { type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'number', multipleOf: 2 } } } } }];
    assert.throws(() => planTools({ tools: bad, tool_choice: 'required' }, 'hermes'), (e: { param?: string }) => e.param === 'tools[1].function.parameters.properties.x.multipleOf');
  });
});
