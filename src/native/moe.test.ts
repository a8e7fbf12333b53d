/**
 * MoE kernels against independent references:
 *  - matmulId vs one plain matmul per expert (bitwise: the kernels are row-invariant) and vs a
 *    naive f64 dot of dequantized weights with the activations as the type's kernels see them
 *    (tolerance), for every weight type, both kernel paths, odd shapes, empty experts;
 *  - moeRoute and moeCombine vs TypeScript with Math.fround steps, and hand-computed values;
 *  - the whole build_moe_ffn block (router, softmax, top-k, renormalised weights, three
 *    mul_mat_id, swiglu, weighted sum) vs llama.cpp's own ggml graph through the prebuilt
 *    libggml-cpu (ggml-graph-oracle.ts), experts in the CPU and CPU_REPACK buffers: bitwise for
 *    quantized experts (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K), f32 summation noise for float ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType, ggmlRowBytes } from '../gguf/ggml-type.js';
import { dequantize, quantize } from '../gguf/quant.js';
import { GGML_DECLS, lazyGgmlDriver } from './ggml-graph-oracle.js';
import { matmul, setKernelPath, getKernelPath } from './matmul.js';
import { matmulId, moeCombine, moeRoute } from './moe.js';
import { siluMul, softmax } from './ops.js';
import { rng } from './ops-testing.js';

const TYPES: Array<[GgmlType, number]> = [
  [GgmlType.F32, 32], [GgmlType.F16, 32], [GgmlType.BF16, 32], [GgmlType.Q8_0, 64], [GgmlType.Q4_0, 64],
  [GgmlType.Q4_K, 256], [GgmlType.Q5_K, 256], [GgmlType.Q6_K, 512],
];

function randomWeights(type: GgmlType, n: number, k: number, next: () => number): Uint8Array {
  return quantize(type, new Float32Array(n * k).map(() => next() * 2 - 1));
}

/** A random routing: per row k distinct experts; pairs grouped by expert (ascending). */
function routing(m: number, E: number, k: number, next: () => number): { ids: Int32Array; groups: number[][] } {
  const ids = new Int32Array(m * k);
  const groups: number[][] = Array.from({ length: E }, () => []);
  for (let i = 0; i < m; i++) {
    const chosen = new Set<number>();
    while (chosen.size < k) chosen.add(Math.floor(next() * E));
    [...chosen].forEach((e, j) => {
      ids[i * k + j] = e;
      groups[e]!.push(i * k + j);
    });
  }
  return { ids, groups };
}

for (const path of ['auto', 'scalar'] as const) {
  test(`matmulId equals one matmul per expert bit for bit, every type (${path} kernels)`, () => {
    const saved = getKernelPath();
    setKernelPath(path);
    try {
      for (const [type, k] of TYPES) {
        for (const [E, topk, m, n] of [[4, 2, 1, 24], [8, 3, 13, 40], [6, 6, 9, 8]] as const) {
          const next = rng(type * 1000 + m);
          const ws = Array.from({ length: E }, () => randomWeights(type, n, k, next));
          const x = new Float32Array(m * k).map(() => next() * 2 - 1);
          const { ids, groups } = routing(m, E, topk, next);
          // Pairs ordered by expert; gate-style call (out row = pair) and down-style (scatter).
          const starts = new Int32Array(E + 1);
          const order: number[] = [];
          groups.forEach((g, e) => {
            order.push(...g);
            starts[e + 1] = starts[e]! + g.length;
          });
          const inRows = Int32Array.from(order, (p) => Math.floor(p / topk));
          const outRows = Int32Array.from(order);
          const dense = new Float32Array(order.length * n);
          matmulId(dense, ws, type, n, k, x, inRows, null, starts);
          const scattered = new Float32Array(m * topk * n).fill(NaN);
          matmulId(scattered, ws, type, n, k, x, inRows, outRows, starts);
          const one = new Float32Array(n);
          for (let p = 0; p < order.length; p++) {
            const pair = order[p]!;
            const e = ids[pair]!;
            matmul(one, ws[e]!, type, n, k, x.subarray(inRows[p]! * k, (inRows[p]! + 1) * k), 1);
            for (let r = 0; r < n; r++) {
              assert.ok(Object.is(dense[p * n + r], one[r]), `type ${type} E${E} m${m}: pair ${p} row ${r}: ${dense[p * n + r]} vs ${one[r]}`);
              assert.ok(Object.is(scattered[pair * n + r], one[r]));
            }
          }
        }
      }
    } finally {
      setKernelPath(saved);
    }
  });
}

