#!/usr/bin/env node
// Q8_0 matmul throughput by batch size m (the figures in native/src/matmul_x86_q8_0.cc).
//   cached: one weight matrix reused (L2/L3), m = 1, 8, 64, 128, tinyllama shapes.
//   dram:   8 rotated copies of 5632 x 2048 (~96 MB, > L3), m = 2, 4, 8, 16 (small batches of
//           several decoding sequences).
// 1 thread, process CPU time per call, median of the trials (the machine is often shared, so
// compare runs made back to back). Usage: node scripts/bench-q8_0.js [--root DIR]
// (--root: another checkout's dist/, e.g. a build of an older commit, for before/after).
import { randomFillSync } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const rootArg = args.indexOf('--root');
const root = rootArg >= 0 ? resolve(args[rootArg + 1]) : resolve(new URL('..', import.meta.url).pathname);
const { matmul, setThreads } = await import(pathToFileURL(`${root}/dist/native/index.js`).href);
const Q8_0 = 8;
setThreads(1);

function weights(n, k) {
  const w = randomFillSync(new Uint8Array((k / 32) * 34 * n));
  for (let b = 0; b < (n * k) / 32; b++) w[b * 34 + 1] &= 0x3b; // finite f16 scales
  return w;
}

/** Median CPU seconds of `call` over `trials` trials of `iters` calls. */
function median(call, trials, iters) {
  const t = [];
  for (let r = 0; r < trials; r++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < iters; i++) call(i);
    const c = process.cpuUsage(c0);
    t.push((c.user + c.system) / 1e6 / iters);
  }
  return t.sort((a, b) => a - b)[t.length >> 1];
}

console.log(`Q8_0 matmul, 1 thread, CPU time, ${root}`);
for (const [n, k] of [[2048, 2048], [5632, 2048]]) {
  const w = weights(n, k);
  const cells = [];
  for (const m of [1, 8, 64, 128]) {
    const x = new Float32Array(m * k).map(() => Math.random() - 0.5);
    const out = new Float32Array(m * n);
    matmul(out, w, Q8_0, n, k, x, m);
    const s = median(() => matmul(out, w, Q8_0, n, k, x, m), 7, Math.max(1, Math.round(3e8 / (2 * n * k * m))));
    cells.push(`m=${m} ${((2 * n * k * m) / s / 1e9).toFixed(0)}`);
  }
  console.log(`cached ${n}x${k} GFLOP/s: ${cells.join('  ')}`);
}
{
  const [n, k] = [5632, 2048];
  const copies = Array.from({ length: 8 }, () => weights(n, k));
  const cells = [];
  for (const m of [2, 4, 8, 16]) {
    const x = new Float32Array(m * k).map(() => Math.random() - 0.5);
    const out = new Float32Array(m * n);
    const s = median((i) => matmul(out, copies[i % 8], Q8_0, n, k, x, m), 5, 16);
    cells.push(`m=${m} ${((2 * n * k * m) / s / 1e9).toFixed(0)}`);
  }
  console.log(`dram   ${n}x${k} GFLOP/s: ${cells.join('  ')}`);
}
