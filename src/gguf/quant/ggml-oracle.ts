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
#include <cstring>
#include <vector>
#include <string>
extern "C" {
void quantize_row_q4_0_ref(const float*, void*, int64_t);
void quantize_row_q8_0_ref(const float*, void*, int64_t);
void quantize_row_q4_K_ref(const float*, void*, int64_t);
void quantize_row_q5_K_ref(const float*, void*, int64_t);
void quantize_row_q6_K_ref(const float*, void*, int64_t);
void quantize_row_q8_K_ref(const float*, void*, int64_t);
void dequantize_row_q4_0(const void*, float*, int64_t);
void dequantize_row_q8_0(const void*, float*, int64_t);
void dequantize_row_q4_K(const void*, float*, int64_t);
void dequantize_row_q5_K(const void*, float*, int64_t);
void dequantize_row_q6_K(const void*, float*, int64_t);
void dequantize_row_q8_K(const void*, float*, int64_t);
void ggml_fp32_to_fp16_row(const float*, uint16_t*, int64_t);
void ggml_fp32_to_bf16_row_ref(const float*, uint16_t*, int64_t);
// ggml-cpu (libggml-cpu-x64.so: the baseline x86-64 build)
void ggml_cpu_init(void);
void quantize_row_q8_0(const float*, void*, int64_t);
void quantize_row_q8_K(const float*, void*, int64_t);
typedef void (*VecDot)(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q4_0_q8_0(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q8_0_q8_0(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q4_K_q8_K(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q5_K_q8_K(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q6_K_q8_K(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q4_0_q8_0_generic(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q8_0_q8_0_generic(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q4_K_q8_K_generic(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q5_K_q8_K_generic(int, float*, size_t, const void*, size_t, const void*, size_t, int);
void ggml_vec_dot_q6_K_q8_K_generic(int, float*, size_t, const void*, size_t, const void*, size_t, int);
}
typedef void (*QFn)(const float*, void*, int64_t);
typedef void (*DFn)(const void*, float*, int64_t);
static long rowBytes(int type, long n) {
  switch (type) {
    case 2: return n / 32 * 18;
    case 8: return n / 32 * 34;
    case 12: return n / 256 * 144;
    case 13: return n / 256 * 176;
    case 14: return n / 256 * 210;
    case 15: return n / 256 * 292;
  }
  return -1;
}
// dot <type> <n> <generic 0|1>: stdin = weight row (type) then activation row (q8_0 or q8_K)
static int dot(int type, long n, bool generic) {
  VecDot f = nullptr; int act = 15;
  switch (type) {
    case 2: f = generic ? ggml_vec_dot_q4_0_q8_0_generic : ggml_vec_dot_q4_0_q8_0; act = 8; break;
    case 8: f = generic ? ggml_vec_dot_q8_0_q8_0_generic : ggml_vec_dot_q8_0_q8_0; act = 8; break;
    case 12: f = generic ? ggml_vec_dot_q4_K_q8_K_generic : ggml_vec_dot_q4_K_q8_K; break;
    case 13: f = generic ? ggml_vec_dot_q5_K_q8_K_generic : ggml_vec_dot_q5_K_q8_K; break;
    case 14: f = generic ? ggml_vec_dot_q6_K_q8_K_generic : ggml_vec_dot_q6_K_q8_K; break;
    default: return 3;
  }
  long wb = rowBytes(type, n), ab = rowBytes(act, n);
  std::vector<uint8_t> w(wb), a(ab);
  if (fread(w.data(), 1, wb, stdin) != (size_t)wb || fread(a.data(), 1, ab, stdin) != (size_t)ab) return 4;
  float s = 0; f((int)n, &s, 0, w.data(), 0, a.data(), 0, 1);
  fwrite(&s, 4, 1, stdout);
  return 0;
}
int main(int argc, char** argv) {
  if (argc < 4) return 2;
  std::string op = argv[1]; int type = atoi(argv[2]); long n = atol(argv[3]);
  ggml_cpu_init();
  if (op == "dot") return dot(type, n, argc > 4 && argv[4][0] == '1');
  if (op == "act") { // ggml-cpu's activation quantizer (quantize_row_q8_0 / quantize_row_q8_K)
    std::vector<float> x(n); if (fread(x.data(), 4, n, stdin) != (size_t)n) return 4;
    std::vector<uint8_t> y(rowBytes(type, n));
    if (type == 8) quantize_row_q8_0(x.data(), y.data(), n); else if (type == 15) quantize_row_q8_K(x.data(), y.data(), n); else return 3;
    fwrite(y.data(), 1, y.size(), stdout);
    return 0;
  }
  QFn q = nullptr; DFn d = nullptr; long bs = 1, ts = 2;
  switch (type) {
    case 2: q = quantize_row_q4_0_ref; d = dequantize_row_q4_0; bs = 32; ts = 18; break;
    case 8: q = quantize_row_q8_0_ref; d = dequantize_row_q8_0; bs = 32; ts = 34; break;
    case 12: q = quantize_row_q4_K_ref; d = dequantize_row_q4_K; bs = 256; ts = 144; break;
    case 13: q = quantize_row_q5_K_ref; d = dequantize_row_q5_K; bs = 256; ts = 176; break;
    case 14: q = quantize_row_q6_K_ref; d = dequantize_row_q6_K; bs = 256; ts = 210; break;
    case 15: q = quantize_row_q8_K_ref; d = dequantize_row_q8_K; bs = 256; ts = 292; break;
    case 1: case 30: break;
    default: return 3;
  }
  long bytes = n / bs * ts;
  if (op == "q") {
    std::vector<float> x(n); if (fread(x.data(), 4, n, stdin) != (size_t)n) return 4;
    std::vector<uint8_t> y(bytes, 0);
    if (type == 1) ggml_fp32_to_fp16_row(x.data(), (uint16_t*)y.data(), n);
    else if (type == 30) ggml_fp32_to_bf16_row_ref(x.data(), (uint16_t*)y.data(), n);
    else q(x.data(), y.data(), n);
    fwrite(y.data(), 1, bytes, stdout);
  } else {
    if (!d) return 5;
    std::vector<uint8_t> y(bytes); if (fread(y.data(), 1, bytes, stdin) != (size_t)bytes) return 4;
    std::vector<float> x(n); d(y.data(), x.data(), n);
    fwrite(x.data(), 4, n, stdout);
  }
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

/** ggml-cpu's activation quantizer for `type` (Q8_0: quantize_row_q8_0, Q8_K: quantize_row_q8_K). */
export function ggmlQuantizeActivations(type: GgmlType.Q8_0 | GgmlType.Q8_K, x: Float32Array): Uint8Array {
  const res = execFileSync(driver(), ['act', String(type), String(x.length)], {
    input: new Uint8Array(x.buffer, x.byteOffset, x.byteLength),
    maxBuffer: 1 << 30,
  });
  return new Uint8Array(res.buffer, res.byteOffset, res.byteLength);
}

/**
 * llama.cpp's dot product of one quantized weight row (`type`: Q4_0/Q8_0 against Q8_0
 * activations, Q4_K/Q5_K/Q6_K against Q8_K) of `n` elements: ggml_vec_dot_<type>_q8_<0|K> of
 * the baseline x86-64 CPU backend, or its scalar `_generic` version when `generic`.
 */
export function ggmlVecDot(type: GgmlType, weights: Uint8Array, activations: Uint8Array, n: number, generic = false): number {
  const input = new Uint8Array(weights.length + activations.length);
  input.set(weights);
  input.set(activations, weights.length);
  const res = execFileSync(driver(), ['dot', String(type), String(n), generic ? '1' : '0'], { input });
  return new DataView(res.buffer, res.byteOffset, 4).getFloat32(0, true);
}
