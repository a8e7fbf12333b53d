#!/usr/bin/env node
// node scripts/probe-beside-compute.mjs MODEL.gguf [rounds]   (after `npx tsc`; run it alone on the machine)
//
// How fast the storage reads while the cores compute. The engine's O_DIRECT@32 probe reads the
// whole file three times over, cold, in turn: alone; beside one busy loop per core (`yes`); and
// beside the native Q8_0 gemv of a tinyllama FFN matrix in a loop on the thread pool (all cores:
// a decode layer's compute). Prints GB/s per round and the loaded rate's share of the idle one.
// The budget sweep's probes run with the cores idle; a run computes its layers while its reads
// are in flight (issue-9 notes; README "Under a memory budget").
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

const [file, roundsArg, role] = process.argv.slice(2);
if (role === '--gemv-loop') {
  const { matmul } = await import('../dist/native/matmul.js');
  const { GgmlType } = await import('../dist/gguf/ggml-type.js');
  const n = 5632, k = 2048, rowBytes = (k / 32) * 34; // [5632, 2048] Q8_0: 12.3 MB
  const w = new Uint8Array(n * rowBytes);
  for (let i = 0; i < w.length; i += 34) w[i + 1] = 0x1c; // block scale: a small f16
  const x = new Float32Array(k).fill(0.5), out = new Float32Array(n);
  for (;;) matmul(out, w, GgmlType.Q8_0, n, k, x, 1);
}
if (!file) {
  console.error('usage: node scripts/probe-beside-compute.mjs MODEL.gguf [rounds]');
  process.exit(2);
}
const { probeRanges } = await import('../dist/weights/probe.js');
const rounds = Number(roundsArg ?? 3);
const size = Math.floor(statSync(file).size / 4096) * 4096;
const ranges = [];
for (let r = 0; r < 3; r++) for (let o = 0; o < size; o += 8 << 20) ranges.push([o, Math.min(8 << 20, size - o)]);
const self = fileURLToPath(import.meta.url);
const cores = availableParallelism();
const loads = {
  idle: [],
  'busy loops': Array.from({ length: cores }, () => ['sh', ['-c', 'exec yes > /dev/null']]),
  'Q8_0 gemv': [[process.execPath, [self, file, '0', '--gemv-loop']]],
};
const rates = Object.fromEntries(Object.keys(loads).map((k) => [k, []]));
for (let round = 0; round < rounds; round++) {
  for (const [name, cmds] of Object.entries(loads)) {
    const kids = cmds.map(([c, a]) => spawn(c, a, { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 400)); // let the load start
    const [p] = probeRanges(file, ranges, { probes: [{ direct: true, depth: 32 }] });
    for (const kid of kids) kid.kill('SIGKILL');
    rates[name].push(p.bytesPerSec);
    console.log(`${new Date().toISOString().slice(11, 19)}  ${name.padEnd(10)}  direct@32 ${(p.bytesPerSec / 1e9).toFixed(2)} GB/s`);
  }
}
const med = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const idle = med(rates.idle);
for (const [name, v] of Object.entries(rates)) console.log(`median ${name.padEnd(10)} ${(med(v) / 1e9).toFixed(2)} GB/s (${((100 * med(v)) / idle).toFixed(0)}% of idle)`);