test('matmulId is close to a naive f64 dot of dequantized weights (an expert with no rows computes nothing)', () => {
  const next = rng(5);
  for (const [type, k] of TYPES) {
    const E = 3;
    const n = 16;
    const ws = Array.from({ length: E }, () => randomWeights(type, n, k, next));
    const x = new Float32Array(4 * k).map(() => next() * 2 - 1);
    // Expert 1 gets no rows; expert 0 rows 0 and 3, expert 2 rows 1, 2, 3.
    const inRows = Int32Array.of(0, 3, 1, 2, 3);
    const starts = Int32Array.of(0, 2, 2, 5);
    const out = new Float32Array(5 * n);
    matmulId(out, ws, type, n, k, x, inRows, null, starts);
    const group = [0, 0, 2, 2, 2];
    for (let p = 0; p < 5; p++) {
      const w = dequantize(type, ws[group[p]!]!, n * k);
      for (let r = 0; r < n; r++) {
        let ref = 0;
        let mag = 0;
        for (let j = 0; j < k; j++) {
          ref += w[r * k + j]! * x[inRows[p]! * k + j]!;
          mag += Math.abs(w[r * k + j]! * x[inRows[p]! * k + j]!);
        }
        // 8-bit activations for quantized types: error ~ 1% of the magnitude.
        const tol = type === GgmlType.F32 ? 1e-5 * mag : type === GgmlType.F16 || type === GgmlType.BF16 ? 1e-2 * mag : 2e-2 * mag;
        assert.ok(Math.abs(out[p * n + r]! - ref) <= tol + 1e-6, `type ${type} pair ${p} row ${r}: ${out[p * n + r]} vs ${ref}`);
      }
    }
  }
});

/** moeRoute in TypeScript: softmax (the native op, checked against ggml elsewhere), sort, f32 renormalisation. */
function routeRef(logits: Float32Array, m: number, E: number, k: number, normalize: boolean): { ids: number[]; w: number[] } {
  const ids: number[] = [];
  const w: number[] = [];
  for (let i = 0; i < m; i++) {
    const p = logits.slice(i * E, (i + 1) * E);
    softmax(p, E);
    const order = Array.from({ length: E }, (_, e) => e).sort((a, b) => p[b]! - p[a]! || a - b);
    const sel = order.slice(0, k);
    let sum = 0;
    for (const e of sel) sum += p[e]!;
    const s = Math.max(Math.fround(sum), Math.fround(6.103515625e-5));
    for (const e of sel) {
      ids.push(e);
      w.push(normalize ? Math.fround(p[e]! / s) : p[e]!);
    }
  }
  return { ids, w };
}

