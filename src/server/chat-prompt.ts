/**
 * Chat messages -> prompt tokens: the model's own chat template (compiled once per server), and
 * BOS as the file says. Shared by /v1/chat/completions and /tokenize, so both count the same.
 */
import { badRequest } from './errors.js';
import { ChatTemplate, ChatTemplateError, type ToolChatMessage } from '../engine/chat-template.js';
import type { ChatCompletionRequest, ToolDefinition } from './schemas.js';
import { detectToolFormat, genericToolMessages, type ToolCallFormat } from './tool-calls.js';
import type { ServableModel } from './server.js';

/** Renders and tokenizes chat messages for one model (the template is compiled on first use). */
export class ChatPrompter {
  private template: ChatTemplate | undefined;
  private bosText: string | undefined;

  /** The model's compiled template (ChatML when the file has none). */
  templateOf(m: ServableModel): ChatTemplate {
    if (!this.template) {
      this.bosText = m.info.bosId != null ? m.detokenize([m.info.bosId]) : undefined;
      const eosText = m.info.eosId != null ? m.detokenize([m.info.eosId]) : undefined;
      this.template = new ChatTemplate(m.info.chatTemplate ?? undefined, { bosToken: this.bosText, eosToken: eosText });
    }
    return this.template;
  }

  /** The tool-call syntax of the model's template (`native` false: the template knows no tools). */
  toolFormat(m: ServableModel): { format: ToolCallFormat; native: boolean } {
    return detectToolFormat(this.templateOf(m).text);
  }

  /**
   * The prompt tokens of chat messages. With `tools`, the tool list and the messages' tool fields
   * are rendered by the model's template when it knows tools, else in the generic `<tool_call>`
   * syntax (tool-calls.ts); `suffix` is appended after the generation prompt (a forced call's opener).
   */
  promptTokens(
    m: ServableModel,
    bodyMessages: ChatCompletionRequest['messages'],
    opts: { addGenerationPrompt: boolean } = { addGenerationPrompt: true },
    tools: readonly ToolDefinition[] = [],
    suffix = '',
  ): Uint32Array {
    const messages: ToolChatMessage[] = bodyMessages.map((msg, i) => {
      if (msg.content == null && !(msg.role === 'assistant' && msg.tool_calls?.length)) {
        throw badRequest(`Missing required parameter: 'messages[${i}].content' (only an assistant message with tool_calls may omit it).`, `messages[${i}].content`, 'missing_required_parameter');
      }
      const content = msg.content == null ? null : typeof msg.content === 'string' ? msg.content : joinParts(msg.content, `messages[${i}].content`);
      return { ...msg, role: msg.role === 'developer' ? 'system' : msg.role, content };
    });
    const template = this.templateOf(m);
    const withTools = tools.length > 0 || messages.some((msg) => msg.tool_calls || msg.role === 'tool');
    let text: string;
    try {
      if (!withTools) text = template.render(messages.map((msg) => ({ role: msg.role, content: msg.content ?? '' })), opts);
      else if (detectToolFormat(template.text).native) text = template.renderWithTools(messages, tools, opts);
      else text = template.render(genericToolMessages(messages, tools), opts);
    } catch (err) {
      if (err instanceof ChatTemplateError) throw badRequest(err.message, 'messages', 'chat_template_error');
      throw err;
    }
    return this.tokenizeRendered(m, text + suffix);
  }

  /** Tokenizes rendered template text with special tokens on. */
  tokenizeRendered(m: ServableModel, text: string): Uint32Array {
    this.templateOf(m);
    // A template that writes the BOS text itself must not get a second BOS; otherwise the
    // file's tokenizer.ggml.add_bos_token decides, as in llama.cpp (Qwen2 adds none).
    return this.bosText && text.startsWith(this.bosText) ? m.tokenize(text, { addBos: false, special: true }) : m.tokenize(text, { special: true });
  }
}

function joinParts(parts: Array<{ type: 'text'; text: string }>, param: string): string {
  if (!Array.isArray(parts)) throw badRequest(`'${param}' must be a string or an array of text parts.`, param);
  return parts.map((p) => p.text).join('');
}
