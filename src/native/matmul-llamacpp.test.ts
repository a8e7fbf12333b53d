/**
 * Bit-exactness of the quantized matmul against llama.cpp's own CPU backend.
 *
 * Why bitwise: both engines re-quantize every matmul input to 8 bits. A last-ulp difference in
 * one matmul moves some activation across a rounding boundary of the next quantization, which
 * changes that activation by a whole quantum (amax / 127); over a few layers this turns ulp
 * noise into logit differences of ~1% (measured on synthetic tiny-15m: our own SIMD vs scalar
 * kernels, each "correct" to 1e-6, differed by 2.3e-2 relative in the logits of a Q8_0 model).
 * Only the same f32 steps as llama.cpp keep the models' logits together, so that is what this
 * test pins:
 *   Q8_0: no repacked layout on x86; tinyBLAS (prompt) and ggml_vec_dot_q8_0_q8_0 (decode) both
 *         keep 8 f32 lanes of 4-quant dots, fma per block, then one horizontal sum.
 *   Q4_0: the REPACK buffer's q4_0x8 GEMV/GEMM: one accumulator, fma per block.
 *   Q4_K: the REPACK q4_Kx8 GEMV (fma per super-block) for rows llama.cpp sends there (the last
 *         m % 4 rows of a batch, all rows of m < 4); its GEMM (rows in groups of 4) does an fma
 *         per 64 quants and so differs from its own GEMV, i.e. llama.cpp is not batch-invariant
 *         there while we are (matmul.h): we follow the GEMV, and only m < 4 is compared.
 * The reference is a small C++ driver that runs ggml_mul_mat through the prebuilt libggml-cpu
 * variant node-llama-cpp would pick on this CPU (ggml-graph-oracle.ts; weights in the
 * CPU_REPACK buffer where llama.cpp puts them). Skipped where g++ or a matching variant is
 * missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../gguf/ggml-type.js';
import { quantize } from '../gguf/quant.js';
import { GGML_DECLS, lazyGgmlDriver } from './ggml-graph-oracle.js';
import { getKernelPath, matmul, matmulSimdPath, setKernelPath } from './matmul.js';
import { rng } from './ops-testing.js';

const DRIVER =
  GGML_DECLS +
  String.raw`
// drv <type> <n> <k> <m> <flags> <in> <out>: in = W (ggml rows) then x f32 [m, k]; out = f32 [m, n].
// flags: bit 0 = weights in the REPACK buffer; bit 1 = one graph per row (m = 1 each: llama.cpp's
// single-row kernel for every row, as its decode runs).
int main(int argc, char** argv) {
  if (argc != 8) return 1;
  const int type = atoi(argv[1]), rp = atoi(argv[5]) & 1, rowwise = atoi(argv[5]) & 2;
  const int64_t n = atoll(argv[2]), k = atoll(argv[3]), m = atoll(argv[4]);
  const size_t wb = ggml_row_size(type, k) * n;
  std::vector<uint8_t> in = readAll(argv[6]);
  if (in.size() != wb + 4 * m * k) return 2;
  ggml_backend* be = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(be, 1);
  ggml_context* cw = ggml_init({1 << 20, nullptr, true});
  ggml_tensor* tw = ggml_new_tensor_2d(cw, type, k, n);
  ggml_backend_alloc_ctx_tensors_from_buft(cw, rp ? ggml_backend_cpu_repack_buffer_type() : ggml_backend_cpu_buffer_type());
  ggml_backend_tensor_set(tw, in.data(), 0, wb);
  std::vector<float> out(m * n);
  const int64_t step = rowwise ? 1 : m;
  for (int64_t r = 0; r < m; r += step) {
    ggml_context* cg = ggml_init({1 << 22, nullptr, true});
    ggml_tensor* tx = ggml_new_tensor_2d(cg, 0, k, step);
    ggml_tensor* to = ggml_mul_mat(cg, tw, tx);
    ggml_cgraph* g = ggml_new_graph(cg);
    ggml_build_forward_expand(g, to);
    ggml_backend_buffer* bx = ggml_backend_alloc_ctx_tensors_from_buft(cg, ggml_backend_cpu_buffer_type());
    ggml_backend_tensor_set(tx, in.data() + wb + 4 * r * k, 0, 4 * step * k);
    if (ggml_backend_graph_compute(be, g) != 0) return 3;
    ggml_backend_tensor_get(to, out.data() + r * n, 0, step * n * 4);
    ggml_backend_buffer_free(bx);
    ggml_free(cg);
  }
  writeAll(argv[7], out.data(), out.size() * 4);
  return 0;
}
`;

const driver = lazyGgmlDriver(DRIVER);

/** llama.cpp's out[m, n] = x[m, k] · W[n, k]^T. */
function ggmlMatmul(type: GgmlType, w: Uint8Array, n: number, k: number, x: Float32Array, m: number, repack: boolean, rowwise = false): Float32Array {
  const flags = (repack ? 1 : 0) | (rowwise ? 2 : 0);
  const b = driver()!.run([String(type), String(n), String(k), String(m), String(flags)], [w, new Uint8Array(x.buffer, x.byteOffset, x.byteLength)]);
  return new Float32Array(b.buffer, b.byteOffset, m * n);
}

