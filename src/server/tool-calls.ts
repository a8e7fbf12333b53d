/**
 * Tool calls in the models' own syntaxes: which syntax a chat template uses, how a forced call
 * is constrained, and how generated text is parsed back into OpenAI `tool_calls`.
 *
 *   hermes   Qwen2.5 / Hermes / generic:  <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>
 *   llama3   Llama 3.1-3.3 JSON:           [<|python_tag|>]{"name": ..., "parameters": {...}}
 *   mistral  Mistral:                      [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]
 *
 * A template that knows no tools gets the `hermes` syntax and the tool list in its system
 * message (as llama-server's generic format does). Text that opens a call but does not parse
 * is returned as plain content, never an error.
 */
import { randomUUID } from 'node:crypto';
import { argumentsObject, type ToolChatMessage } from '../engine/chat-template.js';
import type { ChatCompletionRequest, ToolDefinition } from './schemas.js';
import { checkGrammarSpec, type GrammarSpec } from '../grammar/engine.js';
import { UnsupportedSchemaError } from '../errors.js';
import { badRequest } from './errors.js';

export type ToolCallFormat = 'hermes' | 'llama3' | 'mistral';


/** An OpenAI tool call (arguments as a JSON string). */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** The syntax a chat template uses for tool calls; `native` false: it does not render tools. */
export function detectToolFormat(template: string | null | undefined): { format: ToolCallFormat; native: boolean } {
  const t = template ?? '';
  if (t.includes('[TOOL_CALLS]')) return { format: 'mistral', native: true };
  if (t.includes('<tool_call>')) return { format: 'hermes', native: true };
  if (t.includes('<|python_tag|>') || (t.includes('<|start_header_id|>') && /\btools\b/.test(t))) return { format: 'llama3', native: true };
  return { format: 'hermes', native: false };
}

/** System text that describes the tools to a template without tool support. */
export function genericToolPrompt(tools: readonly ToolDefinition[]): string {
  const list = tools.map((t) => JSON.stringify(t.function)).join('\n');
  return (
    'You can call functions. The available functions, one JSON object each:\n' +
    `${list}\n` +
    'To call one, reply with <tool_call>\n{"name": <function name>, "arguments": <arguments object>}\n</tool_call>'
  );
}

/**
 * Messages for a template that does not render tools: the tool list joins the system message,
 * assistant calls become `<tool_call>` text and tool results `<tool_response>` user text
 * (consecutive results in one message, so user/assistant turns still alternate).
 */
export function genericToolMessages(messages: readonly ToolChatMessage[], tools: readonly ToolDefinition[]): Array<{ role: string; content: string }> {
  const out: Array<{ role: string; content: string }> = [];
  if (tools.length > 0) {
    const system = genericToolPrompt(tools);
    if (messages[0]?.role === 'system') out.push({ role: 'system', content: `${messages[0].content ?? ''}\n\n${system}` });
    else out.push({ role: 'system', content: system });
  }
  for (const [i, m] of messages.entries()) {
    if (i === 0 && m.role === 'system' && tools.length > 0) continue;
    if (m.role === 'tool') {
      const text = `<tool_response>\n${m.content ?? ''}\n</tool_response>`;
      const prev = out[out.length - 1];
      if (prev?.role === 'user' && prev.content.endsWith('</tool_response>')) prev.content += `\n${text}`;
      else out.push({ role: 'user', content: text });
      continue;
    }
    let content = m.content ?? '';
    for (const [j, c] of (m.tool_calls ?? []).entries()) {
      const args = JSON.stringify(argumentsObject(c.function.arguments, `message ${i} tool_calls[${j}]`));
      content += `${content ? '\n' : ''}<tool_call>\n{"name": ${JSON.stringify(c.function.name)}, "arguments": ${args}}\n</tool_call>`;
    }
    out.push({ role: m.role, content });
  }
  return out;
}

/** What the model's text opens a forced call with (appended to the prompt), per syntax. */
export function forcedCallPrefix(format: ToolCallFormat): string {
  return format === 'hermes' ? '<tool_call>\n' : format === 'mistral' ? '[TOOL_CALLS]' : '';
}

/**
 * The constraint for a forced call (tool_choice 'required' or a named function): one call of
 * one of `tools`, its arguments valid against the tool's parameters schema.
 */
