#!/usr/bin/env node
// Matmul throughput per weight type on tinyllama-1.1b shapes (dim 2048, ffn 5632).
//   m = 1   (generation): GB/s of weight bytes streamed. Several weight copies (> L3) are
//           rotated so the weights come from DRAM, as in a real forward pass.
//   m = 128 (prompt):     GFLOP/s (2 * n * k * m per call).
// Usage: node scripts/bench-matmul.js [--threads N] [--types q4_0,q8_0] [--scalar] [--seconds S] [--cpu]
//        node scripts/bench-matmul.js --token [--types q4_0] [--threads N]   (see below)
// Needs a built addon and `npx tsc -p .` (imports dist/).
import { matmul, setKernelPath, setThreads, getThreads, matmulSimdPath } from '../dist/native/index.js';
import { GgmlType, ggmlRowBytes, ggmlTypeByName } from '../dist/gguf/ggml-type.js';
import { f32ToF16Array, f32ToBf16Array } from '../dist/gguf/f16.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const threads = Number(opt('--threads', '2'));
const seconds = Number(opt('--seconds', '1'));
const typeNames = opt('--types', 'f32,f16,bf16,q8_0,q4_0,q4_k,q5_k,q6_k').split(',');
setThreads(threads);
if (args.includes('--scalar')) setKernelPath('scalar');
const useCpu = args.includes('--cpu');

const SHAPES = [
  [5632, 2048], // ffn_gate / ffn_up: n = ffn, k = dim
  [2048, 5632], // ffn_down
  [2048, 2048], // attn_q / attn_output
];

function randomWeights(type, n, k) {
  const bytes = ggmlRowBytes(type, k) * n;
  if (type === GgmlType.F32 || type === GgmlType.F16 || type === GgmlType.BF16) {
    const f = new Float32Array(n * k);
    for (let i = 0; i < f.length; i++) f[i] = Math.random() - 0.5;
    if (type === GgmlType.F32) return new Uint8Array(f.buffer);
    const h = type === GgmlType.F16 ? f32ToF16Array(f) : f32ToBf16Array(f);
    return new Uint8Array(h.buffer);
  }
  // Random quant bytes; scale fields random f16 too: timing does not depend on the values.
  const w = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 4) {
    const r = (Math.random() * 0xffffffff) >>> 0;
    w[i] = r & 0xff;
    w[i + 1] = (r >>> 8) & 0xff;
    w[i + 2] = (r >>> 16) & 0xff;
    w[i + 3] = (r >>> 24) & 0x3b; // keeps f16 scales finite where they land
  }
  return w;
}

// Seconds per call: the best of many short trials (~5 ms each, for `--seconds` in total), by
// wall time, or with --cpu by process CPU time (meaningful with --threads 1, where no thread
// spins idle). The minimum filters out trials slowed by other jobs on a shared machine.
function timeIt(fn) {
  fn(); // warm up (scratch allocation, pool wake-up)
  let best = Infinity;
  const start = process.hrtime.bigint();
  while (Number(process.hrtime.bigint() - start) / 1e9 < seconds) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    let iters = 0;
    let dt = 0;
    do {
      fn();
      iters++;
      dt = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (dt < 0.005);
    const c = process.cpuUsage(c0);
    best = Math.min(best, (useCpu ? (c.user + c.system) / 1e6 : dt) / iters);
  }
  return best;
}

