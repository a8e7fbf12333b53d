/**
 * A multi-turn chat over a loaded model. Each turn renders the whole history with the
 * model's chat template and generates from it; the engine's prefix cache finds the previous
 * turns' KV (prompt and reply) and only the new text is processed, so later turns start
 * about as fast as the first.
 */
import { ChatTemplate, type ChatMessage } from './chat-template.js';
import type { GenerateChunk, GenerateOptions, GenerateResult, Model } from './model.js';

export interface ChatSessionOptions {
  /** A system message that opens the conversation. */
  systemPrompt?: string;
  /** Override the model's template (Jinja text). */
  chatTemplate?: string;
}

/** A conversation with a model; keeps the history, reuses the KV of earlier turns. */
export class ChatSession {
  readonly messages: ChatMessage[] = [];
  private readonly template: ChatTemplate;
  private readonly bosText: string | undefined;
  private busy = false;
  /** The last finished turn: the text its prompt and reply stand for, and their exact tokens. */
  private last: { text: string; tokens: Uint32Array } | null = null;

  constructor(
    readonly model: Model,
    options: ChatSessionOptions = {},
  ) {
    const info = model.info;
    this.bosText = info.bosId != null ? model.detokenize([info.bosId]) : undefined;
    const eosText = info.eosId != null ? model.detokenize([info.eosId]) : undefined;
    this.template = new ChatTemplate(options.chatTemplate ?? info.chatTemplate ?? undefined, { bosToken: this.bosText, eosToken: eosText });
    if (options.systemPrompt) this.messages.push({ role: 'system', content: options.systemPrompt });
  }

  /** Which template renders the conversation ('model' or the ChatML fallback). */
  get templateSource(): 'model' | 'chatml-fallback' {
    return this.template.source;
  }

  /** The prompt tokens the next turn would be generated from (for tests and tools). */
  promptTokens(messages: readonly ChatMessage[] = this.messages): Uint32Array {
    const text = this.template.render(messages);
    // NOTE: continue from the previous turn's exact tokens (its prompt and the reply as
    // generated) when the new prompt text extends that turn's text and the new part opens
    // with a special token (an end-of-turn marker): the KV of the whole previous turn is then
    // reused. Retokenizing the history instead loses the reply wherever generated tokens do
    // not round-trip through text (llama-cli and ollama keep the tokens too).
    if (this.last && text.startsWith(this.last.text) && text.length > this.last.text.length) {
      const suffix = text.slice(this.last.text.length);
      const asSpecial = this.model.tokenize(suffix, { addBos: false, special: true });
      const asText = this.model.tokenize(suffix, { addBos: false, special: false });
      if (asSpecial.length > 0 && asSpecial[0] !== asText[0]) {
        const out = new Uint32Array(this.last.tokens.length + asSpecial.length);
        out.set(this.last.tokens);
        out.set(asSpecial, this.last.tokens.length);
        return out;
      }
    }
    // A template that writes the BOS text itself must not get a second BOS; otherwise the
    // file's tokenizer.ggml.add_bos_token decides, as in llama.cpp (Qwen2 adds none).
    if (this.bosText && text.startsWith(this.bosText)) return this.model.tokenize(text, { addBos: false, special: true });
    return this.model.tokenize(text, { special: true });
  }

  /**
   * Sends a user message; streams the reply. The reply joins the history when it ends
   * (an aborted turn leaves the history as it was before the user message).
   */
  send(text: string, options: GenerateOptions = {}): AsyncIterable<GenerateChunk> & { result: Promise<GenerateResult> } {
    if (this.busy) throw new Error('ChatSession.send: the previous turn has not finished');
    this.busy = true;
    const turn: ChatMessage[] = [...this.messages, { role: 'user', content: text }];
    let gen: ReturnType<Model['generate']>;
    let prompt: Uint32Array;
    try {
      prompt = this.promptTokens(turn);
      gen = this.model.generate(prompt, options);
    } catch (err) {
      this.busy = false;
      throw err;
    }
    const result = gen.result.then(
      (r) => {
        this.busy = false;
        if (r.finishReason !== 'abort') {
          this.messages.length = 0;
          this.messages.push(...turn, { role: 'assistant', content: r.text });
          // Tokens stand for exactly the text only when no stop string was cut off.
          const exact = r.finishReason === 'eog' || r.finishReason === 'length';
          if (exact) {
            const tokens = new Uint32Array(prompt.length + r.tokens.length);
            tokens.set(prompt);
            tokens.set(r.tokens, prompt.length);
            this.last = { text: this.template.render(turn) + r.text, tokens };
          } else this.last = null;
        }
        return r;
      },
      (err) => {
        this.busy = false;
        throw err;
      },
    );
    // A caller that only iterates sees a failure there; do not also crash on this promise.
    result.catch(() => {});
    return { [Symbol.asyncIterator]: () => gen[Symbol.asyncIterator](), result };
  }

  /** Sends a message and waits for the whole reply. */
  async ask(text: string, options: GenerateOptions = {}): Promise<GenerateResult> {
    const g = this.send(text, options);
    return g.result;
  }
}
