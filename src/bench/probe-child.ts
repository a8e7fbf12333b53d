/**
 * The storage probes of a budget point under the run's conditions, in their own process (so
 * the budget sweep can put it in the budget's memory cgroup): `node dist/bench/probe-child.js
 * MODEL PROBE_BYTES HOLD_BYTES`. The process first holds HOLD_BYTES of touched anonymous
 * memory (what a budgeted run keeps resident: its weights, KV cache and scratch), so the page
 * cache has only the room the run would leave it, then runs the same probes as outside
 * (probe.ts). Prints one JSON line: { probes } or { error }.
 * @internal
 */
import { probeReadPaths } from '../weights/probe.js';

function main(): void {
  const [path, bytes, hold] = process.argv.slice(2);
  if (!path || !bytes || !hold) {
    process.stdout.write(JSON.stringify({ error: 'usage: probe-child MODEL PROBE_BYTES HOLD_BYTES' }) + '\n');
    process.exitCode = 2;
    return;
  }
  // Held until the process exits; Buffer.alloc writes every page, so every page is charged.
  const held: Buffer[] = [];
  const chunk = 64 * 1024 * 1024;
  for (let left = Math.max(0, Number(hold) - process.memoryUsage().rss); left > 0; left -= chunk) held.push(Buffer.alloc(Math.min(chunk, left)));
  const probes = probeReadPaths(path, { bytes: Number(bytes) });
  process.stdout.write(JSON.stringify({ probes, held_bytes: held.reduce((a, b) => a + b.length, 0) }) + '\n');
}

try {
  main();
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String((err as Error)?.message ?? err) }) + '\n');
  process.exitCode = 1;
}
