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
import { readFileSync } from 'node:fs';
import { adviseHugePages, allocAligned, bufferAddress, MAX_ALLOC_BYTES } from '../native/index.js';
import { readGgufSync } from '../gguf/reader.js';
import { synthesize } from '../synth/synth.js';
import { DEFAULT_HARDWARE, planInputs } from './create.js';
import { planMoe } from './expert-plan.js';
import { ResidentExperts, StreamedExperts } from './expert-store.js';
import { ResidentWeightStore } from './resident.js';
import { LockedSegments, segmentLayout } from './segments.js';

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

test('LockedSegments: segments of 2 MiB or more start 2 MiB-aligned with 2 MiB pages advised; smaller ones keep their alignment', () => {
  const segs = new LockedSegments([3 * 2 ** 20, 8192, 2 ** 21]);
  assert.equal(bufferAddress(segs.buffers[0]!) % 2 ** 21, 0);
  assert.equal(bufferAddress(segs.buffers[1]!) % 4096, 0);
  assert.equal(bufferAddress(segs.buffers[2]!) % 2 ** 21, 0);
  assert.deepEqual(segs.buffers.map((b) => b.byteLength), [3 * 2 ** 20, 8192, 2 ** 21]);
  // Where the kernel offers transparent huge pages on request, the advice is taken; a buffer
  // without a whole 2 MiB-aligned page in it has nothing to advise.
  let thp = '';
  try {
    thp = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
  } catch {
    // not Linux, or no THP: only the 'false' case is checked
  }
  if (/\[(always|madvise)\]/.test(thp)) assert.equal(adviseHugePages(segs.buffers[0]!), true);
  assert.equal(adviseHugePages(allocAligned(8192)), false);
  segs.dispose();
});
