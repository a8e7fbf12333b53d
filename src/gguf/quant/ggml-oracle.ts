/**
 * Test helper: llama.cpp's own quantizers as an oracle. The prebuilt node-llama-cpp package
 * (@node-llama-cpp/linux-x64, a pinned dev dependency) ships libggml-base.so, which exports
 * quantize_row_*_ref / dequantize_row_* and the f16/bf16 row converters. A ~40-line C++ driver
 * is compiled against it once per process (g++), and fed through stdin/stdout.
 * @internal
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
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
}
typedef void (*QFn)(const float*, void*, int64_t);
typedef void (*DFn)(const void*, float*, int64_t);
int main(int argc, char** argv) {
  if (argc != 4) return 2;
  std::string op = argv[1]; int type = atoi(argv[2]); long n = atol(argv[3]);
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
  writeFileSync(join(dir, 'oracle.cc'), DRIVER);
  const out = join(dir, 'oracle');
  execFileSync('g++', ['-O1', '-o', out, join(dir, 'oracle.cc'), `-L${lib}`, '-l:libggml-base.so', `-Wl,-rpath,${lib}`], {
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
