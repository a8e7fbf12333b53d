/**
 * OpenAI's logprobs shapes from the engine's per-token log-probabilities:
 *   chat:        { content: [{ token, logprob, bytes, top_logprobs: [{ token, logprob, bytes }] }], refusal: null }
 *   completions: { tokens, token_logprobs, top_logprobs: [{ token: logprob }], text_offset }
 * A token's text is its piece as it continues the output (a SentencePiece space kept); `bytes` are
 * that text's UTF-8 bytes (a token holding part of a character shows as U+FFFD).
 */
import type { TokenLogprob } from '../engine/sampling.js';
import type { ServableModel } from './server.js';

type Detokenize = ServableModel['detokenize'];

const piece = (detokenize: Detokenize, token: number): string => detokenize([token], { continuation: true });

function entry(detokenize: Detokenize, token: number, logprob: number): { token: string; logprob: number; bytes: number[] } {
  const text = piece(detokenize, token);
  return { token: text, logprob, bytes: Array.from(Buffer.from(text, 'utf8')) };
}

/** The chat completion's `logprobs.content` entries. */
export function chatLogprobContent(detokenize: Detokenize, lps: readonly TokenLogprob[]): unknown[] {
  return lps.map((lp) => ({ ...entry(detokenize, lp.token, lp.logprob), top_logprobs: lp.top.map((t) => entry(detokenize, t.token, t.logprob)) }));
}

/** The legacy completion's `logprobs` object; `offset`: characters of text before these tokens. */
export function completionLogprobs(detokenize: Detokenize, lps: readonly TokenLogprob[], offset = 0): Record<string, unknown> {
  const tokens: string[] = [];
  const textOffset: number[] = [];
  let at = offset;
  for (const lp of lps) {
    const text = piece(detokenize, lp.token);
    tokens.push(text);
    textOffset.push(at);
    at += text.length;
  }
  return {
    tokens,
    token_logprobs: lps.map((lp) => lp.logprob),
    top_logprobs: lps.map((lp) => Object.fromEntries(lp.top.map((t) => [piece(detokenize, t.token), t.logprob]))),
    text_offset: textOffset,
  };
}
