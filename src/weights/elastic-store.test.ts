/**
 * ElasticWeightStore: every level serves the file's bytes; demotion really gives the pages
 * back (mincore), promotion reads them in the background and applies between passes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync, type GgufFile } from '../gguf/reader.js';
import { planInputs } from './create.js';
import { ElasticWeightStore } from './elastic-store.js';
import { demotableFootprint, planLadder } from './plan.js';
import { tinyModelTensors, writeTestGguf } from './testing.js';
import { listTensors } from './tensors.js';

const LAYERS = 10;
const HW = { readBytesPerSec: 1e9, computeBytesPerSec: 8e9 };

/** One forward-pass-like walk over the layers: every tensor equals the file's bytes. */
function checkPass(store: ElasticWeightStore, file: GgufFile, bytes: Buffer, label: string, layers = LAYERS): void {
  for (let l = 0; l < layers; l++) {
    const lw = store.acquire(l);
    for (const t of listTensors(file).filter((e) => e.layer === l)) {
      const got = lw.get(t.shortName).data;
      assert.ok(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(bytes.subarray(t.fileOffset, t.fileOffset + t.bytes)), `${label}: ${t.name}`);
    }
    store.release(l);
  }
}

test('elastic store: file bytes at every level; demotion returns the pages; promotion lands between passes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-elastic-store-'));
  try {
    const path = join(dir, 'm.gguf');
    writeTestGguf(path, 'llama', LAYERS, tinyModelTensors({ dim: 256, ffn: 768, kvDim: 128, vocab: 64, layers: LAYERS }, 3), 4096);
    const file = readGgufSync(path);
    const bytes = readFileSync(path);
    const total = file.fileSize;
    const ladder = planLadder(planInputs(file), { budget: Math.floor(total * 0.9), hardware: HW });
    const top = ladder.levelFor(Math.floor(total * 0.9));
    assert.ok(top > ladder.minLevel + 4, `ladder too short to test: ${ladder.minLevel}..${top}`);
    const store = await ElasticWeightStore.open(file, ladder, { level: top });
    try {
      checkPass(store, file, bytes, `level ${top}`);
      const before = store.physicalBytes().region;
      assert.ok(before >= store.memory().residentBytes, `mincore ${before} < accounted ${store.memory().residentBytes}`);

      // Demote to the minimum resident set: those pages leave the process at once.
      const low = store.minLevel;
      const demoted = ladder.steps.slice(low, top).reduce((a, i) => a + demotableFootprint(listTensors(file)[i]!.bytes), 0);
      store.demoteTo(low);
      assert.equal(store.level, low);
      assert.equal(store.physicalBytes().region, before - demoted, 'demoted pages are no longer memory');
      assert.equal(store.memory().ringBytes, store.ringAt[low]);
      checkPass(store, file, bytes, `level ${low}`);
      checkPass(store, file, bytes, `level ${low}, second pass`);

      // Promote halfway in the background; passes go on meanwhile; settle() applies it.
      const mid = Math.floor((low + top) / 2);
      store.promoteTo(mid);
      assert.equal(store.targetLevel, mid);
      assert.equal(store.level, low, 'not applied before settle()');
      const t0 = Date.now();
      while (!store.settle()) {
        checkPass(store, file, bytes, `level ${low} while promoting`);
        assert.ok(Date.now() - t0 < 30_000, 'promotion did not finish');
      }
      assert.equal(store.level, mid);
      checkPass(store, file, bytes, `level ${mid}`);

      // A demotion while a promotion runs cancels it and gives its pages back.
      store.promoteTo(top);
      store.demoteTo(low);
      assert.equal(store.level, low);
      assert.equal(store.targetLevel, low);
      assert.equal(store.physicalBytes().region, before - demoted);
      checkPass(store, file, bytes, `level ${low} after a cancelled promotion`);

      const st = store.stats();
      assert.deepEqual({ d: st.events.demotions, p: st.events.promotions, c: st.events.cancelledPromotions }, { d: 3 - 1, p: 1, c: 1 });
      assert.ok(st.tokens >= 5, `passes counted across levels: ${st.tokens}`);
      assert.equal(st.streamedBytesPerPass, ladder.planAt(low).streamedBytesPerToken);
      // Level changes happen between passes only.
      store.acquire(0);
      assert.throws(() => store.demoteTo(low), /between forward passes/);
      store.release(0);
    } finally {
      store.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('elastic store: a large output matrix is the ladder\'s first step, streamed in slices at the bottom and resident again after a promotion', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-elastic-out-'));
  try {
    // 100,000 rows of 256 f16 (51 MB): large enough for 8 MiB slices to save over half of it.
    const path = join(dir, 'm.gguf');
    const layers = 4;
    writeTestGguf(path, 'llama', layers, tinyModelTensors({ dim: 256, ffn: 768, kvDim: 128, vocab: 100_000, layers }, 5), 4096);
    const file = readGgufSync(path);
    const bytes = readFileSync(path);
    const entries = listTensors(file);
    const out = entries.findIndex((t) => t.name === 'output.weight');
    const info = entries[out]!;
    const ladder = planLadder(planInputs(file), { budget: Math.floor(file.fileSize * 0.9), hardware: HW });
    assert.equal(ladder.steps[0], out, 'the output matrix is the first step');
    assert.equal(ladder.minLevel, 0);
    const top = ladder.levelFor(Math.floor(file.fileSize * 0.9));
    assert.ok(top >= 2);
    const store = await ElasticWeightStore.open(file, ladder, { level: top });
    const sameAsFile = (t: { data: Uint8Array }, start: number) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(bytes.subarray(start, start + t.data.byteLength));
    try {
      assert.equal(store.outputSlices, undefined);
      assert.ok(sameAsFile(store.global('output.weight')!, info.fileOffset), 'resident output = file bytes');
      const before = store.physicalBytes().region;
      store.demoteTo(0);
      // The matrix's pages are gone; it is read every pass in slices, byte for byte.
      const demoted = ladder.steps.slice(0, top).reduce((a, i) => a + demotableFootprint(entries[i]!.bytes), 0);
      assert.equal(store.physicalBytes().region, before - demoted);
      assert.equal(store.global('output.weight'), undefined);
      assert.ok(store.plan.outputSlices);
      assert.equal(store.memory().ringBytes, store.ringAt[0]);
      for (let pass = 0; pass < 2; pass++) {
        checkPass(store, file, bytes, `level 0 pass ${pass}`, layers);
        let rows = 0;
        store.outputSlices!.forEach((rowStart, t) => {
          assert.ok(sameAsFile(t, info.fileOffset + rowStart * 512), `slice at row ${rowStart}`);
          rows += t.dims[1]!;
        });
        assert.equal(rows, 100_000);
      }
      // Promoted back: resident again, the same bytes.
      store.promoteTo(top);
      const t0 = Date.now();
      while (!store.settle()) {
        checkPass(store, file, bytes, 'level 0 while promoting', layers);
        store.outputSlices!.forEach(() => {});
        assert.ok(Date.now() - t0 < 30_000, 'promotion did not finish');
      }
      assert.equal(store.level, top);
      assert.equal(store.outputSlices, undefined);
      assert.ok(sameAsFile(store.global('output.weight')!, info.fileOffset), 'promoted output = file bytes');
      checkPass(store, file, bytes, `level ${top}`, layers);
    } finally {
      store.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
