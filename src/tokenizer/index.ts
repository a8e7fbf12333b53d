/**
 * Tokenizers built from GGUF metadata (llama.cpp's vocabularies: SentencePiece 'llama' and
 * byte-level BPE 'gpt2'), plus the real vocabularies flexinfer can write into files.
 */
import { TokenizerImpl, type Tokenizer } from './tokenizer.js';
import { readVocabData } from './vocab.js';
import { vocabSourceMetadata, type VocabSource } from './vocab-sources.js';

export type { Tokenizer, EncodeOptions, DecodeOptions } from './tokenizer.js';
export type { IncrementalDecoder } from './decoder.js';
export { TokenType } from './vocab.js';
export { loadVocabSource, vocabSourceMetadata, LLAMA3_SPECIAL_TOKENS, type VocabSource, type VocabSourceName } from './vocab-sources.js';
export * from './chat-templates.js';
export { SUPPORTED_PRE_TOKENIZERS } from './pre-tokenizer.js';

/** A tokenizer from GGUF metadata read through `get(key)` (keys `tokenizer.ggml.*`, `tokenizer.chat_template`). */
export function tokenizerFromMetadata(get: (key: string) => unknown): Tokenizer {
  return new TokenizerImpl(readVocabData(get));
}

/** A tokenizer from an open GGUF file (anything with `get(key)` for metadata values). */
export function tokenizerFromGguf(file: { get(key: string): unknown }): Tokenizer {
  return tokenizerFromMetadata((key) => file.get(key));
}

/** A tokenizer for a shipped vocabulary, exactly as it would read back from a GGUF file. */
export function tokenizerFromVocabSource(src: VocabSource): Tokenizer {
  const meta = vocabSourceMetadata(src);
  return tokenizerFromMetadata((key) => meta.get(key));
}