test('moeRoute: softmax over all experts, top-k descending, renormalised weights (vs TypeScript and by hand)', () => {
  // By hand: logits ln 1, ln 4, ln 2, ln 3 -> probs 0.1, 0.4, 0.2, 0.3; top 2 = experts 1, 3;
  // renormalised 0.4 / 0.7, 0.3 / 0.7.
  const hand = Float32Array.of(0, Math.log(4), Math.log(2), Math.log(3));
  const ids = new Int32Array(2);
  const w = new Float32Array(2);
  moeRoute(hand, 1, 4, 2, ids, w, true);
  assert.deepEqual([...ids], [1, 3]);
  assert.ok(Math.abs(w[0]! - 4 / 7) < 1e-6 && Math.abs(w[1]! - 3 / 7) < 1e-6, `${w}`);
  assert.ok(Math.abs(hand[0]! - 0.1) < 1e-6 && Math.abs(hand[3]! - 0.3) < 1e-6);
  // Random rows, E = 128 (SIMD softmax) and 10 (scalar tail), with and without renormalisation.
  const next = rng(17);
  for (const [E, k, m] of [[128, 8, 9], [10, 3, 5], [60, 4, 3]] as const) {
    for (const normalize of [true, false]) {
      const logits = new Float32Array(m * E).map(() => (next() * 2 - 1) * 4);
      const ref = routeRef(logits, m, E, k, normalize);
      const gotIds = new Int32Array(m * k);
      const gotW = new Float32Array(m * k);
      const probs = logits.slice();
      moeRoute(probs, m, E, k, gotIds, gotW, normalize);
      assert.deepEqual([...gotIds], ref.ids, `E ${E}`);
      for (let i = 0; i < m * k; i++) assert.ok(Object.is(gotW[i], Math.fround(ref.w[i]!)), `E ${E} weight ${i}: ${gotW[i]} vs ${ref.w[i]}`);
      if (normalize) for (let i = 0; i < m; i++) assert.ok(Math.abs(gotW.subarray(i * k, (i + 1) * k).reduce((a, b) => a + b, 0) - 1) < 1e-5);
    }
  }
});

test('moeCombine: ((w0 e0 + w1 e1) + w2 e2) ... in f32 steps, per row', () => {
  const next = rng(3);
  const [m, k, dim] = [5, 3, 37];
  const pairOut = new Float32Array(m * k * dim).map(() => next() * 2 - 1);
  const w = new Float32Array(m * k).map(() => next());
  const out = new Float32Array(m * dim);
  moeCombine(out, pairOut, w, m, k, dim);
  for (let i = 0; i < m; i++) {
    for (let d = 0; d < dim; d++) {
      let acc = Math.fround(pairOut[i * k * dim + d]! * w[i * k]!);
      for (let j = 1; j < k; j++) acc = Math.fround(acc + Math.fround(pairOut[(i * k + j) * dim + d]! * w[i * k + j]!));
      assert.ok(Object.is(out[i * dim + d], acc));
    }
  }
});

test('MoE kernels: typed errors for bad arguments', () => {
  const w = new Uint8Array(4 * 32 * 4);
  const x = new Float32Array(64);
  const out = new Float32Array(16);
  assert.throws(() => matmulId(out, [w], GgmlType.F32, 4, 32, x, Int32Array.of(0), null, Int32Array.of(0, 1, 2)), /starts has 3 entries/);
  assert.throws(() => matmulId(out, [w], GgmlType.F32, 4, 32, x, Int32Array.of(2), null, Int32Array.of(0, 1)), /inRows\[0\] = 2 is outside the 2 rows/);
  assert.throws(() => matmulId(out, [w.subarray(1)], GgmlType.F32, 4, 32, x, Int32Array.of(0), null, Int32Array.of(0, 1)), /ws\[0\] holds/);
  assert.throws(() => matmulId(out, [w], GgmlType.F32, 4, 32, x, Int32Array.of(0), Int32Array.of(9), Int32Array.of(0, 1)), /outRows\[0\] = 9/);
  assert.throws(() => matmulId(out, [w], GgmlType.F32, 4, 32, x, Int32Array.of(0, 0), null, Int32Array.of(1, 2)), /starts\[0\] must be 0/);
  assert.throws(() => matmulId(out, [new Float32Array(4) as unknown as Uint8Array], GgmlType.F32, 4, 32, x, Int32Array.of(0), null, Int32Array.of(0, 1)), TypeError);
  assert.throws(() => matmulId(out, [w], 99 as GgmlType, 4, 32, x, Int32Array.of(0), null, Int32Array.of(0, 1)), /not supported/);
  assert.throws(() => moeRoute(new Float32Array(8), 2, 4, 5, new Int32Array(10), new Float32Array(10), true), /1 <= k <= numExperts/);
  assert.throws(() => moeRoute(new Float32Array(8), 2, 4, 2, new Int32Array(3), new Float32Array(4), true), /ids holds 3/);
  assert.throws(() => moeCombine(new Float32Array(4), new Float32Array(7), new Float32Array(2), 1, 2, 4), /pairOut holds 7/);
});

