/**
 * Pre-tokenizers of byte-level BPE vocabularies: the text is split into words by the
 * regexes llama.cpp selects from `tokenizer.ggml.pre` (llama-vocab.cpp), and BPE merges
 * run inside each word only. Splitting follows llama.cpp's unicode_regex_split: with
 * several regexes each one re-splits the pieces of the previous one, and text a regex
 * does not match stays as pieces of its own.
 */
import { TokenizerError } from '../errors.js';

/**
 * `\s` as llama.cpp sees it (its White_Space table: 0x09-0x0D, 0x20, 0x85, 0xA0, 0x1680,
 * 0x2000-0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000). JavaScript's `\s` differs: it
 * lacks U+0085 and includes U+FEFF, so the regexes below spell the class out.
 */
const WS = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const S = `[${WS}]`;
const NOT_S = `[^${WS}]`;

/** Contractions, case-insensitive as in the `(?i:...)` of the HF regexes. */
const CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

/** Llama 3 (tiktoken cl100k-style): numbers in groups of up to 3 digits. */
const LLAMA3 =
  `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*` +
  `|${S}*[\\r\\n]+|${S}+(?!${NOT_S})|${S}+`;

/** Qwen2: as Llama 3 but every digit is its own word. */
const QWEN2 =
  `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*` +
  `|${S}*[\\r\\n]+|${S}+(?!${NOT_S})|${S}+`;

/** GPT-2 (case-sensitive contractions). */
const GPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|${S}+(?!${NOT_S})`;

/** llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEFAULT: four regexes applied in turn. */
const DEFAULT = ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]'];

/** Pre-tokenizer behaviour of one `tokenizer.ggml.pre` value. */
export interface PreTokenizerSpec {
  readonly regexes: readonly RegExp[];
  /** Emit a word as one token when the whole word is in the vocabulary (HF ignore_merges). */
  readonly ignoreMerges: boolean;
}

const re = (s: string) => new RegExp(s, 'gu');
const SPECS: Record<string, () => PreTokenizerSpec> = {
  default: () => ({ regexes: DEFAULT.map(re), ignoreMerges: false }),
  llama3: () => ({ regexes: [re(LLAMA3)], ignoreMerges: true }),
  qwen2: () => ({ regexes: [re(QWEN2)], ignoreMerges: false }),
  gpt2: () => ({ regexes: [re(GPT2)], ignoreMerges: false }),
};

/** `tokenizer.ggml.pre` values and the spec they select (names as in llama-vocab.cpp). */
const ALIASES: Record<string, keyof typeof SPECS> = {
  default: 'default',
  llama3: 'llama3',
  'llama-v3': 'llama3',
  'llama-bpe': 'llama3',
  falcon3: 'llama3',
  pixtral: 'llama3',
  qwen2: 'qwen2',
  'deepseek-r1-qwen': 'qwen2',
  'gpt-2': 'gpt2',
  gpt2: 'gpt2',
  'phi-2': 'gpt2',
  'roberta-bpe': 'gpt2',
};

/** Supported `tokenizer.ggml.pre` values. */
export const SUPPORTED_PRE_TOKENIZERS: readonly string[] = Object.keys(ALIASES);

/**
 * The pre-tokenizer for a `tokenizer.ggml.pre` value; a missing value means 'default' (as in
 * llama.cpp, which warns that such files tokenize poorly).
 */
export function preTokenizerFor(pre: string | undefined): PreTokenizerSpec {
  const key = ALIASES[pre ?? 'default'];
  if (key === undefined) {
    throw new TokenizerError(
      `pre-tokenizer '${pre}' (tokenizer.ggml.pre) is not supported; supported: ${SUPPORTED_PRE_TOKENIZERS.join(', ')}`,
    );
  }
  return SPECS[key]!();
}

/** Splits `text` into words with each regex in turn (matches and the gaps between them). */
export function splitWords(text: string, regexes: readonly RegExp[]): string[] {
  let pieces = [text];
  for (const regex of regexes) {
    const next: string[] = [];
    for (const piece of pieces) {
      let last = 0;
      regex.lastIndex = 0;
      for (let m = regex.exec(piece); m !== null; m = regex.exec(piece)) {
        if (m[0].length === 0) {
          regex.lastIndex++; // never loops on an empty match
          continue;
        }
        if (m.index > last) next.push(piece.slice(last, m.index));
        next.push(m[0]);
        last = m.index + m[0].length;
      }
      if (last < piece.length) next.push(piece.slice(last));
    }
    pieces = next;
  }
  return pieces;
}
