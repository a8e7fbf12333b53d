/**
 * Test helper: compiles a small C++ driver against the prebuilt llama.cpp CPU backend that
 * node-llama-cpp ships (libggml-base + the libggml-cpu variant its loader would choose on this
 * CPU), so tests can run real ggml graphs (ggml_mul_mat, ggml_swiglu_split, soft_max, ...) as
 * an oracle. The drivers declare the few ggml C functions they use themselves (the package has
 * the libraries, not the headers): GGML_DECLS below. Returns null where it cannot run (no
 * g++, not linux-x64, no matching variant), so callers skip.
 * @internal
 */
import { execFileSync } from 'node:child_process';
import { after } from 'node:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { llamaCppLibDir } from '../gguf/quant/ggml-oracle.js';

/** ggml's public C API subset the drivers use. */
export const GGML_DECLS = String.raw`
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
extern "C" {
struct ggml_init_params { size_t mem_size; void* mem_buffer; bool no_alloc; };
struct ggml_context; struct ggml_tensor; struct ggml_cgraph; struct ggml_backend;
struct ggml_backend_buffer_type; struct ggml_backend_buffer;
ggml_context* ggml_init(ggml_init_params);
void ggml_free(ggml_context*);
ggml_tensor* ggml_new_tensor_1d(ggml_context*, int, int64_t);
ggml_tensor* ggml_new_tensor_2d(ggml_context*, int, int64_t, int64_t);
ggml_tensor* ggml_new_tensor_3d(ggml_context*, int, int64_t, int64_t, int64_t);
ggml_tensor* ggml_mul_mat(ggml_context*, ggml_tensor*, ggml_tensor*);
ggml_tensor* ggml_swiglu_split(ggml_context*, ggml_tensor*, ggml_tensor*);
ggml_tensor* ggml_soft_max_ext(ggml_context*, ggml_tensor*, ggml_tensor*, float, float);
ggml_tensor* ggml_permute(ggml_context*, ggml_tensor*, int, int, int, int);
ggml_tensor* ggml_cont(ggml_context*, ggml_tensor*);
ggml_cgraph* ggml_new_graph(ggml_context*);
void ggml_build_forward_expand(ggml_cgraph*, ggml_tensor*);
ggml_backend_buffer* ggml_backend_alloc_ctx_tensors_from_buft(ggml_context*, ggml_backend_buffer_type*);
void ggml_backend_buffer_free(ggml_backend_buffer*);
void ggml_backend_tensor_set(ggml_tensor*, const void*, size_t, size_t);
void ggml_backend_tensor_get(const ggml_tensor*, void*, size_t, size_t);
ggml_backend* ggml_backend_cpu_init(void);
void ggml_backend_cpu_set_n_threads(ggml_backend*, int);
int ggml_backend_graph_compute(ggml_backend*, ggml_cgraph*);
ggml_backend_buffer_type* ggml_backend_cpu_buffer_type(void);
size_t ggml_row_size(int, int64_t);
size_t ggml_nbytes(const ggml_tensor*);
}
ggml_backend_buffer_type* ggml_backend_cpu_repack_buffer_type();  // C++ linkage in ggml-cpu
static std::vector<uint8_t> readAll(const char* path) {
  std::vector<uint8_t> b; FILE* f = fopen(path, "rb"); if (!f) exit(2);
  uint8_t tmp[65536]; size_t r; while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) b.insert(b.end(), tmp, tmp + r);
  fclose(f); return b;
}
static void writeAll(const char* path, const void* p, size_t n) {
  FILE* f = fopen(path, "wb"); if (!f || fwrite(p, 1, n, f) != n) exit(4); fclose(f);
}
`;

/** The libggml-cpu variant llama.cpp's loader would choose here (its best-scoring x86 build). */
function cpuVariant(): string | undefined {
  let flags: Set<string>;
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    flags = new Set((/^flags\s*:(.*)$/m.exec(info)?.[1] ?? '').trim().split(/\s+/));
  } catch {
    return undefined;
  }
  const has = (...f: string[]): boolean => f.every((x) => flags.has(x));
  // Zen 4 build: AVX-512 F/BW/DQ/VL/VBMI/VNNI/BF16. Haswell build: AVX2 + FMA + F16C.
  if (has('avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512vbmi', 'avx512_vnni', 'avx512_bf16')) return 'zen4';
  if (has('avx2', 'fma', 'f16c') && !flags.has('avx512f')) return 'haswell';
  return undefined;
}

/** A compiled driver: run(args, input) writes input to a file, runs, returns the output file. */
export interface GgmlDriver {
  run(args: string[], input: Uint8Array[]): Uint8Array;
  /** Removes the temporary directory. */
  dispose(): void;
}

/** Compiles `source` (which should start with GGML_DECLS); null where that is not possible. */
export function compileGgmlDriver(source: string): GgmlDriver | null {
  const variant = cpuVariant();
  if (!variant || process.platform !== 'linux' || process.arch !== 'x64') return null;
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-ggml-graph-'));
  try {
    const lib = llamaCppLibDir();
    const src = join(dir, 'drv.cc');
    const bin = join(dir, 'drv');
    writeFileSync(src, source);
    const libs = [join(lib, `libggml-cpu-${variant}.so`), join(lib, 'libggml-base.so')];
    execFileSync('g++', ['-std=c++17', '-O1', src, '-o', bin, ...libs, `-Wl,-rpath,${lib}`], { stdio: 'pipe' });
    return {
      run(args, input) {
        const inPath = join(dir, 'in.bin');
        const outPath = join(dir, 'out.bin');
        writeFileSync(inPath, Buffer.concat(input.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))));
        execFileSync(bin, [...args, inPath, outPath], { stdio: 'pipe' });
        return new Uint8Array(readFileSync(outPath));
      },
      dispose() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
}

/**
 * A test file's driver: compiled on first use (null where that is not possible, see
 * compileGgmlDriver), its files removed after the file's tests.
 */
export function lazyGgmlDriver(source: string): () => GgmlDriver | null {
  let drv: GgmlDriver | null | undefined;
  after(() => drv?.dispose());
  return () => (drv ??= compileGgmlDriver(source));
}
