/**
 * Test helpers: a small hand-written GGUF v3 writer (independent of src/gguf/writer.ts, so
 * the stores' tests also cross-check the reader) and a synthetic model's tensor list.
 * @internal
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { GgmlType, ggmlRowBytes } from '../gguf/ggml-type.js';

/** A tensor to write: ggml dims (innermost first) and its bytes. */
export interface TestTensor {
  name: string;
  type: GgmlType;
  dims: number[];
  data: Uint8Array;
}

/** Seeded xorshift32 bytes. */
export function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = (seed >>> 0) || 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * Writes a GGUF v3 file: metadata general.architecture = arch, `${arch}.block_count`,
 * general.alignment; tensors in the given order, each at a multiple of `alignment`.
 */
export function writeTestGguf(path: string, arch: string, blockCount: number, tensors: TestTensor[], alignment = 32): void {
  const parts: Uint8Array[] = [];
  const u32 = (v: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); parts.push(b); };
  const u64 = (v: number) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v), true); parts.push(b); };
  const str = (s: string) => { const b = new TextEncoder().encode(s); u64(b.length); parts.push(b); };
  parts.push(new TextEncoder().encode('GGUF'));
  u32(3);
  u64(tensors.length);
  u64(3);
  str('general.architecture'); u32(8); str(arch);           // 8 = STRING
  str(`${arch}.block_count`); u32(4); u32(blockCount);       // 4 = UINT32
  str('general.alignment'); u32(4); u32(alignment);
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    const rowBytes = ggmlRowBytes(t.type, t.dims[0]!);
    const bytes = rowBytes * t.dims.slice(1).reduce((a, b) => a * b, 1);
    if (bytes !== t.data.length) throw new Error(`${t.name}: data has ${t.data.length} bytes, dims say ${bytes}`);
    str(t.name);
    u32(t.dims.length);
    for (const d of t.dims) u64(d);
    u32(t.type);
    u64(offset);
    offsets.push(offset);
    offset = Math.ceil((offset + bytes) / alignment) * alignment;
  }
  const headerLen = parts.reduce((a, p) => a + p.length, 0);
  const dataOffset = Math.ceil(headerLen / alignment) * alignment;
  const file = new Uint8Array(dataOffset + offset);
  let p = 0;
  for (const part of parts) { file.set(part, p); p += part.length; }
  tensors.forEach((t, i) => file.set(t.data, dataOffset + offsets[i]!));
  writeFileSync(path, file);
}

/** Shapes of a tiny Llama-like model: dim, ffn, kv dim, vocab, layers. */
export interface TinyModelShape {
  dim: number;
  ffn: number;
  kvDim: number;
  vocab: number;
  layers: number;
  type?: GgmlType;
}

/** Tensors of a tiny Llama-like model with random bytes (matrices of `type`, norms f32). */
export function tinyModelTensors(s: TinyModelShape, seed = 1): TestTensor[] {
  const type = s.type ?? GgmlType.F16;
  const mat = (name: string, cols: number, rows: number, i: number): TestTensor => {
    const data = randomBytes(ggmlRowBytes(type, cols) * rows, seed * 1000 + i);
    // f16: no inf/NaN patterns (V8 may change NaN bits when storing f32, so tests comparing
    // dequantized values bit for bit would depend on the JIT tier).
    if (type === GgmlType.F16) for (let j = 1; j < data.length; j += 2) if ((data[j]! & 0x7c) === 0x7c) data[j]! &= ~0x40;
    return { name, type, dims: [cols, rows], data };
  };
  const norm = (name: string, n: number, i: number): TestTensor => ({
    name, type: GgmlType.F32, dims: [n], data: f32Bytes(n, seed * 1000 + i),
  });
  const out: TestTensor[] = [mat('token_embd.weight', s.dim, s.vocab, 1)];
  let i = 10;
  for (let l = 0; l < s.layers; l++) {
    out.push(norm(`blk.${l}.attn_norm.weight`, s.dim, i++));
    out.push(mat(`blk.${l}.attn_q.weight`, s.dim, s.dim, i++));
    out.push(mat(`blk.${l}.attn_k.weight`, s.dim, s.kvDim, i++));
    out.push(mat(`blk.${l}.attn_v.weight`, s.dim, s.kvDim, i++));
    out.push(mat(`blk.${l}.attn_output.weight`, s.dim, s.dim, i++));
    out.push(norm(`blk.${l}.ffn_norm.weight`, s.dim, i++));
    out.push(mat(`blk.${l}.ffn_gate.weight`, s.dim, s.ffn, i++));
    out.push(mat(`blk.${l}.ffn_up.weight`, s.dim, s.ffn, i++));
    out.push(mat(`blk.${l}.ffn_down.weight`, s.ffn, s.dim, i++));
  }
  out.push(norm('output_norm.weight', s.dim, 2));
  out.push(mat('output.weight', s.dim, s.vocab, 3));
  return out;
}

/** Bytes of n finite f32 values in [-1, 1) (seeded). */
export function f32Bytes(n: number, seed: number): Uint8Array {
  const r = randomBytes(n * 4, seed);
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = (r[4 * i]! | (r[4 * i + 1]! << 8)) / 32768 - 1;
  return new Uint8Array(f.buffer);
}

/** Runs `node ARGS` outside any cgroup and collects its exit code, stdout and stderr. */
export function runNode(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
