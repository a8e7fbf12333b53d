import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allocAligned, bufferAddress, lockMemory, memoryStats, unlockMemory } from './memory.js';

test('allocAligned returns buffers aligned as asked, writable end to end', () => {
  for (const alignment of [64, 4096, 1 << 16]) {
    for (const bytes of [0, 1, 4095, 4096, 100_003]) {
      const buf = allocAligned(bytes, alignment);
      assert.equal(buf.byteLength, bytes);
      assert.equal(bufferAddress(buf) % alignment, 0, `address aligned to ${alignment}`);
      const u8 = new Uint8Array(buf);
      u8.fill(0xab);
      if (bytes > 0) assert.equal(u8[bytes - 1], 0xab);
    }
  }
});

test('allocAligned rejects bad sizes and alignments with a message', () => {
  assert.throws(() => allocAligned(-1), RangeError);
  assert.throws(() => allocAligned(1.5), RangeError);
  assert.throws(() => allocAligned(16, 3000), /power of two/);
  assert.throws(() => allocAligned(16, 0), RangeError);
});

test('lockMemory locks and unlockMemory unlocks; stats follow', () => {
  const buf = allocAligned(1 << 20, 4096);
  const before = memoryStats().lockedBytes;
  const r = lockMemory(buf);
  if (!r.locked) {
    // Not permitted here (RLIMIT_MEMLOCK): the failure must say why, not throw.
    assert.match(r.error ?? '', /mlock/);
    return;
  }
  assert.equal(memoryStats().lockedBytes, before + (1 << 20));
  assert.deepEqual(lockMemory(buf), { locked: true }, 'locking twice is harmless');
  assert.equal(memoryStats().lockedBytes, before + (1 << 20));
  unlockMemory(buf);
  assert.equal(memoryStats().lockedBytes, before);
});