// --token: the matmuls of one whole tinyllama-1.1b forward pass (22 layers of q, k, v, o,
// gate, up, down, then the 32000-row output), all weights of one type, for m = 1 (generation,
// tokens/s) and m = 128 (prompt, tokens/s); compare llama.cpp's 26 and 163 tokens/s (Q4_0, 2
// threads, whole model) on this machine.
if (args.includes('--token')) {
  const { randomFillSync } = await import('node:crypto');
  const type = ggmlTypeByName(typeNames[0]).type;
  const dim = 2048, kv = 256, ffn = 5632, vocab = 32000, layers = 22;
  const shapes = [];
  for (let l = 0; l < layers; l++) shapes.push([dim, dim], [kv, dim], [kv, dim], [dim, dim], [ffn, dim], [ffn, dim], [dim, ffn]);
  shapes.push([vocab, dim]);
  const mats = shapes.map(([n, k]) => {
    const w = randomFillSync(new Uint8Array(ggmlRowBytes(type, k) * n));
    if (type === GgmlType.F16 || type === GgmlType.BF16) for (let i = 1; i < w.length; i += 2) w[i] &= 0x3b;
    if (type === GgmlType.F32) for (let i = 3; i < w.length; i += 4) w[i] &= 0x3b;
    for (let i = 1; i < w.length; i += 2) w[i] &= 0xbb; // finite f16 scales wherever they sit
    return { n, k, w };
  });
  const bytes = mats.reduce((s, t) => s + t.w.length, 0);
  for (const m of [1, 128]) {
    const x = new Float32Array(m * ffn).map(() => Math.random() - 0.5);
    const out = new Float32Array(m * vocab);
    const pass = () => {
      for (const t of mats) matmul(out, t.w, type, t.n, t.k, x, m);
    };
    pass();
    let best = Infinity;
    for (let r = 0; r < (m === 1 ? 10 : 3); r++) {
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      pass();
      const c = process.cpuUsage(c0);
      best = Math.min(best, useCpu ? (c.user + c.system) / 1e6 : Number(process.hrtime.bigint() - t0) / 1e9);
    }
    console.log(
      `${typeNames[0]} ${getThreads()} threads, m = ${m}: ${(best * 1e3).toFixed(1)} ms ${useCpu ? 'CPU' : 'wall'} per pass, ` +
        `${(m / best).toFixed(1)} tokens/s (matmuls only), ${(bytes / best / 1e9).toFixed(1)} GB/s of weights`,
    );
  }
  process.exit(0);
}

console.log(`matmul bench: simd path ${matmulSimdPath()}, ${getThreads()} threads, kernels ${args.includes('--scalar') ? 'scalar' : 'auto'}, ${useCpu ? 'CPU' : 'wall'} time`);
console.log('type   | m=1 GB/s (weights)        | m=128 GFLOP/s');
for (const name of typeNames) {
  const type = ggmlTypeByName(name).type;
  // m = 1: rotate copies of all three shapes, >= 128 MB of weights in total.
  const set = SHAPES.map(([n, k]) => ({ n, k, w: randomWeights(type, n, k) }));
  const setBytes = set.reduce((s, t) => s + t.w.length, 0);
  const copies = Math.max(1, Math.ceil((128 << 20) / setBytes));
  const all = [];
  for (let c = 0; c < copies; c++) for (const t of set) all.push(c === 0 ? t : { ...t, w: t.w.slice() });
  const x1 = new Float32Array(5632).map(() => Math.random() - 0.5);
  const out1 = new Float32Array(5632);
  // Trials of ~5 ms walk through the copies in turn; the best trial's bytes / time counts.
  let next = 0;
  let bestGbs = 0;
  const start = process.hrtime.bigint();
  while (Number(process.hrtime.bigint() - start) / 1e9 < seconds) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    let bytes = 0;
    let dt = 0;
    do {
      const t = all[next++ % all.length];
      matmul(out1, t.w, type, t.n, t.k, x1, 1);
      bytes += t.w.length;
      dt = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (dt < 0.005);
    const c = process.cpuUsage(c0);
    bestGbs = Math.max(bestGbs, bytes / (useCpu ? (c.user + c.system) / 1e6 : dt) / 1e9);
  }
  const gbs = bestGbs;
  const perPass = setBytes / gbs / 1e9;
  // m = 128 on each shape (weights cached or not hardly matters here: compute-bound).
  const m = 128;
  const xm = new Float32Array(m * 5632).map(() => Math.random() - 0.5);
  const outm = new Float32Array(m * 5632);
  const flops = [];
  for (const t of set) {
    const dt = timeIt(() => matmul(outm, t.w, type, t.n, t.k, xm, m));
    flops.push((2 * t.n * t.k * m) / dt / 1e9);
  }
  console.log(
    `${name.padEnd(6)} | ${gbs.toFixed(1).padStart(5)} (${(perPass * 1e3).toFixed(2)} ms per 3-matrix set) | ` +
      flops.map((f, i) => `${SHAPES[i].join('x')}: ${f.toFixed(0)}`).join('  '),
  );
}
