/**
 * Bit-exactness of swiglu and attention against llama.cpp's own CPU backend (the graph its
 * llama-graph.cpp builds without flash attention: kq = mul_mat(k, q) over the f16 K cache,
 * soft_max_ext with the causal mask and 1/sqrt(headDim) scale, kqv = mul_mat(v^T, kq)).
 * Why bitwise: see matmul-llamacpp.test.ts; an ulp in silu or attention flips activation quanta
 * of the next quantized matmul. The reference runs those ggml ops through the prebuilt
 * libggml-cpu (ggml-graph-oracle.ts), in a prompt batch of m >= 2 rows (llama.cpp's single-row
 * decode computes attention with other sums: not compared). The K/V view is padded to 256
 * keys with masked keys, as llama.cpp's is. Skipped where the oracle cannot run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GGML_DECLS, lazyGgmlDriver } from './ggml-graph-oracle.js';
import { attention, f32ToF16, kernelPath, setKernelPath, siluMul } from './ops.js';
import { rng } from './ops-testing.js';

const DRIVER =
  GGML_DECLS +
  String.raw`
static ggml_backend* be;
static void compute(ggml_context* cg, ggml_tensor* out) {
  ggml_cgraph* g = ggml_new_graph(cg);
  ggml_build_forward_expand(g, out);
  ggml_backend_alloc_ctx_tensors_from_buft(cg, ggml_backend_cpu_buffer_type());
}
int main(int argc, char** argv) {
  be = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(be, 1);
  ggml_context* cg = ggml_init({1 << 24, nullptr, true});
  std::string op = argv[1];
  if (op == "swiglu" && argc == 6) {  // swiglu n m in out: in = gate f32 [m, n], up f32 [m, n]
    const int64_t n = atoll(argv[2]), m = atoll(argv[3]);
    std::vector<uint8_t> in = readAll(argv[4]);
    ggml_tensor* a = ggml_new_tensor_2d(cg, 0, n, m);
    ggml_tensor* b = ggml_new_tensor_2d(cg, 0, n, m);
    ggml_tensor* o = ggml_swiglu_split(cg, a, b);
    ggml_cgraph* g = ggml_new_graph(cg);
    ggml_build_forward_expand(g, o);
    ggml_backend_alloc_ctx_tensors_from_buft(cg, ggml_backend_cpu_buffer_type());
    ggml_backend_tensor_set(a, in.data(), 0, 4 * n * m);
    ggml_backend_tensor_set(b, in.data() + 4 * n * m, 0, 4 * n * m);
    if (ggml_backend_graph_compute(be, g) != 0) return 3;
    std::vector<float> out(n * m);
    ggml_backend_tensor_get(o, out.data(), 0, out.size() * 4);
    writeAll(argv[5], out.data(), out.size() * 4);
    return 0;
  }
  if (op == "attn" && argc == 10) {
    // attn nh nkv hd n m scale in out: in = q f32 [m, nh*hd], K f16 [n, nkv*hd], V f16 [n, nkv*hd];
    // row i sits at position n - m + i
    const int64_t nh = atoll(argv[2]), nkv = atoll(argv[3]), hd = atoll(argv[4]), n = atoll(argv[5]), m = atoll(argv[6]);
    const float scale = (float)atof(argv[7]);
    const int64_t np = (n + 255) / 256 * 256;
    std::vector<uint8_t> in = readAll(argv[8]);
    const uint8_t* qp = in.data();
    const uint16_t* kp = (const uint16_t*)(qp + 4 * m * nh * hd);
    const uint16_t* vp = kp + n * nkv * hd;
    ggml_tensor* tq = ggml_new_tensor_3d(cg, 0, hd, nh, m);
    ggml_tensor* tk = ggml_new_tensor_3d(cg, 1, hd, nkv, np);
    ggml_tensor* tv = ggml_new_tensor_3d(cg, 1, np, hd, nkv);  // V transposed, as without flash attention
    ggml_tensor* tm = ggml_new_tensor_2d(cg, 0, np, m);
    ggml_tensor* q = ggml_permute(cg, tq, 0, 2, 1, 3);
    ggml_tensor* k = ggml_permute(cg, tk, 0, 2, 1, 3);
    ggml_tensor* kq = ggml_soft_max_ext(cg, ggml_mul_mat(cg, k, q), tm, scale, 0.0f);
    ggml_tensor* o = ggml_cont(cg, ggml_permute(cg, ggml_mul_mat(cg, tv, kq), 0, 2, 1, 3));
    ggml_cgraph* g = ggml_new_graph(cg);
    ggml_build_forward_expand(g, o);
    ggml_backend_alloc_ctx_tensors_from_buft(cg, ggml_backend_cpu_buffer_type());
    ggml_backend_tensor_set(tq, qp, 0, 4 * m * nh * hd);
    std::vector<uint16_t> kc(np * nkv * hd, 0), vt(np * nkv * hd, 0);
    for (int64_t j = 0; j < n; j++)
      for (int64_t c = 0; c < nkv * hd; c++) {
        kc[j * nkv * hd + c] = kp[j * nkv * hd + c];
        vt[c * np + j] = vp[j * nkv * hd + c];  // (j, d, h) -> j + np * (d + hd * h)
      }
    ggml_backend_tensor_set(tk, kc.data(), 0, kc.size() * 2);
    ggml_backend_tensor_set(tv, vt.data(), 0, vt.size() * 2);
    std::vector<float> mask(np * m);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < np; j++) mask[i * np + j] = j <= n - m + i ? 0.0f : -__builtin_inff();
    ggml_backend_tensor_set(tm, mask.data(), 0, mask.size() * 4);
    if (ggml_backend_graph_compute(be, g) != 0) return 3;
    std::vector<float> out(m * nh * hd);
    ggml_backend_tensor_get(o, out.data(), 0, out.size() * 4);
    writeAll(argv[9], out.data(), out.size() * 4);
    return 0;
  }
  return 1;
}
`;

const driver = lazyGgmlDriver(DRIVER);

const bytes = (a: Float32Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const asF32 = (b: Uint8Array): Float32Array => new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);

function firstMismatch(ours: Float32Array, ref: Float32Array): string | undefined {
  assert.equal(ours.length, ref.length);
  for (let i = 0; i < ref.length; i++) if (!Object.is(ours[i], ref[i])) return `out[${i}] = ${ours[i]} but llama.cpp ${ref[i]}`;
  return undefined;
}

test("siluMul equals llama.cpp's swiglu bit for bit (SIMD path, rows of 16k elements and others)", (t) => {
  const d = driver();
  if (!d || kernelPath() === 'scalar') return t.skip('llama.cpp oracle unavailable');
  const next = rng(11);
  // 168, 172, 100: each row's last n % 16 elements take llama.cpp's scalar silu
  for (const [n, m] of [[768, 3], [4864, 2], [64, 5], [168, 3], [172, 2], [100, 4]] as const) {
    const gate = new Float32Array(n * m).map(() => (next() * 2 - 1) * 12); // exp saturates near |x| ~ 88 only
    const up = new Float32Array(n * m).map(() => next() * 2 - 1);
    gate[0] = -100; // exp(100) overflows: silu -> -0 on both sides
    const ref = asF32(d.run(['swiglu', String(n), String(m)], [bytes(gate), bytes(up)]));
    const ours = new Float32Array(n * m);
    siluMul(ours, gate, up, n * m, n);
    assert.equal(firstMismatch(ours, ref), undefined, `n=${n} m=${m}`);
  }
});

test("attention equals llama.cpp's prompt-batch attention bit for bit (AVX-512 grouped path)", (t) => {
  const d = driver();
  if (!d) return t.skip('llama.cpp oracle unavailable');
  const saved = kernelPath();
  setKernelPath('auto');
  try {
    // [numHeads, numKvHeads, headDim, keys, rows]
    const shapes: Array<[number, number, number, number, number]> = [[6, 6, 48, 47, 47], [14, 2, 64, 40, 7], [4, 2, 64, 300, 3], [8, 8, 32, 20, 2]];
    for (const [nh, nkv, hd, n, m] of shapes) {
      const next = rng(nh * 100 + n);
      const q = new Float32Array(m * nh * hd).map(() => (next() * 2 - 1) * 3);
      const kf = new Float32Array(n * nkv * hd).map(() => (next() * 2 - 1) * 3);
      const vf = new Float32Array(n * nkv * hd).map(() => next() * 2 - 1);
      const k = new Uint16Array(kf.length);
      const v = new Uint16Array(vf.length);
      f32ToF16(k, kf, kf.length);
      f32ToF16(v, vf, vf.length);
      const scale = Math.fround(1 / Math.fround(Math.sqrt(hd)));
      const ref = asF32(d.run(['attn', String(nh), String(nkv), String(hd), String(n), String(m), String(scale)], [bytes(q), bytes(k), bytes(v)]));
      const ours = new Float32Array(m * nh * hd);
      const positions = Int32Array.from({ length: m }, (_, i) => n - m + i);
      attention(ours, q, k, v, m, positions, nh, nkv, hd, scale);
      assert.equal(firstMismatch(ours, ref), undefined, `heads ${nh}/${nkv} headDim ${hd} keys ${n} rows ${m}`);
    }
  } finally {
    setKernelPath(saved);
  }
});
