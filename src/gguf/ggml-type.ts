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
}

const QK_K = 256;

// [type, name, elements per block, bytes per block, supported]
const TABLE: ReadonlyArray<readonly [GgmlType, string, number, number, boolean]> = [
  [GgmlType.F32, 'f32', 1, 4, true],
  [GgmlType.F16, 'f16', 1, 2, true],
  [GgmlType.Q4_0, 'q4_0', 32, 2 + 16, true],
  [GgmlType.Q4_1, 'q4_1', 32, 2 + 2 + 16, false],
  [GgmlType.Q5_0, 'q5_0', 32, 2 + 4 + 16, false],
  [GgmlType.Q5_1, 'q5_1', 32, 2 + 2 + 4 + 16, false],
  [GgmlType.Q8_0, 'q8_0', 32, 2 + 32, true],
  [GgmlType.Q8_1, 'q8_1', 32, 2 + 2 + 32, false],
  [GgmlType.Q2_K, 'q2_k', QK_K, QK_K / 16 + QK_K / 4 + 2 + 2, false],
  [GgmlType.Q3_K, 'q3_k', QK_K, QK_K / 8 + QK_K / 4 + 12 + 2, false],
  [GgmlType.Q4_K, 'q4_k', QK_K, 2 + 2 + 12 + QK_K / 2, true],
  [GgmlType.Q5_K, 'q5_k', QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2, true],
  [GgmlType.Q6_K, 'q6_k', QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, true],
  [GgmlType.Q8_K, 'q8_k', QK_K, 4 + QK_K + (QK_K / 16) * 2, false],
  [GgmlType.IQ2_XXS, 'iq2_xxs', QK_K, 2 + QK_K / 4, false],
  [GgmlType.IQ2_XS, 'iq2_xs', QK_K, 2 + QK_K / 4 + QK_K / 32, false],
  [GgmlType.IQ3_XXS, 'iq3_xxs', QK_K, 2 + (3 * QK_K) / 8, false],
  [GgmlType.IQ1_S, 'iq1_s', QK_K, 2 + QK_K / 8 + QK_K / 16, false],
  [GgmlType.IQ4_NL, 'iq4_nl', 32, 2 + 16, false],
  [GgmlType.IQ3_S, 'iq3_s', QK_K, 2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + QK_K / 64, false],
  [GgmlType.IQ2_S, 'iq2_s', QK_K, 2 + QK_K / 4 + QK_K / 16, false],
  [GgmlType.IQ4_XS, 'iq4_xs', QK_K, 2 + 2 + QK_K / 64 + QK_K / 2, false],
  [GgmlType.I8, 'i8', 1, 1, false],
  [GgmlType.I16, 'i16', 1, 2, false],
  [GgmlType.I32, 'i32', 1, 4, false],
  [GgmlType.I64, 'i64', 1, 8, false],
  [GgmlType.F64, 'f64', 1, 8, false],
  [GgmlType.IQ1_M, 'iq1_m', QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, false],
  [GgmlType.BF16, 'bf16', 1, 2, true],
  [GgmlType.TQ1_0, 'tq1_0', QK_K, 2 + (QK_K - (4 * QK_K) / 64) / 5 + QK_K / 64, false],
  [GgmlType.TQ2_0, 'tq2_0', QK_K, 2 + QK_K / 4, false],
  [GgmlType.MXFP4, 'mxfp4', 32, 1 + 16, false],
];

const BY_ID = new Map<number, GgmlTypeInfo>(
  TABLE.map(([type, name, blockSize, typeSize, supported]) => [type, { type, name, blockSize, typeSize, supported }]),
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
