/**
 * The storage probes of a budget point under the run's conditions, in their own process (so
 * the budget sweep can put it in the budget's memory cgroup): `node dist/bench/probe-child.js
 * MODEL PROBE_BYTES HOLD_BYTES [CONTEXT [PASSES]]`. With CONTEXT (the runs' context size), the process
 * first sets up the engine's memory as a run at budget HOLD_BYTES does (parallel 1, the
 * default KV layout and pool, the calibration in FLEXINFER_CACHE_DIR) to learn which tensors
 * that run streams, and frees it again. It then holds HOLD_BYTES of touched anonymous memory
 * (what a budgeted run keeps resident: its weights, KV cache and scratch), so the page cache
 * has only the room the run would leave it, and runs the same probes as outside (probe.ts);
 * with CONTEXT also the layout probes: the same paths reading exactly the run's streamed
 * ranges in its order, no compute (probeRanges; the pass's first PROBE_BYTES, as many bytes as
 * a sequential probe reads; the layout figures describe the whole pass). With PASSES (the runs'
 * generated tokens) also the sustained probes: O_DIRECT at depths 16 and 32 reading the WHOLE
 * pass PASSES times over, as many bytes as a run streams while it generates, no compute. A
 * 256 MiB probe takes 40-60 ms and this disk stalls now and then for 100-300 ms (per-64 MiB
 * profile of a 1 GiB read, issue-9 notes 2026-12-06 12:00: 0.3-7.7 GB/s per 64 MiB, 2.0-4.4
 * overall): the short probes catch a stall or not, a run of seconds catches its share, and so
 * do these. Prints one JSON line:
 * { probes, held_bytes, layout?: { ...RangeLayout, probes, sustained? } } or { error }.
 * @internal
 */
import { createEngineMemory } from '../engine/memory.js';
import { MAX_BATCH_ROWS } from '../engine/model.js';
import { readGgufSync } from '../gguf/reader.js';
import { modelConfigFromGguf } from '../models/registry.js';
import { probeRanges, probeReadPaths, rangeLayout, type FileRange, type ReadPath } from '../weights/probe.js';
import { streamedRanges } from '../weights/streaming.js';

/** The ranges one forward pass of a run at `budget` streams (empty when nothing streams). */
async function runRanges(path: string, budget: number, contextSize: number): Promise<FileRange[]> {
  const file = readGgufSync(path);
  const memory = await createEngineMemory(
    file,
    modelConfigFromGguf(file),
    { path, threads: 1, contextSize, parallel: 1, kv: 'vtensor', memoryBudget: budget, maxBatchRows: MAX_BATCH_ROWS, prefixCache: true, memoryPool: 'elastic', kvFloor: null, experts: null },
    () => {},
  );
  try {
    return streamedRanges(file, memory.plan());
  } finally {
    memory.dispose();
  }
}

/** The sustained probes' paths: the depths the runs settle on (the streamer's deepest two). */
const SUSTAINED_PATHS: ReadPath[] = [
  { direct: true, depth: 16 },
  { direct: true, depth: 32 },
];

async function main(): Promise<void> {
  const [path, bytes, hold, context, passes] = process.argv.slice(2);
  if (!path || !bytes || !hold) {
    process.stdout.write(JSON.stringify({ error: 'usage: probe-child MODEL PROBE_BYTES HOLD_BYTES [CONTEXT]' }) + '\n');
    process.exitCode = 2;
    return;
  }
  const ranges = context ? await runRanges(path, Number(hold), Number(context)) : [];
  // Held until the process exits; Buffer.alloc writes every page, so every page is charged.
  const held: Buffer[] = [];
  const chunk = 64 * 1024 * 1024;
  for (let left = Math.max(0, Number(hold) - process.memoryUsage().rss); left > 0; left -= chunk) held.push(Buffer.alloc(Math.min(chunk, left)));
  const probes = probeReadPaths(path, { bytes: Number(bytes) });
  // The first PROBE_BYTES of the pass (at least one range), as many bytes as a sequential probe reads.
  let n = 0;
  for (let sum = 0; n < ranges.length && (n === 0 || sum < Number(bytes)); n++) sum += ranges[n]![1];
  const layout = ranges.length > 0 ? { ...rangeLayout(ranges), probes: probeRanges(path, ranges.slice(0, n)) } : undefined;
  if (layout && passes && Number(passes) >= 1) {
    const all = Array.from({ length: Math.floor(Number(passes)) }, () => ranges).flat();
    Object.assign(layout, { sustained: probeRanges(path, all, { probes: SUSTAINED_PATHS }) });
  }
  process.stdout.write(JSON.stringify({ probes, held_bytes: held.reduce((a, b) => a + b.length, 0), ...(layout ? { layout } : {}) }) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String((err as Error)?.message ?? err) }) + '\n');
  process.exitCode = 1;
});
