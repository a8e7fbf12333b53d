/**
 * ggml tensor types: ids as stored in GGUF tensor infos, block sizes and bytes per block.
 * Ids and layouts follow ggml.h / ggml-common.h; retired ids (4, 5, 31-33, 36-38) are absent.
 */

/** ggml type ids. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
}

/** Size facts of one ggml type. */
export interface GgmlTypeInfo {
  readonly type: GgmlType;
  /** Lower-case name as llama.cpp prints it ("q4_k"). */
  readonly name: string;
  /** Elements per block. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
  /** Whether flexinfer can compute with this type (dequantize and matmul). */
  readonly supported: boolean;
  /**
   * The type activations are converted to for dot products with weights of this type (ggml's
   * vec_dot_type: F32 / F16 / BF16, or Q8_0 / Q8_1 / Q8_K); undefined where unsupported.
   */
  readonly vecDotType?: GgmlType;
}

const QK_K = 256;

const G = GgmlType;
// The one table of type facts on the TypeScript side (the native twin, with the kernels, is
// native/src/type_traits.cc): [type, name, elements per block, bytes per block, vec_dot_type
// (the activation type of its dot products) or null where flexinfer does not compute with it].
const TABLE: ReadonlyArray<readonly [GgmlType, string, number, number, GgmlType | null]> = [
  [G.F32, 'f32', 1, 4, G.F32],
  [G.F16, 'f16', 1, 2, G.F16],
  [G.Q4_0, 'q4_0', 32, 2 + 16, G.Q8_0],
  [G.Q4_1, 'q4_1', 32, 2 + 2 + 16, G.Q8_1],
  [G.Q5_0, 'q5_0', 32, 2 + 4 + 16, G.Q8_0],
  [G.Q5_1, 'q5_1', 32, 2 + 2 + 4 + 16, G.Q8_1],
  [G.Q8_0, 'q8_0', 32, 2 + 32, G.Q8_0],
  [G.Q8_1, 'q8_1', 32, 2 + 2 + 32, null],
  [G.Q2_K, 'q2_k', QK_K, QK_K / 16 + QK_K / 4 + 2 + 2, G.Q8_K],
  [G.Q3_K, 'q3_k', QK_K, QK_K / 8 + QK_K / 4 + 12 + 2, G.Q8_K],
  [G.Q4_K, 'q4_k', QK_K, 2 + 2 + 12 + QK_K / 2, G.Q8_K],
  [G.Q5_K, 'q5_k', QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2, G.Q8_K],
  [G.Q6_K, 'q6_k', QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, G.Q8_K],
  [G.Q8_K, 'q8_k', QK_K, 4 + QK_K + (QK_K / 16) * 2, null],
  [G.IQ2_XXS, 'iq2_xxs', QK_K, 2 + QK_K / 4, null],
  [G.IQ2_XS, 'iq2_xs', QK_K, 2 + QK_K / 4 + QK_K / 32, null],
  [G.IQ3_XXS, 'iq3_xxs', QK_K, 2 + (3 * QK_K) / 8, null],
  [G.IQ1_S, 'iq1_s', QK_K, 2 + QK_K / 8 + QK_K / 16, null],
  [G.IQ4_NL, 'iq4_nl', 32, 2 + 16, G.Q8_0],
  [G.IQ3_S, 'iq3_s', QK_K, 2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + QK_K / 64, null],
  [G.IQ2_S, 'iq2_s', QK_K, 2 + QK_K / 4 + QK_K / 16, null],
  [G.IQ4_XS, 'iq4_xs', QK_K, 2 + 2 + QK_K / 64 + QK_K / 2, G.Q8_K],
  [G.I8, 'i8', 1, 1, null],
  [G.I16, 'i16', 1, 2, null],
  [G.I32, 'i32', 1, 4, null],
  [G.I64, 'i64', 1, 8, null],
  [G.F64, 'f64', 1, 8, null],
  [G.IQ1_M, 'iq1_m', QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, null],
  [G.BF16, 'bf16', 1, 2, G.BF16],
  [G.TQ1_0, 'tq1_0', QK_K, 2 + (QK_K - (4 * QK_K) / 64) / 5 + QK_K / 64, null],
  [G.TQ2_0, 'tq2_0', QK_K, 2 + QK_K / 4, null],
  [G.MXFP4, 'mxfp4', 32, 1 + 16, null],
];

const BY_ID = new Map<number, GgmlTypeInfo>(
  TABLE.map(([type, name, blockSize, typeSize, vecDot]) => [
    type,
    { type, name, blockSize, typeSize, supported: vecDot !== null, ...(vecDot !== null ? { vecDotType: vecDot } : {}) },
  ]),
);
const BY_NAME = new Map<string, GgmlTypeInfo>([...BY_ID.values()].map((t) => [t.name, t]));

/** Facts for a type id, or undefined for an id ggml does not define. */
export function ggmlTypeInfo(type: number): GgmlTypeInfo | undefined {
  return BY_ID.get(type);
}

/** Facts for a type name ("q4_k", case-insensitive), or undefined. */
export function ggmlTypeByName(name: string): GgmlTypeInfo | undefined {
  return BY_NAME.get(name.toLowerCase());
}

/** All known types. */
export function allGgmlTypes(): GgmlTypeInfo[] {
  return [...BY_ID.values()];
}

/** The types flexinfer computes with (matmul, embedding rows), in ggml id order. */
export function supportedGgmlTypes(): GgmlTypeInfo[] {
  return [...BY_ID.values()].filter((t) => t.supported);
}

/**
 * Bytes taken by one row of `n` elements of `type`. Throws if `n` is not a whole number of
 * blocks (ggml requires rows to be whole blocks).
 */
export function ggmlRowBytes(type: GgmlType, n: number): number {
  const info = BY_ID.get(type);
  if (!info) throw new RangeError(`unknown ggml type id ${type}`);
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`row length ${n} is not a non-negative integer`);
  if (n % info.blockSize !== 0) {
    throw new RangeError(`row length ${n} is not a multiple of ${info.name}'s block size ${info.blockSize}`);
  }
  return (n / info.blockSize) * info.typeSize;
}
