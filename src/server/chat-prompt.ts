/**
 * Chat messages -> prompt tokens: the model's own chat template (compiled once per server), and
 * BOS as the file says. Shared by /v1/chat/completions and /tokenize, so both count the same.
 */
import { badRequest } from './errors.js';
import { ChatTemplate, ChatTemplateError, type ChatMessage } from '../engine/chat-template.js';
import type { ChatCompletionRequest } from './schemas.js';
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

  /** The prompt tokens of chat messages. */
  promptTokens(m: ServableModel, bodyMessages: ChatCompletionRequest['messages'], opts: { addGenerationPrompt: boolean } = { addGenerationPrompt: true }): Uint32Array {
    const messages: ChatMessage[] = bodyMessages.map((msg, i) => ({
      role: msg.role === 'developer' ? 'system' : msg.role,
      content: typeof msg.content === 'string' ? msg.content : joinParts(msg.content, `messages[${i}].content`),
    }));
    const template = this.templateOf(m);
    let text: string;
    try {
      text = template.render(messages, opts);
    } catch (err) {
      if (err instanceof ChatTemplateError) throw badRequest(err.message, 'messages', 'chat_template_error');
      throw err;
    }
    return this.tokenizeRendered(m, text);
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