// ---- the whole block against llama.cpp's graph ----

const DRIVER =
  GGML_DECLS +
  String.raw`
extern "C" {
ggml_tensor* ggml_soft_max(ggml_context*, ggml_tensor*);
ggml_tensor* ggml_argsort_top_k(ggml_context*, ggml_tensor*, int);
ggml_tensor* ggml_get_rows(ggml_context*, ggml_tensor*, ggml_tensor*);
ggml_tensor* ggml_reshape_2d(ggml_context*, ggml_tensor*, int64_t, int64_t);
ggml_tensor* ggml_reshape_3d(ggml_context*, ggml_tensor*, int64_t, int64_t, int64_t);
ggml_tensor* ggml_sum_rows(ggml_context*, ggml_tensor*);
ggml_tensor* ggml_clamp(ggml_context*, ggml_tensor*, float, float);
ggml_tensor* ggml_div(ggml_context*, ggml_tensor*, ggml_tensor*);
ggml_tensor* ggml_mul(ggml_context*, ggml_tensor*, ggml_tensor*);
ggml_tensor* ggml_add(ggml_context*, ggml_tensor*, ggml_tensor*);
ggml_tensor* ggml_mul_mat_id(ggml_context*, ggml_tensor*, ggml_tensor*, ggml_tensor*);
ggml_tensor* ggml_view_2d(ggml_context*, ggml_tensor*, int64_t, int64_t, size_t, size_t);
}
// drv type dim ff E k m repack in out
//   in = x f32 [m, dim], router f32 [E, dim], gate [E, ff, dim], up [E, ff, dim] (type), down [E, dim, ff] (type)
//   out = moe_out f32 [m, dim], ids i32 [m, k], weights f32 [m, k]
int main(int argc, char** argv) {
  if (argc != 10) return 1;
  const int type = atoi(argv[1]);
  const int64_t dim = atoll(argv[2]), ff = atoll(argv[3]), E = atoll(argv[4]), k = atoll(argv[5]), m = atoll(argv[6]);
  const int rp = atoi(argv[7]);
  std::vector<uint8_t> in = readAll(argv[8]);
  const size_t xb = 4 * m * dim, rb = 4 * E * dim, gb = ggml_row_size(type, dim) * ff * E, db = ggml_row_size(type, ff) * dim * E;
  if (in.size() != xb + rb + 2 * gb + db) return 2;
  ggml_backend* be = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(be, 2);
  ggml_context* cw = ggml_init({1 << 20, nullptr, true});
  ggml_tensor* gate = ggml_new_tensor_3d(cw, type, dim, ff, E);
  ggml_tensor* up = ggml_new_tensor_3d(cw, type, dim, ff, E);
  ggml_tensor* down = ggml_new_tensor_3d(cw, type, ff, dim, E);
  ggml_backend_alloc_ctx_tensors_from_buft(cw, rp ? ggml_backend_cpu_repack_buffer_type() : ggml_backend_cpu_buffer_type());
  ggml_backend_tensor_set(gate, in.data() + xb + rb, 0, gb);
  ggml_backend_tensor_set(up, in.data() + xb + rb + gb, 0, gb);
  ggml_backend_tensor_set(down, in.data() + xb + rb + 2 * gb, 0, db);
  ggml_context* cg = ggml_init({1 << 24, nullptr, true});
  ggml_tensor* cur = ggml_new_tensor_2d(cg, 0, dim, m);
  ggml_tensor* router = ggml_new_tensor_2d(cg, 0, dim, E);
  // llama-graph.cpp build_moe_ffn: softmax gating, norm_w, no bias, no scale
  ggml_tensor* logits = ggml_mul_mat(cg, router, cur);
  ggml_tensor* probs = ggml_soft_max(cg, logits);
  ggml_tensor* sel = ggml_argsort_top_k(cg, probs, (int)k);
  ggml_tensor* w = ggml_get_rows(cg, ggml_reshape_3d(cg, probs, 1, E, m), sel);
  w = ggml_reshape_2d(cg, w, k, m);
  ggml_tensor* sum = ggml_clamp(cg, ggml_sum_rows(cg, w), 6.103515625e-5f, __builtin_inff());
  w = ggml_div(cg, w, sum);
  ggml_tensor* w3 = ggml_reshape_3d(cg, w, 1, k, m);
  ggml_tensor* c3 = ggml_reshape_3d(cg, cur, dim, 1, m);
  ggml_tensor* u = ggml_mul_mat_id(cg, up, c3, sel);
  ggml_tensor* g = ggml_mul_mat_id(cg, gate, c3, sel);
  ggml_tensor* act = ggml_swiglu_split(cg, g, u);
  ggml_tensor* ex = ggml_mul(cg, ggml_mul_mat_id(cg, down, act, sel), w3);
  ggml_tensor* o = ggml_view_2d(cg, ex, dim, m, 4 * dim * k, 0);
  for (int64_t i = 1; i < k; i++) o = ggml_add(cg, o, ggml_view_2d(cg, ex, dim, m, 4 * dim * k, 4 * dim * i));
  if (k == 1) o = ggml_cont(cg, o);
  ggml_tensor* selc = ggml_cont(cg, sel);
  ggml_cgraph* gr = ggml_new_graph(cg);
  ggml_build_forward_expand(gr, selc);
  ggml_build_forward_expand(gr, w);
  ggml_build_forward_expand(gr, o);
  ggml_backend_alloc_ctx_tensors_from_buft(cg, ggml_backend_cpu_buffer_type());
  ggml_backend_tensor_set(cur, in.data(), 0, xb);
  ggml_backend_tensor_set(router, in.data() + xb, 0, rb);
  if (ggml_backend_graph_compute(be, gr) != 0) return 3;
  std::vector<uint8_t> out(4 * m * dim + 4 * m * k + 4 * m * k);
  ggml_backend_tensor_get(o, out.data(), 0, 4 * m * dim);
  ggml_backend_tensor_get(selc, out.data() + 4 * m * dim, 0, 4 * m * k);
  ggml_backend_tensor_get(w, out.data() + 4 * m * dim + 4 * m * k, 0, 4 * m * k);
  writeAll(argv[9], out.data(), out.size());
  return 0;
}
`;

