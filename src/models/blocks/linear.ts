/**
 * Projections: y = x·W^T for a weight tensor in any supported ggml type, and the f32 views of
 * small f32 tensors (norm weights, biases, rope factors).
 */
import type { WeightTensor } from '../../weights/store.js';
import { GgmlType, ggmlRowBytes } from '../../gguf/ggml-type.js';
import { addBias, matmul } from '../../native/index.js';

/** F32 view of an F32 tensor's bytes (copied once if the bytes are not 4-aligned). */
const f32Views = new WeakMap<Uint8Array, Float32Array>();
export function f32(t: WeightTensor): Float32Array {
  let view = f32Views.get(t.data);
  if (!view) {
    if (t.type !== GgmlType.F32) throw new TypeError(`tensor '${t.name}' must be f32 (norms, biases, rope factors)`);
    const d = t.data;
    view = d.byteOffset % 4 === 0 ? new Float32Array(d.buffer, d.byteOffset, d.byteLength / 4) : new Float32Array(d.slice().buffer);
    f32Views.set(t.data, view);
  }
  return view;
}

/**
 * out = x·W^T for m rows: W is [nIn, nOut] in ggml order (nOut rows of nIn), x [m, nIn],
 * out [m, nOut]. `rows` selects output rows [start, start + count) of W (a slice of a fused
 * projection such as phi3's attn_qkv); the kernels compute every output row on its own, so a
 * slice gives the same values as the whole.
 */
export function linear(out: Float32Array, w: WeightTensor, x: Float32Array, m: number, rows?: { start: number; count: number }): void {
  const nIn = w.dims[0]!;
  const nOut = w.dims[1] ?? 1;
  if (rows === undefined) {
    matmul(out, w.data, w.type, nOut, nIn, x, m);
    return;
  }
  if (rows.start < 0 || rows.count < 1 || rows.start + rows.count > nOut) {
    throw new RangeError(`linear: rows [${rows.start}, ${rows.start + rows.count}) outside the ${nOut} rows of '${w.name}'`);
  }
  const rowBytes = ggmlRowBytes(w.type, nIn);
  matmul(out, w.data.subarray(rows.start * rowBytes, (rows.start + rows.count) * rowBytes), w.type, rows.count, nIn, x, m);
}

/** x[i, :] += bias for m rows (bias is an f32 tensor [n]). */
export function bias(x: Float32Array, b: WeightTensor, m: number): void {
  addBias(x, f32(b), m, b.dims[0]!);
}
