/**
 * Reference quantization for the ggml types flexinfer computes with: byte layouts of
 * ggml-common.h and the rounding of llama.cpp's quantize_row_*_ref / dequantize_row_*
 * (bit-exact; see quant/common.ts for how float arithmetic is reproduced).
 *
 * These are the independent reference for the native kernels' tests and the quantizer of
 * `flexinfer synth`; they run single-threaded and allocate nothing per block.
 * Byte order is little-endian (GGUF's, and the host's on every platform flexinfer targets).
 */
import { bf16ToF32Array, f16ToF32Array, f32ToBf16Array, f32ToF16Array } from './f16.js';
import { GgmlType, ggmlTypeInfo } from './ggml-type.js';
import { dequantizeIQ4_NL, dequantizeIQ4_XS, quantizeIQ4_NL, quantizeIQ4_XS } from './quant/iq4.js';
import { dequantizeQ2_K, dequantizeQ3_K, quantizeQ2_K, quantizeQ3_K } from './quant/k-quants-23.js';
import { dequantizeQ4_K, dequantizeQ5_K, quantizeQ4_K, quantizeQ5_K } from './quant/k-quants-45.js';
import { dequantizeQ6_K, dequantizeQ8_K, quantizeQ6_K, quantizeQ8_K } from './quant/k-quants-68.js';
import {
  dequantizeQ4_0, dequantizeQ4_1, dequantizeQ5_0, dequantizeQ5_1, dequantizeQ8_0, dequantizeQ8_1,
  quantizeQ4_0, quantizeQ4_1, quantizeQ5_0, quantizeQ5_1, quantizeQ8_0, quantizeQ8_1,
} from './quant/legacy.js';

type BlockFn = (x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number, fast?: boolean) => void;
type DeBlockFn = (y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number) => void;

const BLOCK_CODECS = new Map<GgmlType, [BlockFn, DeBlockFn]>([
  [GgmlType.Q8_0, [quantizeQ8_0, dequantizeQ8_0]],
  [GgmlType.Q4_0, [quantizeQ4_0, dequantizeQ4_0]],
  [GgmlType.Q4_1, [quantizeQ4_1, dequantizeQ4_1]],
  [GgmlType.Q5_0, [quantizeQ5_0, dequantizeQ5_0]],
  [GgmlType.Q5_1, [quantizeQ5_1, dequantizeQ5_1]],
  [GgmlType.Q2_K, [quantizeQ2_K, dequantizeQ2_K]],
  [GgmlType.Q3_K, [quantizeQ3_K, dequantizeQ3_K]],
  [GgmlType.Q4_K, [quantizeQ4_K, dequantizeQ4_K]],
  [GgmlType.Q5_K, [quantizeQ5_K, dequantizeQ5_K]],
  [GgmlType.Q6_K, [quantizeQ6_K, dequantizeQ6_K]],
  // IQ4_NL: the reference (quantize_row_iq4_nl_ref) has no scale search; `fast` is ignored
  [GgmlType.IQ4_NL, [(x, xo, nb, y, yo) => quantizeIQ4_NL(x, xo, nb, y, yo), dequantizeIQ4_NL]],
  [GgmlType.IQ4_XS, [quantizeIQ4_XS, dequantizeIQ4_XS]],
  [GgmlType.Q8_K, [quantizeQ8_K, dequantizeQ8_K]],
  [GgmlType.Q8_1, [quantizeQ8_1, dequantizeQ8_1]],
]);

/** Types quantize()/dequantize() handle. */
export const QUANT_TYPES: readonly GgmlType[] = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, ...BLOCK_CODECS.keys()];

/** Whether quantize()/dequantize() handle `type`. */
export function canQuantize(type: GgmlType): boolean {
  return QUANT_TYPES.includes(type);
}

function layout(type: GgmlType, n: number, what: string): { blockSize: number; typeSize: number; nb: number } {
  const info = ggmlTypeInfo(type);
  if (!info || !canQuantize(type)) {
    const names = QUANT_TYPES.map((t) => ggmlTypeInfo(t)!.name).join(', ');
    throw new RangeError(`${what}: ggml type ${info?.name ?? type} is not supported (supported: ${names})`);
  }
  if (!Number.isSafeInteger(n) || n < 0 || n % info.blockSize !== 0) {
    throw new RangeError(`${what}: ${n} elements is not a whole number of ${info.name} blocks of ${info.blockSize}`);
  }
  return { blockSize: info.blockSize, typeSize: info.typeSize, nb: n / info.blockSize };
}