const driver = lazyGgmlDriver(DRIVER);

/** The MoE block the way models/blocks/moe.ts runs it, on plain arrays. */
function ourMoe(type: GgmlType, dim: number, ff: number, E: number, k: number, m: number, x: Float32Array, router: Float32Array, gate: Uint8Array, up: Uint8Array, down: Uint8Array) {
  const probs = new Float32Array(m * E);
  matmul(probs, new Uint8Array(router.buffer), GgmlType.F32, E, dim, x, m);
  const ids = new Int32Array(m * k);
  const w = new Float32Array(m * k);
  moeRoute(probs, m, E, k, ids, w, true);
  const groups: number[][] = Array.from({ length: E }, () => []);
  for (let p = 0; p < m * k; p++) groups[ids[p]!]!.push(p);
  const order = groups.flat();
  const starts = new Int32Array(E + 1);
  groups.forEach((g, e) => (starts[e + 1] = starts[e]! + g.length));
  const gB = ggmlRowBytes(type, dim) * ff;
  const dB = ggmlRowBytes(type, ff) * dim;
  const gates = Array.from({ length: E }, (_, e) => gate.subarray(e * gB, (e + 1) * gB));
  const ups = Array.from({ length: E }, (_, e) => up.subarray(e * gB, (e + 1) * gB));
  const downs = Array.from({ length: E }, (_, e) => down.subarray(e * dB, (e + 1) * dB));
  const inRows = Int32Array.from(order, (p) => Math.floor(p / k));
  const hg = new Float32Array(m * k * ff);
  const hu = new Float32Array(m * k * ff);
  matmulId(hg, gates, type, ff, dim, x, inRows, null, starts);
  matmulId(hu, ups, type, ff, dim, x, inRows, null, starts);
  siluMul(hg, hg, hu, m * k * ff);
  const pairOut = new Float32Array(m * k * dim);
  matmulId(pairOut, downs, type, dim, ff, hg, Int32Array.from(order, (_, i) => i), Int32Array.from(order), starts);
  const out = new Float32Array(m * dim);
  moeCombine(out, pairOut, w, m, k, dim);
  return { out, ids, w };
}

