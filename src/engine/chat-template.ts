/**
 * Chat templates: turns a list of messages into the prompt text a model was trained on,
 * by rendering the GGUF's `tokenizer.chat_template` (Jinja) with @huggingface/jinja.
 *
 * NOTE: a model without a template gets ChatML (`<|im_start|>role\n...<|im_end|>`), the
 * same fallback llama.cpp's server uses; `chatTemplateSource` says which one was used so
 * the CLI and server can tell the user.
 */
import { Template } from '@huggingface/jinja';
import { FlexinferError } from '../errors.js';
import { installJinjaShim } from './jinja-shim.js';

installJinjaShim(); // `mapping | string` (SmolLM3's tool list); see jinja-shim.ts

/** One chat message. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string;
}

/** ChatML, used when the model file has no template. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** A chat message with OpenAI's tool fields (assistant `tool_calls`, `tool` results). */
export interface ToolChatMessage {
  role: string;
  /** null for an assistant message that only calls tools. */
  content: string | null;
  /** Calls an assistant made; `arguments` as the JSON text OpenAI sends or as an object. */
  tool_calls?: Array<{ id?: string; type?: 'function'; function: { name: string; arguments: string | object } }>;
  /** The call a `tool` message answers. */
  tool_call_id?: string;
  name?: string;
}

/** A chat template that cannot be parsed or rendered. */
export class ChatTemplateError extends FlexinferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`chat template: ${message}`, options);
  }
}

/** A compiled chat template. */
export class ChatTemplate {
  private readonly template: Template;
  /** 'model' when the template came from the file, 'chatml-fallback' otherwise. */
  readonly source: 'model' | 'chatml-fallback';
  /** The Jinja text that renders (the model's, or ChatML). */
  readonly text: string;

  constructor(
    text: string | undefined,
    private readonly specialTokens: { bosToken?: string; eosToken?: string } = {},
  ) {
    this.source = text && text.trim() !== '' ? 'model' : 'chatml-fallback';
    this.text = this.source === 'model' ? text! : CHATML_TEMPLATE;
    try {
      this.template = new Template(this.text);
    } catch (err) {
      throw new ChatTemplateError(`the model's template does not parse: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Renders messages. With `addGenerationPrompt` (default true) the text ends where the
   * assistant's reply begins.
   */
  render(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    for (const [i, m] of messages.entries()) {
      if (typeof m?.role !== 'string' || typeof m?.content !== 'string') {
        throw new ChatTemplateError(`message ${i} needs a string 'role' and a string 'content'`);
      }
    }
    return this.renderContext(messages.map((m) => ({ role: m.role, content: m.content })), undefined, options);
  }

  /**
   * Renders messages with OpenAI's tool fields and a `tools` list (OpenAI tool definitions), for a
   * template that renders tools itself (Qwen2.5, Llama 3.x, Mistral, Hermes). Tool-call arguments
   * reach the template as objects (templates apply `tojson` to them), as in transformers.
   */
  renderWithTools(messages: readonly ToolChatMessage[], tools: readonly object[] | undefined, options: { addGenerationPrompt?: boolean } = {}): string {
    const plain = messages.map((m, i) => {
      const out: Record<string, unknown> = { role: m.role, content: m.content ?? '' };
      // Only present keys: templates test `'tool_calls' in message`.
      if (m.tool_calls) {
        out.tool_calls = m.tool_calls.map((c, j) => ({
          id: c.id,
          type: 'function',
          function: { name: c.function.name, arguments: argumentsObject(c.function.arguments, `message ${i} tool_calls[${j}]`) },
        }));
      }
      if (m.tool_call_id !== undefined) out.tool_call_id = m.tool_call_id;
      if (m.name !== undefined) out.name = m.name;
      return out;
    });
    return this.renderContext(plain, tools && tools.length > 0 ? tools : undefined, options);
  }

  private renderContext(messages: object[], tools: readonly object[] | undefined, options: { addGenerationPrompt?: boolean }): string {
    try {
      return this.template.render({
        messages,
        ...(tools ? { tools } : {}),
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.specialTokens.bosToken ?? '',
        eos_token: this.specialTokens.eosToken ?? '',
      });
    } catch (err) {
      // Includes the template's own raise_exception('...') (built into @huggingface/jinja).
      throw new ChatTemplateError(`rendering failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Tool-call arguments as an object: OpenAI sends a JSON string, templates want a mapping. */
export function argumentsObject(args: string | object, where: string): object {
  if (typeof args !== 'string') return args;
  try {
    const v: unknown = JSON.parse(args);
    if (typeof v === 'object' && v !== null) return v;
  } catch {
    // fall through
  }
  throw new ChatTemplateError(`${where}: 'arguments' must be a JSON object, got ${JSON.stringify(args.slice(0, 80))}`);
}