function firstMismatch(ours: Float32Array, ref: Float32Array): string | undefined {
  for (let i = 0; i < ref.length; i++) {
    if (!Object.is(ours[i], ref[i])) return `out[${i}] = ${ours[i]} but llama.cpp ${ref[i]}`;
  }
  return undefined;
}

// [type, repack buffer as llama.cpp uses it on x86, shapes [n, k, m]]
// (The scalar kernels do the same steps for Q8_0, Q4_0, Q5_K and Q6_K and are checked too.)
const CASES: Array<[GgmlType, boolean, Array<[number, number, number]>]> = [
  [GgmlType.Q8_0, false, [[64, 288, 1], [48, 288, 2], [40, 768, 3], [64, 288, 4], [24, 512, 7], [16, 1024, 9]]],
  [GgmlType.Q4_0, true, [[64, 288, 1], [48, 288, 2], [40, 768, 3], [64, 288, 4], [24, 512, 7], [16, 1024, 9]]],
  // 768, 1280, 4864: 3, 5 and 19 super-blocks (4864 = qwen2.5-0.5b's n_ff, its ffn_down rows)
  [GgmlType.Q4_K, true, [[64, 256, 1], [48, 768, 2], [40, 512, 3], [16, 1280, 1], [16, 4864, 1], [8, 4864, 3]]],
];

// Q5_K / Q6_K: no repacked layout on x86; ggml_vec_dot_q{5,6}_K_q8_K for every row of any m.
// m = 33 runs our repacked panels (VNNI builds: Q5_K from m = 16, Q6_K from 32; rows 16..23 a
// partial panel), m = 17 Q5_K's panels and Q6_K's row tiles, the smaller m row tiles.
CASES.push([GgmlType.Q5_K, false, [[32, 768, 1], [16, 256, 3], [24, 512, 17], [20, 512, 33]]]);
CASES.push([GgmlType.Q6_K, false, [[32, 768, 1], [16, 256, 3], [24, 512, 17], [20, 512, 33]]]);

// The new types (matmul_legacy.cc, matmul_k23.cc, matmul_iq4.cc). Q4_1, Q5_1, Q3_K: vec_dot for
// every row of any m. Q5_0: vec_dot at m = 1, tinyBLAS for m >= 2 (the same lanes). IQ4_NL, Q2_K:
// the REPACK buffer (n % 8 == 0); Q2_K's GEMM (m >= 4 in groups of 4) sums per 128 quants and
// differs from its own GEMV, so only m < 4 is compared (as Q4_K). IQ4_XS: vec_dot below m = 8
// (its IQ panel GEMM from 8 rows on sums otherwise: m < 8 compared).
const LEGACY_SHAPES: Array<[number, number, number]> = [[64, 288, 1], [48, 288, 2], [40, 768, 3], [64, 288, 4], [24, 512, 7], [16, 1024, 9], [24, 512, 33]];
const K_SHAPES: Array<[number, number, number]> = [[32, 768, 1], [16, 256, 3], [24, 512, 17], [24, 512, 33]];
CASES.push([GgmlType.Q4_1, false, LEGACY_SHAPES]);
CASES.push([GgmlType.Q5_0, false, LEGACY_SHAPES]);
CASES.push([GgmlType.Q5_1, false, LEGACY_SHAPES]);
CASES.push([GgmlType.IQ4_NL, true, LEGACY_SHAPES]);
CASES.push([GgmlType.Q3_K, false, K_SHAPES]);
CASES.push([GgmlType.Q2_K, true, [[64, 256, 1], [48, 768, 2], [40, 512, 3], [16, 1280, 2], [8, 4864, 1]]]);
CASES.push([GgmlType.IQ4_XS, false, [[32, 768, 1], [16, 256, 3], [24, 512, 7], [16, 1280, 5], [16, 4864, 1], [8, 4864, 7]]]);

// F32: llama.cpp runs tinyBLAS (16 lanes) for m >= 2 when k % 16 == 0, ggml_vec_dot_f32 (64
// elements per step, leftovers one by one) for m = 1 and for every m when k % 16 != 0. We follow
// tinyBLAS where it runs and vec_dot where it always runs, so every m is compared for rows of
// other lengths, and m >= 2 for multiples of 16 (m = 1 there: rounding-level differences, the
// price of batch invariance, as Q4_K's GEMM the other way round).
CASES.push([GgmlType.F32, false, [[32, 256, 2], [24, 288, 5], [32, 168, 1], [24, 172, 3], [16, 100, 6], [16, 40, 2], [8, 1000, 4], [64, 172, 45]]]);

