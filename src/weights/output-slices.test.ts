import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync } from '../gguf/reader.js';
import { GgmlType, ggmlRowBytes } from '../gguf/ggml-type.js';
import { planResidency, type Plan } from './plan.js';
import { planInputs } from './create.js';
import { OUTPUT_TEMP_ROWS, outputSliceLayout } from './output-slices.js';
import { StreamingWeightStore } from './streaming.js';
import { tinyModelTensors, writeTestGguf } from './testing.js';

// A vocabulary of 1000 rows of 256 f16 (512 bytes a row, 500 KiB): sliced by 64 KiB -> 128 rows
// a slice (4096-aligned steps of 8 rows), 8 slices, the last one 104 rows.
const SHAPE = { dim: 256, ffn: 512, kvDim: 128, vocab: 1000, layers: 4 };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A plan at 80% of the file (window 1), with the output matrix streamed in 64 KiB slices. */
function slicedPlan(path: string): Plan {
  const file = readGgufSync(path);
  const plan = planResidency(planInputs(file), { budget: Math.floor(file.fileSize * 0.8), hardware: { readBytesPerSec: 1e9 }, window: 1 });
  const out = file.tensor('output.weight')!;
  const layout = outputSliceLayout(out.byteSize, ggmlRowBytes(GgmlType.F16, SHAPE.dim), 64 * 1024)!;
  return { ...plan, outputSlices: layout, tensors: plan.tensors.map((t) => (t.name === 'output.weight' ? { ...t, placement: 'slices' as const } : t)) };
}

test('output slices: every pass hands over the output matrix slice by slice, byte for byte, and starts over after a pass that stopped midway', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-slices-'));
  const path = join(dir, 'm.gguf');
  try {
    writeTestGguf(path, 'llama', SHAPE.layers, tinyModelTensors(SHAPE, 7), 4096);
    const file = readGgufSync(path);
    const info = file.tensor('output.weight')!;
    const raw = readFileSync(path);
    const rowBytes = 512;
    const plan = slicedPlan(path);
    assert.deepEqual([plan.outputSlices!.sliceRows, plan.outputSlices!.numSlices], [128, 8]);
    for (const direct of [true, false]) {
      const store = await StreamingWeightStore.open(file, plan, { direct });
      try {
        assert.equal(store.global('output.weight'), undefined, 'a sliced output matrix is not resident');
        const slices = store.outputSlices!;
        const pass = (stopAt = -1) => {
          const seen: Array<[number, number, string]> = [];
          slices.forEach((rowStart, t, temp) => {
            if (seen.length === stopAt) throw new Error('stop');
            assert.equal(temp.length, OUTPUT_TEMP_ROWS * 128);
            assert.deepEqual(t.dims, [SHAPE.dim, t.data.length / rowBytes]);
            assert.equal(t.type, GgmlType.F16);
            seen.push([rowStart, t.dims[1]!, sha(t.data)]);
          });
          return seen;
        };
        // From the file itself: rows [128k, 128k + n) of output.weight.
        const want = Array.from({ length: 8 }, (_, k) => {
          const n = Math.min(128, 1000 - 128 * k);
          const start = info.fileOffset + 128 * k * rowBytes;
          return [128 * k, n, sha(raw.subarray(start, start + n * rowBytes))] as [number, number, string];
        });
        assert.deepEqual(pass(), want, `direct ${direct}: first pass`);
        assert.deepEqual(pass(), want, `direct ${direct}: second pass (slices 0 and 1 read ahead)`);
        assert.throws(() => pass(3), /stop/);
        assert.deepEqual(pass(), want, `direct ${direct}: after a pass stopped at slice 3`);
        assert.throws(() => pass(7), /stop/); // stopped at the last slice: slice 0 already reissued
        assert.deepEqual(pass(), want, `direct ${direct}: after a pass stopped at the last slice`);
        const st = store.stats();
        // Five whole passes and two partial ones were read (plus slices read ahead).
        assert.ok(st.bytesRead >= 5 * info.byteSize, `bytesRead ${st.bytesRead}`);
      } finally {
        store.dispose();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
