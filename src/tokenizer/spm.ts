/**
 * SentencePiece-style tokenization of `tokenizer.ggml.model = llama` vocabularies, as
 * llama.cpp's llm_tokenizer_spm_session does it:
 *
 *   "Hello world"  ->  "▁Hello▁world" (spaces escaped, leading '▁' added by the caller)
 *   -> one symbol per code point -> repeatedly merge the adjacent pair whose concatenation
 *   is a token with the highest score (ties: leftmost first) -> emit each symbol's token,
 *   or its UTF-8 bytes as <0xXX> byte tokens when the symbol is not a token (byte fallback),
 *   or the unknown token when there is no byte token either.
 */
import { MinHeap } from './heap.js';

/** U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's escaped space. */
export const SPM_SPACE = '\u2581';

const utf8 = new TextEncoder();

interface Bigram {
  score: number;
  left: number; // symbol index
  size: number; // code units of left + right when queued; stale if it changed
}

/** @internal */
export class SpmModel {
  private readonly byteIds: Int32Array; // [256] id of <0xXX>, -1 if absent

  constructor(
    private readonly tokenToId: ReadonlyMap<string, number>,
    private readonly scores: Float32Array | undefined,
    private readonly unkId: number | undefined,
  ) {
    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      const id = tokenToId.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      if (id !== undefined) this.byteIds[b] = id;
    }
  }

  /** Appends the tokens of already escaped `text` ('▁' for spaces) to `out`. */
  encode(text: string, out: number[]): void {
    const syms = Array.from(text); // one symbol per code point
    const n = syms.length;
    if (n === 0) return;
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    // The queue's top is the highest score, then the leftmost (llama.cpp's llm_bigram_spm::comparator).
    const queue = new MinHeap<Bigram>((a, b) => a.score > b.score || (a.score === b.score && a.left < b.left));
    const tryAdd = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const id = this.tokenToId.get(syms[left]! + syms[right]!);
      if (id === undefined) return;
      queue.push({ score: this.scores ? this.scores[id]! : 0, left, size: syms[left]!.length + syms[right]!.length });
    };
    for (let i = 1; i < n; i++) tryAdd(i - 1, i);

    for (let bg = queue.pop(); bg !== undefined; bg = queue.pop()) {
      const left = bg.left;
      const right = next[left]!;
      // Skip bigrams made stale by an earlier merge of one of their symbols.
      if (syms[left]!.length === 0 || right < 0 || syms[left]!.length + syms[right]!.length !== bg.size) continue;
      syms[left] = syms[left]! + syms[right]!;
      syms[right] = '';
      next[left] = next[right]!;
      if (next[left]! >= 0) prev[next[left]!] = left;
      tryAdd(prev[left]!, left);
      tryAdd(left, next[left]!);
    }

    for (let i = 0; i >= 0; i = next[i]!) this.emit(syms[i]!, out);
  }

  private emit(symbol: string, out: number[]): void {
    const id = this.tokenToId.get(symbol);
    if (id !== undefined) {
      out.push(id);
      return;
    }
    for (const b of utf8.encode(symbol)) {
      const byteId = this.byteIds[b]!;
      if (byteId >= 0) out.push(byteId);
      else if (this.unkId !== undefined) out.push(this.unkId);
    }
  }
}