export function forcedCallGrammar(format: ToolCallFormat, tools: readonly ToolDefinition[]): GrammarSpec {
  const argsKey = format === 'llama3' ? 'parameters' : 'arguments';
  const calls = tools.map((t) => ({
    type: 'object',
    properties: { name: { const: t.function.name }, [argsKey]: t.function.parameters ?? { type: 'object' } },
    required: ['name', argsKey],
    additionalProperties: false,
  }));
  const one = calls.length === 1 ? calls[0]! : { anyOf: calls };
  const schema = format === 'mistral' ? { type: 'array', items: one, minItems: 1, maxItems: 1 } : one;
  return { type: 'json_schema', schema };
}

/** The syntaxes' openers, which streaming holds back until it knows whether a call follows. */
function openers(format: ToolCallFormat): string[] {
  return format === 'hermes' ? ['<tool_call>'] : format === 'mistral' ? ['[TOOL_CALLS]'] : ['<|python_tag|>', '{'];
}

/**
 * Splits generated text into content and tool calls. `forced`: the opener was part of the
 * prompt, so the text is the call body itself.
 */
export function parseToolCalls(text: string, format: ToolCallFormat, forced = false): { content: string | null; toolCalls: ToolCall[] } {
  const plain = { content: text, toolCalls: [] as ToolCall[] };
  if (forced) {
    const calls = callsFromJson(text.replace(/<\/tool_call>\s*$/, ''), format);
    return calls ? { content: null, toolCalls: calls } : plain;
  }
  if (format === 'hermes') {
    const re = /<tool_call>([\s\S]*?)(?:<\/tool_call>|$)/g;
    const first = text.indexOf('<tool_call>');
    if (first < 0) return plain;
    const calls: ToolCall[] = [];
    for (const m of text.matchAll(re)) {
      const c = callsFromJson(m[1]!, format);
      if (!c) return plain;
      calls.push(...c);
    }
    const before = text.slice(0, first).trim();
    return { content: before === '' ? null : before, toolCalls: calls };
  }
  if (format === 'mistral') {
    const at = text.indexOf('[TOOL_CALLS]');
    if (at < 0) return plain;
    const calls = callsFromJson(text.slice(at + '[TOOL_CALLS]'.length), format);
    if (!calls) return plain;
    const before = text.slice(0, at).trim();
    return { content: before === '' ? null : before, toolCalls: calls };
  }
  // llama3: the whole reply is the call (optionally after <|python_tag|>).
  const body = text.trim().replace(/^<\|python_tag\|>/, '').replace(/<\|eom_id\|>$/, '');
  if (!body.startsWith('{')) return plain;
  const calls = callsFromJson(body, format);
  return calls ? { content: null, toolCalls: calls } : plain;
}

/** JSON call bodies -> ToolCalls, or null if the text is not a well-formed call. */
function callsFromJson(text: string, format: ToolCallFormat): ToolCall[] | null {
  let value: unknown;
  try {
    value = JSON.parse(text.trim());
  } catch {
    return null;
  }
  const items = Array.isArray(value) ? value : [value];
  if (items.length === 0) return null;
  const calls: ToolCall[] = [];
  for (const item of items) {
    if (typeof item !== 'object' || item === null) return null;
    const o = item as Record<string, unknown>;
    const args = o.arguments ?? o.parameters ?? (format === 'llama3' ? {} : undefined);
    if (typeof o.name !== 'string' || o.name === '' || args === undefined) return null;
    calls.push({ id: newCallId(), type: 'function', function: { name: o.name, arguments: typeof args === 'string' ? args : JSON.stringify(args) } });
  }
  return calls;
}

