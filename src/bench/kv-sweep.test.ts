/**
 * `bench --kv-sweep` split into short runs (`--kv-parts`) and merged (`--kv-merge`): the merge
 * keeps each part's own data and timestamp, a part measured now replaces an earlier one, and
 * the table / SVG / summary show exactly the parts present. Hand-written partial results (the
 * measurements themselves are benchmarks, not tests).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeKvParts, parseKvParts, renderKvSweep, type KvSweepData } from './kv-sweep.js';
import { InvalidOptionError } from '../errors.js';

const base = (): KvSweepData => ({
  model: 'm.gguf',
  shape: { numLayers: 2, kvDim: 256, maxContext: 4096 },
  attention: { numHeads: 8, numKvHeads: 4, headDim: 64 },
  parts: {},
});
const at = (started: string) => ({ started, seconds: 1, threads: 2, runs: 3 });

const memoryRow = (sequences: number, v: number, p: number) => ({
  sequences,
  tokens: 100 * sequences,
  live_bytes: p,
  vtensor_bytes: v,
  paged_bytes: p,
  contiguous_bytes: 4 * v,
  vtensor_vs_contiguous: 0.25,
  paged_vs_vtensor: p / v,
  vtensor_fragmentation_percent: 10,
  paged_fragmentation_percent: 1,
  vtensor_ms_per_token: 0.001,
  paged_ms_per_token: 0.002,
  contiguous_ms_per_token: 0,
});

test('kv-sweep parts: parse, merge earlier results, render only what is present', () => {
  assert.deepEqual(parseKvParts(undefined), ['memory', 'kernels', 'decode', 'chat']);
  assert.deepEqual(parseKvParts('kernels, chat'), ['kernels', 'chat']);
  assert.deepEqual(parseKvParts(''), []);
  assert.throws(() => parseKvParts('memory,speed'), (e: unknown) => e instanceof InvalidOptionError && /unknown part 'speed'/.test(e.message));

  const MiB = 1 << 20;
  const first = { ...base(), parts: { memory: at('t1') }, memory: [1, 4, 16, 64].map((n) => memoryRow(n, 10 * n * MiB, 5 * n * MiB)) };
  const kernels = {
    ...base(),
    parts: { kernels: at('t2') },
    kernel_decode: [
      { context: 512, sequences: 1, vtensor_ms: 1, paged_ms: 2, contiguous_ms: 1, vtensor_speedup_vs_paged: 2 },
      { context: 512, sequences: 16, vtensor_ms: 4, paged_ms: 6, contiguous_ms: 4, vtensor_speedup_vs_paged: 1.5 },
    ],
    kernel_prefix_prefill: [],
    skipped: ['decode at context 32768: too big'],
  };
  // A later memory run replaces the first one; the part this run measures is not taken from files.
  const second = { ...base(), parts: { memory: at('t3') }, memory: [1, 4, 16, 64].map((n) => memoryRow(n, 10 * n * MiB, 8 * n * MiB)) };
  const data = base();
  mergeKvParts(data, [first, kernels, second], ['chat']);
  assert.deepEqual(Object.keys(data.parts).sort(), ['kernels', 'memory']);
  assert.equal(data.parts.memory!.started, 't3');
  assert.equal(data.memory![2]!.paged_bytes, 8 * 16 * MiB);
  assert.deepEqual(data.skipped, ['decode at context 32768: too big']);
  const notMerged = base();
  mergeKvParts(notMerged, [first], ['memory']);
  assert.equal(notMerged.memory, undefined, 'a part measured in this run is not taken from a file');

  const out = renderKvSweep(data);
  const summary = (out.result as { summary: Record<string, unknown> }).summary;
  assert.equal(summary.memory_paged_over_vtensor_at_16, 0.8);
  assert.deepEqual(summary.kernel_decode_vtensor_vs_paged, [
    { context: 512, sequences: 1, speedup: 2 },
    { context: 512, sequences: 16, speedup: 1.5 },
  ]);
  assert.equal(summary.decode_16_vtensor_vs_paged, undefined, 'no engine part, no engine summary');
  assert.match(out.table, /parts: memory \(t3, 1 s\), kernels \(t2, 1 s\)/);
  assert.match(out.table, /\(a\) KV bytes at peak/);
  assert.match(out.table, /\(k\) decode attention/);
  assert.doesNotMatch(out.table, /multi-turn chat/);
  assert.match(out.table, /skipped: decode at context 32768/);
  // Panels: decode kernel at 1 and 16 sequences, prefix-prefill, KV bytes, KV management.
  assert.equal(out.svg.match(/<svg x=/g)?.length, 5);
  assert.equal(renderKvSweep(base()).svg, '', 'nothing measured, no plot');
});

test('kv-sweep memory part of a sliding-window model: no-unmap and llama.cpp columns, the long-context row and its summary', () => {
  const MiB = 1 << 20;
  const row = (n: number) => ({ ...memoryRow(n, 10 * n * MiB, 12 * n * MiB), vtensor_nowindow_bytes: 11 * n * MiB, ...(n <= 16 && { llamacpp_bytes: 20 * n * MiB, vtensor_vs_llamacpp: 0.5 }) });
  const data: KvSweepData = {
    ...base(),
    shape: { numLayers: 6, kvDim: 256, maxContext: 4096, layerWindows: [512, 512, 512, 512, 512, 0] },
    parts: { memory: at('t1') },
    memory: [1, 4, 16, 64].map(row),
    memory_long: { ...memoryRow(1, 6 * MiB, 24 * MiB), vtensor_vs_contiguous: 0.25, vtensor_nowindow_bytes: 24 * MiB, llamacpp_bytes: 10 * MiB, vtensor_vs_llamacpp: 0.6 },
  };
  const out = renderKvSweep(data);
  assert.match(out.table, /5 of 6 layers slide \(window 512\)/);
  assert.match(out.table, /no-unmap MiB {2}llama\.cpp MiB/);
  assert.match(out.table, /^64 .* 704\.0 +- +-$/m, '64 sequences: no llama.cpp figure');
  assert.match(out.table, /^1 long +100 .* 24\.0 +10\.0 +0\.6$/m);
  const summary = (out.result as { summary: Record<string, unknown> }).summary;
  assert.deepEqual(summary.memory_long_context, { vtensor_vs_contiguous: 0.25, window_unmap_saved_bytes: 18 * MiB, vtensor_vs_llamacpp: 0.6 });
});
