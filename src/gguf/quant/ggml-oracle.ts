/**
 * Test helper: llama.cpp's own code as an oracle. The prebuilt node-llama-cpp package
 * (@node-llama-cpp/linux-x64, a pinned dev dependency) ships libggml-base.so, which exports
 * quantize_row_*_ref / dequantize_row_* and the f16/bf16 row converters, and
 * libggml-cpu-x64.so (the baseline x86-64 CPU backend), which exports the activation
 * quantizers and the quantized dot products (ggml_vec_dot_<w>_q8_<0|K>, SIMD and _generic).
 * A small C++ driver is compiled against them once per process (g++) and fed through
 * stdin/stdout. Native kernel tests can use ggmlVecDot as an independent reference.
 * @internal
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GgmlType } from '../ggml-type.js';

const DRIVER = String.raw`
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <string>
typedef void (*QFn)(const float*, void*, int64_t);
typedef void (*DFn)(const void*, float*, int64_t);
typedef void (*VecDot)(int, float*, size_t, const void*, size_t, const void*, size_t, int);
extern "C" {
#define REF(t) void quantize_row_##t##_ref(const float*, void*, int64_t); void dequantize_row_##t(const void*, float*, int64_t);
REF(q4_0) REF(q4_1) REF(q5_0) REF(q5_1) REF(q8_0) REF(q2_K) REF(q3_K) REF(q4_K) REF(q5_K) REF(q6_K) REF(q8_K)
REF(iq4_nl) REF(iq4_xs)
void quantize_row_q8_1_ref(const float*, void*, int64_t);
void ggml_fp32_to_fp16_row(const float*, uint16_t*, int64_t);
void ggml_fp32_to_bf16_row_ref(const float*, uint16_t*, int64_t);
size_t ggml_quantize_chunk(int, const float*, void*, int64_t, int64_t, int64_t, const float*);
// ggml-cpu (libggml-cpu-x64.so: the baseline x86-64 build)
void ggml_cpu_init(void);
void quantize_row_q8_0(const float*, void*, int64_t);
void quantize_row_q8_1(const float*, void*, int64_t);
void quantize_row_q8_K(const float*, void*, int64_t);
#define DOT(w, a) void ggml_vec_dot_##w##_##a(int, float*, size_t, const void*, size_t, const void*, size_t, int); \
  void ggml_vec_dot_##w##_##a##_generic(int, float*, size_t, const void*, size_t, const void*, size_t, int);
DOT(q4_0, q8_0) DOT(q4_1, q8_1) DOT(q5_0, q8_0) DOT(q5_1, q8_1) DOT(q8_0, q8_0) DOT(q2_K, q8_K) DOT(q3_K, q8_K)
DOT(q4_K, q8_K) DOT(q5_K, q8_K) DOT(q6_K, q8_K) DOT(iq4_nl, q8_0) DOT(iq4_xs, q8_K)
}
struct Type { int id; long bs, ts; QFn q; DFn d; VecDot dot, dotGeneric; int act; };
#define T(id, t, bs, ts, a, act) {id, bs, ts, quantize_row_##t##_ref, dequantize_row_##t, ggml_vec_dot_##t##_##a, ggml_vec_dot_##t##_##a##_generic, act}
static const Type TYPES[] = {
  T(2, q4_0, 32, 18, q8_0, 8), T(3, q4_1, 32, 20, q8_1, 9), T(6, q5_0, 32, 22, q8_0, 8), T(7, q5_1, 32, 24, q8_1, 9),
  T(8, q8_0, 32, 34, q8_0, 8), T(10, q2_K, 256, 84, q8_K, 15), T(11, q3_K, 256, 110, q8_K, 15),
  T(12, q4_K, 256, 144, q8_K, 15), T(13, q5_K, 256, 176, q8_K, 15), T(14, q6_K, 256, 210, q8_K, 15),
  T(20, iq4_nl, 32, 18, q8_0, 8), T(23, iq4_xs, 256, 136, q8_K, 15),
  {9, 32, 36, quantize_row_q8_1_ref, nullptr, nullptr, nullptr, 0},
  {15, 256, 292, quantize_row_q8_K_ref, dequantize_row_q8_K, nullptr, nullptr, 0},
  {1, 1, 2, nullptr, nullptr, nullptr, nullptr, 0}, {30, 1, 2, nullptr, nullptr, nullptr, nullptr, 0},
};
static const Type* find(int id) { for (const Type& t : TYPES) if (t.id == id) return &t; return nullptr; }
static long rowBytes(const Type* t, long n) { return n / t->bs * t->ts; }
// dot <type> <n> <generic 0|1>: stdin = weight row (type) then activation row (its vec_dot type)
static int dot(const Type* t, long n, bool generic) {
  if (!t->dot) return 3;
  long wb = rowBytes(t, n), ab = rowBytes(find(t->act), n);
  std::vector<uint8_t> w(wb), a(ab);
  if (fread(w.data(), 1, wb, stdin) != (size_t)wb || fread(a.data(), 1, ab, stdin) != (size_t)ab) return 4;
  float s = 0; (generic ? t->dotGeneric : t->dot)((int)n, &s, 0, w.data(), 0, a.data(), 0, 1);
  fwrite(&s, 4, 1, stdout);
  return 0;
}
int main(int argc, char** argv) {
  if (argc < 4) return 2;
  std::string op = argv[1]; const Type* t = find(atoi(argv[2])); long n = atol(argv[3]);
  if (!t) return 3;
  ggml_cpu_init();
  if (op == "dot") return dot(t, n, argc > 4 && argv[4][0] == '1');
  std::vector<float> x;
  if (op != "d") { x.resize(n); if (fread(x.data(), 4, n, stdin) != (size_t)n) return 4; }
  std::vector<uint8_t> y(rowBytes(t, n), 0);
  if (op == "act") { // ggml-cpu's activation quantizer (quantize_row_q8_0 / q8_1 / q8_K)
    if (t->id == 8) quantize_row_q8_0(x.data(), y.data(), n); else if (t->id == 9) quantize_row_q8_1(x.data(), y.data(), n);
    else if (t->id == 15) quantize_row_q8_K(x.data(), y.data(), n); else return 3;
  } else if (op == "chunk") { // ggml_quantize_chunk: what llama_model_quantize writes without an imatrix
    long rows = atol(argv[4]);
    ggml_quantize_chunk(t->id, x.data(), y.data(), 0, rows, n / rows, nullptr);
  } else if (op == "q") {
    if (t->id == 1) ggml_fp32_to_fp16_row(x.data(), (uint16_t*)y.data(), n);
    else if (t->id == 30) ggml_fp32_to_bf16_row_ref(x.data(), (uint16_t*)y.data(), n);
    else t->q(x.data(), y.data(), n);
  } else if (op == "d") {
    if (!t->d) return 5;
    if (fread(y.data(), 1, y.size(), stdin) != y.size()) return 4;
    std::vector<float> out(n); t->d(y.data(), out.data(), n);
    fwrite(out.data(), 4, n, stdout);
    return 0;
  } else return 2;
  fwrite(y.data(), 1, y.size(), stdout);
  return 0;
}
`;

let binary: string | undefined;

/** Directory of the prebuilt llama.cpp libraries node-llama-cpp ships for linux-x64. */
export function llamaCppLibDir(): string {
  const require = createRequire(import.meta.url);
  // the package exports only its dist/index.js: its root is one level up
  const entry = require.resolve('@node-llama-cpp/linux-x64');
  const dir = join(dirname(entry), '..', 'bins', 'linux-x64');
  if (!existsSync(join(dir, 'libggml-base.so'))) throw new Error(`libggml-base.so not found in ${dir}`);
  return dir;
}