/** call_ + 24 random hex characters, as OpenAI's ids look. */
export function newCallId(): string {
  return `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
}

/**
 * Streaming: passes content through while it cannot be the start of a tool call, and holds
 * everything from a call's opener on (to be parsed when the generation ends).
 */
export class ToolCallStream {
  private held = '';
  private inCall = false;
  private sawContent = false;
  private readonly opens: string[];

  /** `forced`: the prompt opened the call, so all output is the call body. */
  constructor(
    private readonly format: ToolCallFormat,
    private readonly forced = false,
  ) {
    this.opens = openers(format);
    this.inCall = forced;
  }

  /** New text -> the part that is safe to send as content now. */
  push(text: string): string {
    if (this.inCall) {
      this.held += text;
      return '';
    }
    const all = this.held + text;
    // Llama 3 calls are the whole reply: only a reply that starts with '{' can be one.
    const candidates = this.format === 'llama3' && this.sawContent ? [] : this.opens;
    for (const o of candidates) {
      const at = this.format === 'llama3' ? (all.trimStart().startsWith(o) ? 0 : -1) : all.indexOf(o);
      if (at >= 0) {
        this.inCall = true;
        this.held = all.slice(at);
        return this.emit(all.slice(0, at));
      }
    }
    // Hold a tail that could still grow into an opener.
    let keep = 0;
    for (const o of candidates) {
      for (let n = Math.min(o.length - 1, all.length); n > keep; n--) {
        if (o.startsWith(all.slice(all.length - n))) {
          keep = n;
          break;
        }
      }
    }
    if (this.format === 'llama3' && !this.sawContent && all.trim() === '') keep = all.length;
    this.held = all.slice(all.length - keep);
    return this.emit(all.slice(0, all.length - keep));
  }

  private emit(s: string): string {
    if (s.trim() !== '') this.sawContent = true;
    return s;
  }

  /** At the end: the held text parsed into calls, or returned as content. */
  finish(): { content: string; toolCalls: ToolCall[] } {
    const held = this.held;
    this.held = '';
    if (!this.inCall) return { content: held, toolCalls: [] };
    const parsed = parseToolCalls(held, this.format, this.forced);
    return parsed.toolCalls.length > 0 ? { content: parsed.content ?? '', toolCalls: parsed.toolCalls } : { content: held, toolCalls: [] };
  }
}

/** How a chat request uses tools: what the prompt gets, how the output is read. */
export interface ToolPlan {
  format: ToolCallFormat;
  /** Tools rendered into the prompt ([] for tool_choice 'none'). */
  tools: ToolDefinition[];
  /** Read the output for calls. */
  parse: boolean;
  /** 'required' or a named function: the prompt ends with the syntax's opener and the output is one call under `constraint`. */
  forced: boolean;
  /** Appended to the rendered prompt. */
  prefix: string;
  constraint: GrammarSpec | null;
}

/**
 * The tool plan of a chat request (null without tools). A named tool that is not in `tools`, or
 * a parameters schema a forced call cannot enforce, is a 400 naming the field.
 */
export function planTools(body: Pick<ChatCompletionRequest, 'tools' | 'tool_choice' | 'response_format'>, format: ToolCallFormat): ToolPlan | null {
  const tools = body.tools ?? [];
  const choice = body.tool_choice ?? (tools.length > 0 ? 'auto' : 'none');
  if (tools.length === 0) {
    if (choice !== 'none') throw badRequest(`tool_choice ${JSON.stringify(choice)} needs a non-empty 'tools' list.`, 'tool_choice', 'invalid_value');
    return null;
  }
  if (choice === 'none') return { format, tools: [], parse: false, forced: false, prefix: '', constraint: null };
  if (choice === 'auto') return { format, tools, parse: true, forced: false, prefix: '', constraint: null };
  if (body.response_format && body.response_format.type !== 'text') {
    throw badRequest("A forced tool call (tool_choice 'required' or a named function) cannot be combined with response_format.", 'response_format', 'invalid_value');
  }
  let callable = tools;
  if (typeof choice === 'object') {
    callable = tools.filter((t) => t.function.name === choice.function.name);
    if (callable.length === 0) {
      throw badRequest(`tool_choice names the function '${choice.function.name}', which is not in 'tools' (${tools.map((t) => t.function.name).join(', ')}).`, 'tool_choice.function.name', 'invalid_value');
    }
  }
  for (const t of callable) {
    try {
      checkGrammarSpec({ type: 'json_schema', schema: t.function.parameters ?? { type: 'object' } });
    } catch (err) {
      if (err instanceof UnsupportedSchemaError) {
        const i = tools.indexOf(t);
        throw badRequest(err.message, `tools[${i}].function.parameters${err.pointer.replace(/\//g, '.')}`, 'unsupported_schema');
      }
      throw err;
    }
  }
  return { format, tools, parse: true, forced: true, prefix: forcedCallPrefix(format), constraint: forcedCallGrammar(format, callable) };
}

/** OpenAI's streaming deltas for finished calls: id, type and name first, then the arguments. */
export function toolCallDeltas(calls: readonly ToolCall[]): Array<{ tool_calls: unknown[] }> {
  const out: Array<{ tool_calls: unknown[] }> = [];
  for (const [index, c] of calls.entries()) {
    out.push({ tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] });
    out.push({ tool_calls: [{ index, function: { arguments: c.function.arguments } }] });
  }
  return out;
}
