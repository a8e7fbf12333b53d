/**
 * The interface between the scheduler and a constrained-decoding engine: a per-sequence
 * object that says which tokens may come next (a bitmask) and follows the tokens chosen.
 * The sampler applies the mask; neither it nor the scheduler knows grammars.
 */

/** Constrains one sequence's next tokens. */
export interface TokenConstraint {
  /**
   * Writes the allowed-token bitmask for the next token: bit (t & 31) of word t >> 5 is set
   * when token t is allowed. `mask` has ceil(vocabSize / 32) words.
   */
  fillMask(mask: Int32Array): void;
  /** Follows `token`; false (state unchanged) if the constraint does not allow it. */
  accept(token: number): boolean;
  /** True once a complete output was followed by an end-of-generation token. */
  readonly done: boolean;
  /** Frees what the constraint holds. */
  dispose(): void;
}

/** Words of a token bitmask for `vocabSize` tokens. */
export function maskWords(vocabSize: number): number {
  return (vocabSize + 31) >>> 5;
}

/** True if token t is set in `mask`. */
export function maskAllows(mask: Int32Array, t: number): boolean {
  return (mask[t >>> 5]! & (1 << (t & 31))) !== 0;
}