test("the MoE block equals llama.cpp's build_moe_ffn graph bit for bit for quantized experts (CPU and CPU_REPACK buffers)", (t) => {
  const d = driver();
  if (!d || getKernelPath() === 'scalar') return t.skip('llama.cpp oracle unavailable');
  const cases: Array<[GgmlType, number, number, number, number, number, boolean]> = [
    // type, dim, ff, E, k, m, repack
    [GgmlType.F32, 64, 32, 8, 2, 5, false],
    [GgmlType.F16, 64, 96, 8, 2, 4, false],
    [GgmlType.Q8_0, 128, 64, 16, 4, 7, false],
    [GgmlType.Q4_0, 128, 64, 16, 4, 6, true],
    [GgmlType.Q4_K, 256, 256, 8, 2, 5, true],
    [GgmlType.Q4_K, 256, 256, 8, 2, 1, true],
    [GgmlType.Q6_K, 256, 256, 8, 3, 3, false],
    [GgmlType.Q5_K, 256, 256, 4, 2, 3, false],
  ];
  for (const [type, dim, ff, E, k, m, repack] of cases) {
    const next = rng(type * 7 + m);
    const x = new Float32Array(m * dim).map(() => next() * 2 - 1);
    const router = new Float32Array(E * dim).map(() => (next() * 2 - 1) * 0.3);
    const gate = randomWeights(type, E * ff, dim, next);
    const up = randomWeights(type, E * ff, dim, next);
    const down = randomWeights(type, E * dim, ff, next);
    const raw: Uint8Array = d.run(
      [String(type), String(dim), String(ff), String(E), String(k), String(m), repack ? '1' : '0'],
      [new Uint8Array(x.buffer), new Uint8Array(router.buffer), gate, up, down],
    );
    const refOut = new Float32Array(raw.buffer, raw.byteOffset, m * dim);
    const refIds: Int32Array = new Int32Array(raw.buffer, raw.byteOffset + 4 * m * dim, m * k);
    const refW = new Float32Array(raw.buffer, raw.byteOffset + 4 * m * dim + 4 * m * k, m * k);
    const ours = ourMoe(type, dim, ff, E, k, m, x, router, gate, up, down);
    const what = `type ${type} dim ${dim} E ${E} k ${k} m ${m}${repack ? ' repack' : ''}`;
    assert.deepEqual([...ours.ids], [...refIds], `${what}: selected experts`);
    for (let i = 0; i < m * k; i++) assert.ok(Object.is(ours.w[i], refW[i]), `${what}: weight ${i} ${ours.w[i]} vs ${refW[i]}`);
    if (type === GgmlType.F32 || type === GgmlType.F16) {
      // ggml_mul_mat_id dots float experts with ggml_vec_dot_f32 / _f16 (4 x 16 lanes), our float
      // kernels in another order (the one of llama.cpp's dense f32 / f16 matmuls): same routing,
      // results within f32 summation noise.
      const scale = refOut.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
      for (let i = 0; i < m * dim; i++) assert.ok(Math.abs(ours.out[i]! - refOut[i]!) <= 2e-6 * scale, `${what}: out[${i}] = ${ours.out[i]} but llama.cpp ${refOut[i]}`);
      continue;
    }
    for (let i = 0; i < m * dim; i++) assert.ok(Object.is(ours.out[i], refOut[i]), `${what}: out[${i}] = ${ours.out[i]} but llama.cpp ${refOut[i]}`);
  }
});
