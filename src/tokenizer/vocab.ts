/**
 * The tokenizer part of GGUF metadata, validated: tokens, their types and scores, merges and
 * the special token ids (keys `tokenizer.ggml.*` as written by llama.cpp's converter).
 */
import { TokenizerError } from '../errors.js';

/** llama.cpp token types (`tokenizer.ggml.token_type`, enum llama_token_type). */
export enum TokenType {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

/** Validated tokenizer metadata. @internal */
export interface VocabData {
  readonly model: 'llama' | 'gpt2';
  readonly pre: string | undefined;
  readonly tokens: readonly string[];
  readonly scores: Float32Array | undefined; // [nVocab]
  readonly types: Int32Array; // [nVocab]
  readonly merges: readonly string[];
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly eotId: number | undefined;
  readonly eomId: number | undefined;
  readonly unkId: number | undefined;
  readonly padId: number | undefined;
  readonly fimPadId: number | undefined;
  readonly fimRepId: number | undefined;
  readonly fimSepId: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  readonly chatTemplate: string | undefined;
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return (
    Array.isArray(v) || ArrayBuffer.isView(v) || (typeof v === 'object' && v !== null && typeof (v as { length?: unknown }).length === 'number')
  );
}

/** Reads and validates tokenizer metadata through `get(key)`. */
export function readVocabData(get: (key: string) => unknown): VocabData {
  const model = get('tokenizer.ggml.model');
  if (model !== 'llama' && model !== 'gpt2') {
    throw new TokenizerError(
      `tokenizer model '${String(model)}' (tokenizer.ggml.model) is not supported; supported: llama (SentencePiece), gpt2 (byte-level BPE)`,
    );
  }
  const rawTokens = get('tokenizer.ggml.tokens');
  if (!isArrayLike(rawTokens) || rawTokens.length === 0) {
    throw new TokenizerError('tokenizer.ggml.tokens is missing or empty: the file has no vocabulary');
  }
  const n = rawTokens.length;
  const tokens: string[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const t = rawTokens[i];
    if (typeof t !== 'string') throw new TokenizerError(`tokenizer.ggml.tokens[${i}] is not a string`);
    tokens[i] = t.length > 0 ? t : `[EMPTY_${i}]`; // as llama.cpp names empty tokens
  }

  const rawTypes = get('tokenizer.ggml.token_type');
  const types = new Int32Array(n).fill(TokenType.Normal);
  if (rawTypes !== undefined) {
    if (!isArrayLike(rawTypes) || rawTypes.length !== n) {
      throw new TokenizerError(`tokenizer.ggml.token_type must have one entry per token (${n})`);
    }
    for (let i = 0; i < n; i++) types[i] = Number(rawTypes[i]);
  }

  let scores: Float32Array | undefined;
  const rawScores = get('tokenizer.ggml.scores');
  if (rawScores !== undefined) {
    if (!isArrayLike(rawScores) || rawScores.length !== n) {
      throw new TokenizerError(`tokenizer.ggml.scores must have one entry per token (${n})`);
    }
    scores = Float32Array.from(rawScores as ArrayLike<number>);
  }

  const rawMerges = get('tokenizer.ggml.merges');
  let merges: string[] = [];
  if (rawMerges !== undefined) {
    if (!isArrayLike(rawMerges)) throw new TokenizerError('tokenizer.ggml.merges must be an array of strings');
    merges = Array.from(rawMerges as ArrayLike<unknown>, (m, i) => {
      if (typeof m !== 'string') throw new TokenizerError(`tokenizer.ggml.merges[${i}] is not a string`);
      return m;
    });
  }
  if (model === 'gpt2' && merges.length === 0) {
    throw new TokenizerError('tokenizer.ggml.merges is missing: a gpt2 (byte-level BPE) vocabulary needs its merges');
  }

  const id = (key: string): number | undefined => {
    const v = get(`tokenizer.ggml.${key}`);
    if (v === undefined || v === null) return undefined;
    const x = Number(v);
    // llama.cpp treats an id outside the vocabulary as absent (with a warning); so do we.
    if (!Number.isInteger(x) || x < 0 || x >= n) return undefined;
    return x;
  };
  const flag = (key: string, dflt: boolean): boolean => {
    const v = get(key);
    return v === undefined || v === null ? dflt : Boolean(v);
  };
  const pre = get('tokenizer.ggml.pre');
  const template = get('tokenizer.chat_template');

  return {
    model,
    pre: typeof pre === 'string' ? pre : undefined,
    tokens,
    scores,
    types,
    merges,
    // llama.cpp defaults for SPM: bos 1, eos 2, unk 0; for BPE: none (11 in old files, ignored here).
    bosId: id('bos_token_id') ?? (model === 'llama' && n > 1 ? 1 : undefined),
    eosId: id('eos_token_id') ?? (model === 'llama' && n > 2 ? 2 : undefined),
    eotId: id('eot_token_id'),
    eomId: id('eom_token_id'),
    unkId: id('unknown_token_id') ?? (model === 'llama' ? 0 : undefined),
    padId: id('padding_token_id'),
    fimPadId: id('fim_pad_token_id'),
    fimRepId: id('fim_rep_token_id'),
    fimSepId: id('fim_sep_token_id'),
    addBos: flag('tokenizer.ggml.add_bos_token', model === 'llama' || isLlama3Pre(pre)),
    addEos: flag('tokenizer.ggml.add_eos_token', false),
    addSpacePrefix: flag('tokenizer.ggml.add_space_prefix', model === 'llama'),
    chatTemplate: typeof template === 'string' ? template : undefined,
  };
}

function isLlama3Pre(pre: unknown): boolean {
  return pre === 'llama3' || pre === 'llama-v3' || pre === 'llama-bpe' || pre === 'falcon3' || pre === 'pixtral';
}
