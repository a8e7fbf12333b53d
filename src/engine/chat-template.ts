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

/** One chat message. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string;
}

/** ChatML, used when the model file has no template. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

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

  constructor(
    text: string | undefined,
    private readonly specialTokens: { bosToken?: string; eosToken?: string } = {},
  ) {
    this.source = text && text.trim() !== '' ? 'model' : 'chatml-fallback';
    try {
      this.template = new Template(this.source === 'model' ? text! : CHATML_TEMPLATE);
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
    try {
      return this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
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
