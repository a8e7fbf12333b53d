/**
 * Special-token partitioning, as llama.cpp's tokenizer_st_partition: before the text is
 * tokenized, every occurrence of a control, user-defined or unknown token's text is cut
 * out and becomes that token. Tokens are tried longest text first; each one splits all
 * remaining raw-text fragments at all its occurrences. Without parseSpecial only
 * user-defined tokens are cut out (control and unknown token text stays plain text).
 */
import { TokenType } from './vocab.js';

/** A piece of input: raw text to tokenize, or a token already decided. */
export type Fragment = string | number;

/** @internal */
export class SpecialPartitioner {
  private readonly specials: { id: number; text: string; userDefined: boolean }[] = [];

  constructor(tokens: readonly string[], types: Int32Array) {
    for (let id = 0; id < tokens.length; id++) {
      const t = types[id];
      if ((t === TokenType.Control || t === TokenType.UserDefined || t === TokenType.Unknown) && tokens[id]!.length > 0) {
        this.specials.push({ id, text: tokens[id]!, userDefined: t === TokenType.UserDefined });
      }
    }
    // Longest first (llama.cpp sorts by byte length; stable here so equal lengths keep id order).
    const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
    this.specials.sort((a, b) => bytes(b.text) - bytes(a.text));
  }

  /** Splits `text` into raw-text fragments and special token ids, in order. */
  partition(text: string, parseSpecial: boolean): Fragment[] {
    let fragments: Fragment[] = [text];
    for (const special of this.specials) {
      if (!parseSpecial && !special.userDefined) continue;
      let split: Fragment[] | undefined;
      for (let f = 0; f < fragments.length; f++) {
        const frag = fragments[f]!;
        if (typeof frag !== 'string' || !frag.includes(special.text)) {
          split?.push(frag);
          continue;
        }
        split ??= fragments.slice(0, f);
        let start = 0;
        for (let at = frag.indexOf(special.text); at >= 0; at = frag.indexOf(special.text, start)) {
          if (at > start) split.push(frag.slice(start, at));
          split.push(special.id);
          start = at + special.text.length;
        }
        if (start < frag.length) split.push(frag.slice(start));
      }
      if (split !== undefined) fragments = split;
    }
    return fragments;
  }
}
