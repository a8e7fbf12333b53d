/**
 * Weight memory over one buffer's limit (4 GiB on Node 20) is held in segments: the layout by
 * hand, allocAligned's refusal above the limit (before: an abort in Node's free), and the
 * expert cache with a tiny segment limit serving the same expert bytes as the file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocAligned, MAX_ALLOC_BYTES } from '../native/index.js';
import { readGgufSync } from '../gguf/reader.js';
import { synthesize } from '../synth/synth.js';
import { DEFAULT_HARDWARE, planInputs } from './create.js';
import { planMoe } from './expert-plan.js';
import { ResidentExperts, StreamedExperts } from './expert-store.js';
import { ResidentWeightStore } from './resident.js';
import { segmentLayout } from './segments.js';

test('segmentLayout: items in order, a new segment when the next would pass the limit (hand-computed); an item over the limit is a RangeError', () => {
  const l = segmentLayout([3, 3, 3, 1, 8], 1, 8);
  assert.deepEqual([...l.segment], [0, 0, 1, 1, 2]);
  assert.deepEqual([...l.offset], [0, 3, 0, 3, 0]);
  assert.deepEqual(l.segmentBytes, [6, 4, 8]);
  // Alignment rounds every item up: 4096-byte items of 5000 bytes take 8192 each.
  assert.deepEqual(segmentLayout([5000, 5000, 5000], 4096, 16384).segmentBytes, [16384, 8192]);
  assert.throws(() => segmentLayout([9], 1, 8), RangeError);
  assert.equal(MAX_ALLOC_BYTES, 2 ** 32);
  assert.throws(() => allocAligned(MAX_ALLOC_BYTES + 4096), /more than one buffer can hold/);
});

test('expert cache in one-slot segments: every expert it serves is the file\'s bytes (vs the resident store)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-segments-'));
  try {
    const path = join(dir, 'mx.gguf');
    await synthesize(path, 'tiny-mixtral', 'q8_0', { seed: 3 });
    const file = readGgufSync(path);
    const resident = await ResidentWeightStore.load(file, { lock: false, maxBufferBytes: 16 * 1024 * 1024 });
    const all = new ResidentExperts(resident, 8);
    const plan = planMoe(planInputs(file), { budget: Math.floor(file.fileSize * 0.75), kvBytes: 0, scratchBytes: 0, hardware: DEFAULT_HARDWARE, numExperts: 8, numExpertsUsed: 2, expertCache: 'global' }).experts;
    assert.ok(!plan.allResident && plan.numSlots >= 4, `${plan.numSlots} slots`);
    const cache = await StreamedExperts.open(file, plan, () => { throw new Error('unused'); }, { lock: false, maxSegmentBytes: plan.slotBytes[0]!, prefetch: false });
    try {
      for (let l = 0; l < plan.numLayers; l++) {
        for (let e = 0; e < 8; e += 2) {
          const ids = Int32Array.of(e, e + 1);
          const want: Uint8Array[][] = [];
          all.useExperts(l, ids, (_, ts) => ts.forEach((t) => want.push([t.gate.data, t.up.data, t.down.data].map((d) => d.slice()))));
          let n = 0;
          cache.useExperts(l, ids, (got, ts) => ts.forEach((t, i) => {
            const j = [...ids].indexOf(got[i]!);
            assert.deepEqual([t.gate.data, t.up.data, t.down.data], want[j], `layer ${l} expert ${got[i]}`);
            n++;
          }));
          assert.equal(n, 2);
        }
      }
      assert.equal(cache.stats().cacheBytes, plan.numSlots * plan.slotBytes[0]!);
    } finally {
      cache.dispose();
      resident.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