/** Bytes `n` elements of `type` take (n must be a whole number of blocks). */
export function quantizedBytes(type: GgmlType, n: number): number {
  const { typeSize, nb } = layout(type, n, 'quantizedBytes');
  return nb * typeSize;
}

/** A Uint16Array over `bytes` when aligned, else undefined. */
function u16Over(bytes: Uint8Array, n: number): Uint16Array | undefined {
  return bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, n) : undefined;
}

/** Options of the quantizers. */
export interface QuantizeOptions {
  /**
   * Q2_K..Q6_K, IQ4_XS: skip llama.cpp's search for the best scale per (sub-)block and use the
   * plain min/max (Q3_K, Q6_K, IQ4_XS: absmax) fit. Same block layout, ~10x faster, somewhat
   * larger error; the bytes are then NOT those llama.cpp's quantize_row_*_ref writes. Other
   * types ignore it. Meant for synthetic weights, where the fit quality does not matter.
   * Default false.
   */
  fast?: boolean;
}

/**
 * Quantizes all of `src` into `dst` (at least quantizedBytes(type, src.length) bytes) and
 * returns the number of bytes written. `src.length` must be a whole number of blocks.
 */
export function quantizeInto(type: GgmlType, src: Float32Array, dst: Uint8Array, options: QuantizeOptions = {}): number {
  const { typeSize, nb } = layout(type, src.length, 'quantize');
  const bytes = nb * typeSize;
  if (dst.length < bytes) throw new RangeError(`quantize: dst has ${dst.length} bytes, ${bytes} needed`);
  switch (type) {
    case GgmlType.F32:
      dst.set(new Uint8Array(src.buffer, src.byteOffset, bytes));
      break;
    case GgmlType.F16:
    case GgmlType.BF16: {
      const conv = type === GgmlType.F16 ? f32ToF16Array : f32ToBf16Array;
      const view = u16Over(dst, src.length);
      if (view) conv(src, view);
      else dst.set(new Uint8Array(conv(src).buffer, 0, bytes));
      break;
    }
    default:
      BLOCK_CODECS.get(type)![0](src, 0, nb, dst, 0, options.fast === true);
  }
  return bytes;
}

/** Quantizes `src` (a whole number of blocks) to a new buffer in `type`'s block layout. */
export function quantize(type: GgmlType, src: Float32Array, options: QuantizeOptions = {}): Uint8Array {
  const out = new Uint8Array(quantizedBytes(type, src.length));
  quantizeInto(type, src, out, options);
  return out;
}

/**
 * Quantizes a row-major matrix of rows of `rowLen` elements (each row whole blocks, as ggml
 * requires). The result is the rows' blocks back to back, i.e. the tensor data as stored in GGUF.
 */
export function quantizeRows(type: GgmlType, src: Float32Array, rowLen: number, dst?: Uint8Array, options: QuantizeOptions = {}): Uint8Array {
  if (!Number.isSafeInteger(rowLen) || rowLen <= 0 || src.length % rowLen !== 0) {
    throw new RangeError(`quantizeRows: ${src.length} elements is not a whole number of rows of ${rowLen}`);
  }
  layout(type, rowLen, 'quantizeRows'); // each row must be whole blocks
  const out = dst ?? new Uint8Array(quantizedBytes(type, src.length));
  quantizeInto(type, src, out, options);
  return out;
}

/**
 * Dequantizes the first `n` elements stored in `src` (ggml layout of `type`) into `out`
 * (allocated if absent) and returns it.
 */
export function dequantize(type: GgmlType, src: Uint8Array, n: number, out?: Float32Array): Float32Array {
  const { typeSize, nb } = layout(type, n, 'dequantize');
  const bytes = nb * typeSize;
  if (src.length < bytes) throw new RangeError(`dequantize: src has ${src.length} bytes, ${bytes} needed for ${n} elements`);
  const dst = out ?? new Float32Array(n);
  if (dst.length < n) throw new RangeError(`dequantize: out holds ${dst.length} values, ${n} needed`);
  switch (type) {
    case GgmlType.F32:
      new Uint8Array(dst.buffer, dst.byteOffset, bytes).set(src.subarray(0, bytes));
      break;
    case GgmlType.F16:
    case GgmlType.BF16: {
      const conv = type === GgmlType.F16 ? f16ToF32Array : bf16ToF32Array;
      const view = u16Over(src, n) ?? new Uint16Array(src.slice(0, bytes).buffer);
      conv(view, dst);
      break;
    }
    default:
      BLOCK_CODECS.get(type)![1](src, 0, nb, dst, 0);
  }
  return dst;
}
