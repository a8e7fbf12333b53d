/**
 * The Tokenizer built from validated vocabulary data: special-token partition, then the
 * SentencePiece or byte-level BPE model per raw-text fragment (llama.cpp's
 * llama_tokenize_impl), and detokenization with llama.cpp's token_to_piece rules.
 */
import { byteDecode, byteEncode } from './byte-level.js';
import { StreamingDecoder, type DecodeState, type IncrementalDecoder, type PieceSource } from './decoder.js';
import { BpeModel } from './bpe.js';
import { preTokenizerFor, splitWords, type PreTokenizerSpec } from './pre-tokenizer.js';
import { SpecialPartitioner } from './special.js';
import { detectSpecials } from './special-detect.js';
import { SPM_SPACE, SpmModel } from './spm.js';
import { TokenType, type VocabData } from './vocab.js';
import { TokenizerError } from '../errors.js';

/** Options of Tokenizer.encode. */
export interface EncodeOptions {
  /** Prepend the BOS token; default: the file's add_bos flag (tokenizer.ggml.add_bos_token). */
  addBos?: boolean;
  /** Append the EOS token; default: the file's add_eos flag. */
  addEos?: boolean;
  /**
   * Text equal to a control token ('<|eot_id|>', '<s>') becomes that token, as llama.cpp
   * tokenizes with special=true. Default true. User-defined tokens are always matched.
   */
  parseSpecial?: boolean;
}

/** Options of Tokenizer.decode and Tokenizer.createDecoder. */
export interface DecodeOptions {
  /** Drop control and unknown tokens (BOS, EOS, '<|eot_id|>') instead of printing their text. Default false. */
  skipSpecial?: boolean;
  /**
   * The tokens continue an earlier sequence (say, generated tokens after a prompt): do not
   * drop the leading space of the first token (SentencePiece vocabularies). Default false.
   */
  continuation?: boolean;
}

/** Text <-> token ids for one vocabulary. */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly addBos: boolean;
  readonly chatTemplate?: string;
  /** Token ids of `text` (see EncodeOptions for BOS/EOS and special-token text). */
  encode(text: string, options?: EncodeOptions): Uint32Array;
  /** Text of `tokens`; bytes that are not valid UTF-8 become U+FFFD. */
  decode(tokens: ArrayLike<number>, options?: DecodeOptions): string;
  /** The raw bytes a token stands for (a control token: its text; an unused token: none). */
  tokenBytes(id: number): Uint8Array;
  /** Ends generation: eos, eot, eom and the end-of-turn tokens llama.cpp recognizes by text. */
  isEog(id: number): boolean;
  /** The token's string as stored in the vocabulary ('▁Hello', 'Ġworld', '<|eot_id|>'). */
  tokenText(id: number): string;
  /** Id of a vocabulary string, or undefined. */
  tokenId(piece: string): number | undefined;
  /** A decoder for streaming (see IncrementalDecoder). */
  createDecoder(options?: DecodeOptions): IncrementalDecoder;
}

const EMPTY = new Uint8Array(0);
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const utf8 = new TextEncoder();

/** @internal */
export class TokenizerImpl implements Tokenizer, PieceSource {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly addBos: boolean;
  readonly chatTemplate?: string;
  private readonly tokenToId = new Map<string, number>();
  private readonly eog: Set<number>;
  /** Token types after llama.cpp's by-text promotion of special tokens (see special-detect.ts). */
  private readonly types: Int32Array; // [nVocab]
  private readonly partitioner: SpecialPartitioner;
  private readonly pieces: (Uint8Array | undefined)[]; // lazily filled tokenBytes cache
  private spm?: SpmModel;
  private bpe?: BpeModel;
  private readonly pre?: PreTokenizerSpec;

  constructor(private readonly v: VocabData) {
    this.vocabSize = v.tokens.length;
    this.bosId = v.bosId;
    this.eosId = v.eosId;
    this.addBos = v.addBos;
    if (v.chatTemplate !== undefined) this.chatTemplate = v.chatTemplate;
    // The last id wins for duplicate strings, as in llama.cpp's token_to_id.
    for (let id = 0; id < v.tokens.length; id++) this.tokenToId.set(v.tokens[id]!, id);
    const detected = detectSpecials(v.tokens, v.types, v);
    this.types = detected.types;
    this.eog = detected.eog;
    this.partitioner = new SpecialPartitioner(v.tokens, this.types);
    this.pieces = new Array(v.tokens.length);
    if (v.model === 'gpt2') this.pre = preTokenizerFor(v.pre);
  }

