import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calibrateStorage, calibrationCachePath, readCachedCalibration } from './calibrate.js';
import { randomBytes } from './testing.js';

test('calibrateStorage measures both read paths, picks the faster and caches per device', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-cal-'));
  const saved = process.env.FLEXINFER_CACHE_DIR;
  process.env.FLEXINFER_CACHE_DIR = join(dir, 'cache');
  try {
    const path = join(dir, 'data.bin');
    writeFileSync(path, randomBytes(8 * 1024 * 1024 + 123, 5));
    assert.equal(readCachedCalibration(path), undefined);
    const cal = calibrateStorage(path, { chunkBytes: 1 << 20 });
    assert.ok(cal.bufferedBytesPerSec > 0);
    assert.ok(cal.directBytesPerSec >= 0);
    assert.equal(cal.readBytesPerSec, Math.max(cal.directBytesPerSec, cal.bufferedBytesPerSec));
    assert.equal(cal.preferDirect, cal.directBytesPerSec >= cal.bufferedBytesPerSec);
    assert.equal(cal.bytesMeasured, 4 * 1024 * 1024, 'every other 1 MiB chunk of 8 MiB');
    assert.deepEqual(readCachedCalibration(path), cal);
    const onDisk = JSON.parse(readFileSync(calibrationCachePath(), 'utf8'));
    assert.deepEqual(Object.keys(onDisk), [cal.device]);
  } finally {
    if (saved === undefined) delete process.env.FLEXINFER_CACHE_DIR;
    else process.env.FLEXINFER_CACHE_DIR = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});
