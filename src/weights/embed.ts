/**
 * Token embedding rows: dequantizes rows of token_embd ([dim, nVocab] in ggml order, one row
 * of `dim` elements per token) into f32. Both stores use this; they differ only in where a
 * row's bytes come from (resident memory or a pread of just that row).
 */
import { GgmlType, ggmlRowBytes } from '../gguf/ggml-type.js';
import { dequantizeRow } from '../native/index.js';
import type { GgufTensorInfo } from '../gguf/reader.js';

/** Shape facts of token_embd needed to fetch rows. */
export interface EmbeddingLayout {
  type: GgmlType;
  /** Elements per row (the model dimension). */
  dim: number;
  numRows: number;
  rowBytes: number;
}

/** Row layout of an embedding tensor. */
export function embeddingLayout(info: GgufTensorInfo): EmbeddingLayout {
  const dim = info.dims[0] ?? 0;
  const numRows = info.dims.slice(1).reduce((a, b) => a * b, 1);
  return { type: info.type, dim, numRows, rowBytes: ggmlRowBytes(info.type, dim) };
}

/**
 * Fills out ([tokens.length, dim] f32) with the embedding rows of `tokens`. `rowBytes(token)`
 * returns the raw bytes of one row. Throws a RangeError for a token id outside the vocabulary.
 */
export function embedRows(
  layout: EmbeddingLayout,
  tokens: Int32Array,
  out: Float32Array,
  rowBytes: (token: number) => Uint8Array,
): void {
  const { dim, numRows, type } = layout;
  if (out.length < tokens.length * dim) {
    throw new RangeError(`embed: out holds ${out.length} floats, need ${tokens.length} x ${dim}`);
  }
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!(t >= 0 && t < numRows)) throw new RangeError(`embed: token id ${t} is outside the vocabulary [0, ${numRows})`);
    const row = rowBytes(t);
    dequantizeRow(out.subarray(i * dim, (i + 1) * dim), row, type, dim);
  }
}
