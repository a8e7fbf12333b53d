/**
 * The layout probe's parts: which ranges a run streams and in what order (streamedRanges), how
 * they lie in the file (rangeLayout), both checked by hand on a tiny model file; and that
 * probeRanges reads exactly the ranges given, on every path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync } from '../gguf/reader.js';
import { probeRanges, rangeLayout, type FileRange } from './probe.js';
import { streamedRanges } from './streaming.js';
import { listTensors } from './tensors.js';
import { randomBytes, tinyModelTensors, writeTestGguf } from './testing.js';

const MiB = 1024 * 1024;

test('rangeLayout: contiguous runs, gaps and skipped bytes of ranges in their order (by hand)', () => {
  const ranges: FileRange[] = [[0, 10], [10, 5], [20, 5], [25, 5], [100, 1]];
  assert.deepEqual(rangeLayout(ranges), { ranges: 5, bytes: 26, runs: 3, meanRunBytes: 26 / 3, gaps: 2, gapBytes: 5 + 70 });
  // A range before the previous end starts a run but skips nothing forward.
  assert.deepEqual(rangeLayout([[50, 10], [0, 10]]), { ranges: 2, bytes: 20, runs: 2, meanRunBytes: 10, gaps: 0, gapBytes: 0 });
  assert.deepEqual(rangeLayout([]), { ranges: 0, bytes: 0, runs: 0, meanRunBytes: 0, gaps: 0, gapBytes: 0 });
});

test('streamedRanges: the streamed tensors of a plan layer by layer, in file order, and their layout (tiny model file, by hand)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-ranges-'));
  try {
    const path = join(dir, 'm.gguf');
    // f16: attn_q 64x64 = 8192 B, attn_k/v 64x32 = 4096 B, attn_output 8192 B, ffn_gate/up 64x128 =
    // 16384 B, ffn_down 128x64 = 16384 B, norms 64 f32 = 256 B; all multiples of the 32-byte alignment.
    writeTestGguf(path, 'llama', 2, tinyModelTensors({ dim: 64, ffn: 128, kvDim: 32, vocab: 64, layers: 2 }, 4), 32);
    const file = readGgufSync(path);
    const streamed = new Set(['attn_q', 'attn_k', 'attn_v', 'ffn_down']);
    const tensors = listTensors(file).map((t) => ({ name: t.name, layer: t.layer, kind: t.kind, bytes: t.bytes, placement: t.layer >= 0 && streamed.has(t.shortName.replace('.weight', '')) ? ('streamed' as const) : ('resident' as const) }));
    const ranges = streamedRanges(file, { tensors });
    const at = (name: string): FileRange => [file.tensor(name)!.fileOffset, file.tensor(name)!.byteSize];
    const expected = [0, 1].flatMap((l) => ['attn_q', 'attn_k', 'attn_v', 'ffn_down'].map((k) => at(`blk.${l}.${k}.weight`)));
    assert.deepEqual(ranges, expected);
    // q, k, v follow each other; then attn_output, ffn_norm, ffn_gate, ffn_up are skipped
    // (8192 + 256 + 16384 + 16384 = 41216 B) before ffn_down, and the next layer's attn_norm
    // (256 B) before its attn_q: 4 runs, 3 gaps.
    assert.deepEqual(rangeLayout(ranges), { ranges: 8, bytes: 2 * (8192 + 4096 + 4096 + 16384), runs: 4, meanRunBytes: 65536 / 4, gaps: 3, gapBytes: 41216 + 256 + 41216 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('probeRanges reads exactly the ranges given on every path (O_DIRECT left out where refused)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-prange-'));
  try {
    const path = join(dir, 'data.bin');
    writeFileSync(path, randomBytes(8 * MiB + 123, 9));
    // Aligned and unaligned offsets and lengths, out of file order, one range up to the end.
    const ranges: FileRange[] = [[3 * MiB, 2 * MiB + 100], [0, MiB], [5 * MiB + 32, 1000], [8 * MiB, 123]];
    const want = ranges.reduce((a, [, b]) => a + b, 0);
    const probes = probeRanges(path, ranges, { probes: [{ direct: false, depth: 2 }, { direct: true, depth: 4 }] });
    assert.ok(probes.length === 2 || (probes.length === 1 && !probes[0]!.direct));
    for (const p of probes) {
      assert.equal(p.bytes, want, `${p.direct ? 'direct' : 'buffered'}@${p.depth}`);
      assert.ok(p.seconds > 0 && p.bytesPerSec > 0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