  encode(text: string, options: EncodeOptions = {}): Uint32Array {
    const v = this.v;
    const addBos = options.addBos ?? v.addBos;
    const addEos = options.addEos ?? v.addEos;
    const out: number[] = [];
    if (addBos) {
      if (v.bosId === undefined) throw new TokenizerError('addBos: the vocabulary has no BOS token');
      out.push(v.bosId);
    }
    // Lone surrogates cannot be UTF-8: make them U+FFFD first, as converting the string to
    // UTF-8 for llama.cpp does (the vocabulary may have a token for U+FFFD).
    text = text.replace(LONE_SURROGATE, '\uFFFD');
    const fragments = text.length > 0 ? this.partitioner.partition(text, options.parseSpecial ?? true) : [];
    if (v.model === 'llama') {
      const spm = (this.spm ??= new SpmModel(this.tokenToId, v.scores, v.unkId));
      let prevSpecial = true; // llama.cpp: the text at the start or after a special token gets the space prefix
      for (const frag of fragments) {
        if (typeof frag === 'number') {
          out.push(frag);
          prevSpecial = true;
          continue;
        }
        const spaced = v.addSpacePrefix && prevSpecial ? ' ' + frag : frag;
        spm.encode(spaced.replaceAll(' ', SPM_SPACE), out);
        prevSpecial = false;
      }
    } else {
      const bpe = (this.bpe ??= new BpeModel(v.tokens, this.tokenToId, v.merges, this.pre!.ignoreMerges, v.unkId));
      for (const frag of fragments) {
        if (typeof frag === 'number') out.push(frag);
        else for (const word of splitWords(frag, this.pre!.regexes)) bpe.encodeWord(byteEncode(word), out);
      }
    }
    if (addEos) {
      if (v.eosId === undefined) throw new TokenizerError('addEos: the vocabulary has no EOS token');
      out.push(v.eosId);
    }
    return Uint32Array.from(out);
  }

  decode(tokens: ArrayLike<number>, options: DecodeOptions = {}): string {
    const state = this.initialState(options);
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < tokens.length; i++) {
      const bytes = this.pieceBytes(tokens[i]!, state, options.skipSpecial ?? false);
      parts.push(bytes);
      total += bytes.length;
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
  }

  createDecoder(options: DecodeOptions = {}): IncrementalDecoder {
    return new StreamingDecoder(this, options.skipSpecial ?? false, this.initialState(options));
  }

  private initialState(options: DecodeOptions): DecodeState {
    return { stripSpace: this.v.model === 'llama' && this.v.addSpacePrefix && !options.continuation };
  }

  /**
   * Bytes of `id` after the tokens seen in `state`. SentencePiece: the space the encoder
   * added in front of text (at the start and after every special token) is dropped again,
   * so decode(encode(s)) == s. llama.cpp's detokenize drops it only at the very start of
   * a sequence without BOS; we also drop it after BOS and other special tokens.
   * @internal
   */
  pieceBytes(id: number, state: DecodeState, skipSpecial: boolean): Uint8Array {
    this.checkId(id);
    const type = this.types[id]!;
    const spm = this.v.model === 'llama';
    if (type === TokenType.Control || type === TokenType.Unknown || type === TokenType.UserDefined) {
      if (spm) state.stripSpace = this.v.addSpacePrefix;
      if (skipSpecial && type !== TokenType.UserDefined) return EMPTY;
      return this.tokenBytes(id);
    }
    const bytes = this.tokenBytes(id);
    if (state.stripSpace && bytes.length > 0) {
      state.stripSpace = false;
      if (bytes[0] === 0x20) return bytes.subarray(1); // llama.cpp strips a byte token's space too
    }
    return bytes;
  }

  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    let bytes = this.pieces[id];
    if (bytes === undefined) {
      const text = this.v.tokens[id]!;
      switch (this.types[id]) {
        case TokenType.Unused:
          bytes = EMPTY;
          break;
        case TokenType.Control:
        case TokenType.Unknown:
        case TokenType.UserDefined:
          bytes = utf8.encode(text); // stored as plain text in both model kinds
          break;
        case TokenType.Byte: {
          const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
          bytes = m ? Uint8Array.of(parseInt(m[1]!, 16)) : utf8.encode(text);
          break;
        }
        default:
          bytes = this.v.model === 'llama' ? utf8.encode(text.replaceAll(SPM_SPACE, ' ')) : byteDecode(text);
      }
      this.pieces[id] = bytes;
    }
    return bytes;
  }

  isEog(id: number): boolean {
    return this.eog.has(id);
  }

  tokenText(id: number): string {
    this.checkId(id);
    return this.v.tokens[id]!;
  }

  tokenId(piece: string): number | undefined {
    return this.tokenToId.get(piece);
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.v.tokens.length) {
      throw new TokenizerError(`token id ${id} is outside the vocabulary (0..${this.v.tokens.length - 1})`);
    }
  }
}