function driver(): string {
  if (binary) return binary;
  const lib = llamaCppLibDir();
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-ggml-oracle-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'oracle.cc'), DRIVER);
  const out = join(dir, 'oracle');
  execFileSync('g++', ['-O1', '-o', out, join(dir, 'oracle.cc'), `-L${lib}`, '-l:libggml-cpu-x64.so', '-l:libggml-base.so', `-Wl,-rpath,${lib}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  binary = out;
  return out;
}

/** ggml's quantize_row_<type>_ref (or fp16/bf16 row conversion) of `x`. */
export function ggmlQuantize(type: GgmlType, x: Float32Array): Uint8Array {
  const res = execFileSync(driver(), ['q', String(type), String(x.length)], {
    input: new Uint8Array(x.buffer, x.byteOffset, x.byteLength),
    maxBuffer: 1 << 30,
  });
  return new Uint8Array(res.buffer, res.byteOffset, res.byteLength);
}

/** ggml's dequantize_row_<type> of `n` elements. */
export function ggmlDequantize(type: GgmlType, y: Uint8Array, n: number): Float32Array {
  const res = execFileSync(driver(), ['d', String(type), String(n)], { input: y, maxBuffer: 1 << 30 });
  return new Float32Array(res.buffer.slice(res.byteOffset, res.byteOffset + res.byteLength));
}

/**
 * ggml_quantize_chunk of `rows` rows (x.length / rows each): what llama_model_quantize writes
 * without an importance matrix (for most types quantize_row_*_ref; IQ4_NL searches its scale).
 */
export function ggmlQuantizeChunk(type: GgmlType, x: Float32Array, rows = 1): Uint8Array {
  const res = execFileSync(driver(), ['chunk', String(type), String(x.length), String(rows)], {
    input: new Uint8Array(x.buffer, x.byteOffset, x.byteLength),
    maxBuffer: 1 << 30,
  });
  return new Uint8Array(res.buffer, res.byteOffset, res.byteLength);
}

/** ggml-cpu's activation quantizer for `type` (quantize_row_q8_0 / q8_1 / q8_K). */
export function ggmlQuantizeActivations(type: GgmlType.Q8_0 | GgmlType.Q8_1 | GgmlType.Q8_K, x: Float32Array): Uint8Array {
  const res = execFileSync(driver(), ['act', String(type), String(x.length)], {
    input: new Uint8Array(x.buffer, x.byteOffset, x.byteLength),
    maxBuffer: 1 << 30,
  });
  return new Uint8Array(res.buffer, res.byteOffset, res.byteLength);
}

/**
 * llama.cpp's dot product of one quantized weight row of `n` elements against an activation row
 * in its vec_dot type (Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K for the
 * K-quants and IQ4_XS): ggml_vec_dot_<type>_q8_<0|1|K> of the baseline x86-64 CPU backend, or
 * its scalar `_generic` version when `generic`.
 */
export function ggmlVecDot(type: GgmlType, weights: Uint8Array, activations: Uint8Array, n: number, generic = false): number {
  const input = new Uint8Array(weights.length + activations.length);
  input.set(weights);
  input.set(activations, weights.length);
  const res = execFileSync(driver(), ['dot', String(type), String(n), generic ? '1' : '0'], { input });
  return new DataView(res.buffer, res.byteOffset, 4).getFloat32(0, true);
}
