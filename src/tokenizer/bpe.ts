/**
 * Byte-level BPE of `tokenizer.ggml.model = gpt2` vocabularies (Llama 3, Qwen2), as
 * llama.cpp's llm_tokenizer_bpe_session does it, per pre-tokenized word:
 *
 *   word "Ġworld" (UTF-8 bytes already mapped to byte-level chars)
 *   -> whole word is a token and the pre-tokenizer ignores merges (Llama 3)? emit it
 *   -> else one symbol per char; repeatedly merge the adjacent pair with the lowest merge
 *      rank (ties: leftmost first) -> emit each symbol's token.
 *
 * Words repeat a lot in real text, so results are cached per word.
 */
import { MinHeap } from './heap.js';

const MAX_CACHE_WORDS = 100_000;
// Heap keys pack (rank, left position) into one double: rank * 2^26 + left.
const POS_BITS = 2 ** 26;

/**
 * Merge rank of a token pair, without building a Map of 280k strings: that took 0.4-1.5 s
 * for Llama 3's merges (string hashing and slicing dominate), this index takes ~50 ms.
 * An open-addressing table of merge ranks keyed by an FNV-1a hash of "left right".
 * @internal
 */
export class MergeIndex {
  private readonly slots: Int32Array; // rank, or -1 when empty
  private readonly hashes: Uint32Array; // full hash of the slot's merge
  private readonly mask: number;

  constructor(private readonly merges: readonly string[]) {
    let cap = 1024;
    while (cap < merges.length * 2) cap *= 2;
    this.mask = cap - 1;
    this.slots = new Int32Array(cap).fill(-1);
    this.hashes = new Uint32Array(cap);
    for (let rank = 0; rank < merges.length; rank++) {
      const m = merges[rank]!;
      const h = fnv(m, 0x811c9dc5);
      for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
        const r = this.slots[i]!;
        if (r < 0) {
          this.slots[i] = rank;
          this.hashes[i] = h;
          break;
        }
        if (this.hashes[i] === h && merges[r] === m) break; // duplicate: the first (lowest) rank wins
      }
    }
  }

  /** Rank of the merge "left right", or -1. */
  rank(left: string, right: string): number {
    const h = fnv(right, Math.imul(fnv(left, 0x811c9dc5) ^ 0x20, 0x01000193) >>> 0);
    const len = left.length + 1 + right.length;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const r = this.slots[i]!;
      if (r < 0) return -1;
      if (this.hashes[i] !== h) continue;
      const m = this.merges[r]!;
      if (m.length === len && m.charCodeAt(left.length) === 0x20 && m.startsWith(left) && m.endsWith(right)) return r;
    }
  }
}

/** 32-bit FNV-1a over UTF-16 code units, continuing from `h`. */
function fnv(s: string, h: number): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** @internal */
export class BpeModel {
  private readonly index: MergeIndex;
  /** (leftId * nVocab + rightId) -> merge rank, or -1 (no usable merge); filled on demand. */
  private readonly pairRank = new Map<number, number>();
  /** rank -> id of the merged token, -1 unknown yet, -2 not a token. */
  private readonly mergeResult: Int32Array; // [nMerges]
  private readonly cache = new Map<string, readonly number[]>();
  private readonly nVocab: number;

  constructor(
    private readonly tokens: readonly string[],
    private readonly tokenToId: ReadonlyMap<string, number>,
    merges: readonly string[],
    private readonly ignoreMerges: boolean,
    private readonly unkId: number | undefined,
  ) {
    this.nVocab = tokens.length;
    this.index = new MergeIndex(merges);
    this.mergeResult = new Int32Array(merges.length).fill(-1);
  }

  /** Appends the tokens of one byte-level encoded word to `out`. */
  encodeWord(word: string, out: number[]): void {
    let ids = this.cache.get(word);
    if (ids === undefined) {
      ids = this.mergeWord(word);
      if (this.cache.size >= MAX_CACHE_WORDS) this.cache.clear();
      this.cache.set(word, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
  }

  /** Rank of merging tokens a and b (-1: they do not merge into a token). */
  private rankOf(a: number, b: number): number {
    const key = a * this.nVocab + b;
    let rank = this.pairRank.get(key);
    if (rank === undefined) {
      rank = this.index.rank(this.tokens[a]!, this.tokens[b]!);
      if (rank >= 0) {
        let id = this.mergeResult[rank]!;
        if (id === -1) id = this.mergeResult[rank] = this.tokenToId.get(this.tokens[a]! + this.tokens[b]!) ?? -2;
        // A merge whose result is not a token cannot produce one; treat it as absent.
        if (id < 0) rank = -1;
      }
      this.pairRank.set(key, rank);
    }
    return rank;
  }

  private mergeWord(word: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.tokenToId.get(word);
      if (whole !== undefined) return [whole];
    }
    const chars = Array.from(word);
    const n = chars.length;
    const ids = new Int32Array(n);
    for (let i = 0; i < n; i++) ids[i] = this.tokenToId.get(chars[i]!) ?? -1;
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const queue = new MinHeap<number>((x, y) => x < y);
    const tryAdd = (left: number, right: number) => {
      if (left < 0 || right < 0 || ids[left]! < 0 || ids[right]! < 0) return;
      const rank = this.rankOf(ids[left]!, ids[right]!);
      if (rank >= 0) queue.push(rank * POS_BITS + left);
    };
    for (let i = 1; i < n; i++) tryAdd(i - 1, i);

    for (let key = queue.pop(); key !== undefined; key = queue.pop()) {
      const rank = Math.floor(key / POS_BITS);
      const left = key - rank * POS_BITS;
      const right = next[left]!;
      // Stale if either symbol changed since this pair was queued.
      if (ids[left]! < 0 || right < 0 || ids[right]! < 0 || this.rankOf(ids[left]!, ids[right]!) !== rank) continue;
      ids[left] = this.mergeResult[rank]!;
      ids[right] = -2; // merged away
      next[left] = next[right]!;
      if (next[left]! >= 0) prev[next[left]!] = left;
      tryAdd(prev[left]!, left);
      tryAdd(left, next[left]!);
    }

    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) {
      const id = ids[i]!;
      if (id >= 0) out.push(id);
      // A char missing from the vocabulary (a partial vocabulary): llama.cpp drops it; we
      // emit the unknown token when there is one.
      else if (this.unkId !== undefined) out.push(this.unkId);
    }
    return out;
  }
}
