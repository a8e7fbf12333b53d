/**
 * Streaming detokenization: tokens arrive one at a time, text leaves as soon as it is
 * complete UTF-8. A character split across tokens (byte-fallback tokens <0xE2><0x82><0xAC>,
 * or byte-level BPE tokens that end mid-character) is held back until its last byte
 * arrives; invalid bytes become U+FFFD exactly as a one-shot decode would make them.
 */

/** Turns a stream of token ids into text. */
export interface IncrementalDecoder {
  /** Complete UTF-8 text not returned yet; never half a character. */
  push(id: number): string;
  /** Whatever is held back (an incomplete sequence becomes U+FFFD); the decoder can be reused. */
  flush(): string;
}

/** The per-token step shared by decode() and createDecoder(): bytes of token `id` in context. @internal */
export interface PieceSource {
  /** Bytes `id` contributes when it follows the tokens seen so far in `state`. */
  pieceBytes(id: number, state: DecodeState, skipSpecial: boolean): Uint8Array;
}

/** What detokenization remembers between tokens (the leading-space rule). @internal */
export interface DecodeState {
  /** The next text token's leading space is to be dropped (SPM add_space_prefix). */
  stripSpace: boolean;
}

/** @internal */
export class StreamingDecoder implements IncrementalDecoder {
  // ignoreBOM: a U+FEFF in the text is content, not a byte order mark.
  private utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  private readonly state: DecodeState;

  constructor(
    private readonly source: PieceSource,
    private readonly skipSpecial: boolean,
    initialState: DecodeState,
  ) {
    this.state = { ...initialState };
  }

  push(id: number): string {
    return this.utf8.decode(this.source.pieceBytes(id, this.state, this.skipSpecial), { stream: true });
  }

  flush(): string {
    return this.utf8.decode();
  }
}
