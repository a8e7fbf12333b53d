import { test } from 'node:test';
import assert from 'node:assert/strict';
import { discardRange, lockRange, regionStats, releaseRegion, reserveRegion, residentBytes, unlockRange } from './memory-region.js';

const PAGE = regionStats().pageSize;
const MiB = 1 << 20;

test('a reserved region costs memory only where written; discardRange gives it back and zeroes it', () => {
  const r = reserveRegion(16 * MiB);
  assert.equal(r.byteLength, 16 * MiB);
  assert.equal(residentBytes(r, 0, 16 * MiB), 0, 'untouched address space is not memory');
  new Uint8Array(r, 0, 4 * MiB).fill(7);
  assert.equal(residentBytes(r, 0, 16 * MiB), 4 * MiB);
  discardRange(r, MiB, 2 * MiB); // the middle of the written part
  assert.equal(residentBytes(r, 0, 16 * MiB), 2 * MiB, 'the discarded pages left the process');
  const u8 = new Uint8Array(r);
  assert.equal(u8[MiB - 1], 7);
  assert.equal(u8[MiB], 0, 'a discarded page reads as zero');
  assert.equal(u8[3 * MiB - 1], 0);
  assert.equal(u8[3 * MiB], 7);
  releaseRegion(r);
  assert.equal(r.byteLength, 0, 'released: detached');
});

test('lockRange / unlockRange / discardRange keep an exact locked total, whatever ranges overlap', () => {
  const r = reserveRegion(8 * MiB);
  const before = regionStats().lockedBytes;
  new Uint8Array(r).fill(1);
  const a = lockRange(r, 0, 2 * MiB);
  if (!a.locked) {
    assert.match(a.error ?? '', /mlock/, 'a refused lock says why');
    releaseRegion(r);
    return;
  }
  assert.equal(regionStats().lockedBytes - before, 2 * MiB);
  lockRange(r, MiB, 2 * MiB); // overlaps [MiB, 2 MiB)
  assert.equal(regionStats().lockedBytes - before, 3 * MiB);
  lockRange(r, 0, 1); // one byte rounds up to one page, already locked
  assert.equal(regionStats().lockedBytes - before, 3 * MiB);
  unlockRange(r, 0, MiB);
  assert.equal(regionStats().lockedBytes - before, 2 * MiB);
  discardRange(r, 2 * MiB, MiB); // unlocks what it frees
  assert.equal(regionStats().lockedBytes - before, MiB);
  releaseRegion(r); // unmapping drops the rest
  assert.equal(regionStats().lockedBytes, before);
});

test('ranges are checked: page-aligned offsets, inside the region, live regions only', () => {
  const r = reserveRegion(4 * PAGE);
  assert.throws(() => discardRange(r, 1, PAGE), /page size/);
  assert.throws(() => discardRange(r, 0, 5 * PAGE), /outside the region/);
  assert.throws(() => lockRange(r, 4 * PAGE, 1), /outside the region/);
  assert.throws(() => discardRange(r, -PAGE, PAGE), RangeError);
  assert.throws(() => discardRange(new ArrayBuffer(PAGE), 0, PAGE), /not a live region/);
  releaseRegion(r);
  releaseRegion(r); // twice is harmless (detached)
  assert.throws(() => reserveRegion(-1), RangeError);
});