/** Types whose scalar kernels do llama.cpp's steps too (Q4_K's scalar kernel does not). */
const SCALAR_EXACT = new Set([
  GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q5_K, GgmlType.Q6_K,
  GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
]);

/** Skips `t` (and returns true) where the oracle or the SIMD kernels are missing. */
function unavailable(t: { skip(msg: string): void }): boolean {
  if (!driver()) {
    t.skip('no g++ or no libggml-cpu variant for this CPU');
    return true;
  }
  if (matmulSimdPath() === 'none') {
    t.skip('portable build without the SIMD kernels');
    return true;
  }
  return false;
}

/** Random weights (quantized to `type`) [n, k] and activations [m, k] seeded by the shape. */
function randomCase(type: GgmlType, n: number, k: number, m: number): { w: Uint8Array; x: Float32Array } {
  const next = rng(n * 7919 + k * 31 + m);
  const wf = new Float32Array(n * k);
  for (let i = 0; i < wf.length; i++) wf[i] = (next() * 2 - 1) * 0.5;
  const w = quantize(type, wf);
  const x = new Float32Array(m * k);
  for (let i = 0; i < x.length; i++) x[i] = (next() * 2 - 1) * 2;
  return { w, x };
}

for (const [type, repack, shapes] of CASES) {
  test(`matmul ${GgmlType[type]} equals llama.cpp's CPU backend bit for bit`, (t) => {
    if (unavailable(t)) return;
    const saved = getKernelPath();
    const paths = SCALAR_EXACT.has(type) ? (['scalar', 'auto'] as const) : (['auto'] as const);
    try {
      for (const path of paths) for (const [n, k, m] of shapes) {
        setKernelPath(path);
        const { w, x } = randomCase(type, n, k, m);
        const ref = ggmlMatmul(type, w, n, k, x, m, repack);
        const ours = new Float32Array(m * n);
        matmul(ours, w, type, n, k, x, m);
        const bad = firstMismatch(ours, ref);
        assert.equal(bad, undefined, `${path} path, n=${n} k=${k} m=${m}: ${bad}`);
      }
    } finally {
      setKernelPath(saved);
    }
  });
}

// Where llama.cpp is not batch-invariant (Q4_K and Q2_K: its REPACK GEMM for rows in groups of
// 4; IQ4_XS: its IQ panels from 8 rows on), our batched kernels keep its single-row kernel's
// steps: every row of a batch of m equals llama.cpp's m = 1 result for that row (what its decode
// computes), bit for bit. llama.cpp's own batch of the same rows differs from its m = 1 rows by
// rounding: measured by this test (one thread, 2026-12-05), max |diff| relative to the largest
// output: Q4_K k = 768 m = 13 4.6e-7, k = 4864 (19 super-blocks) m = 45 6.1e-7; Q2_K k = 1280
// m = 9 2.3e-7; IQ4_XS k = 768 7.3e-8, k = 4864 1.7e-7. The same size at 1, 2, 3, 5 or 19
// super-blocks (k = 256..4864, m = 4..45): nothing depends on an odd count. Re-quantized to 8 bits at
// every layer, such differences grow to ~1e-2 of the logits of a deep model (llamacpp.test.ts:
// the same files agree to ~3e-8 when llama.cpp evaluates one token at a time).
const GEMV_ROWS: Array<[GgmlType, boolean, Array<[number, number, number]>]> = [
  [GgmlType.Q4_K, true, [[16, 768, 13], [16, 4864, 45]]],
  [GgmlType.Q2_K, true, [[16, 1280, 9]]],
  [GgmlType.IQ4_XS, false, [[16, 768, 13], [16, 4864, 45]]],
];
for (const [type, repack, shapes] of GEMV_ROWS) {
  test(`batched ${GgmlType[type]} equals llama.cpp's single-row kernel row by row (its own batches differ by rounding)`, (t) => {
    if (unavailable(t)) return;
    for (const [n, k, m] of shapes) {
      const { w, x } = randomCase(type, n, k, m);
      const rows = ggmlMatmul(type, w, n, k, x, m, repack, true);
      const ours = new Float32Array(m * n);
      matmul(ours, w, type, n, k, x, m);
      const bad = firstMismatch(ours, rows);
      assert.equal(bad, undefined, `n=${n} k=${k} m=${m}: ${bad}`);
      // llama.cpp's batch: the same values up to rounding (the measured differences above).
      const batch = ggmlMatmul(type, w, n, k, x, m, repack);
      let maxDiff = 0;
      let maxAbs = 0;
      for (let i = 0; i < rows.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(batch[i]! - rows[i]!));
        maxAbs = Math.max(maxAbs, Math.abs(rows[i]!));
      }
      t.diagnostic(`k=${k} m=${m}: llama.cpp's batch vs its single rows: max diff ${(maxDiff / maxAbs).toExponential(2)} relative`);
      assert.ok(maxDiff <= 1e-5 * maxAbs, `llama.cpp's batch differs from its rows by ${maxDiff} (> 1e-5 relative)`);
    }
  });
}
