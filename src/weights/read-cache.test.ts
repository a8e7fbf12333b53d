import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MAX_READ_CACHE_BYTES, readAheadBytes, readCacheBytesFor } from './read-cache.js';

const MiB = 1 << 20;
const HERE = fileURLToPath(import.meta.url);

test('readAheadBytes: the read_ahead_kb of the disk holding the file, as stat(1) names it', (t) => {
  // Independent reference: GNU stat's major:minor of the file's device, then sysfs.
  let majMin: string;
  try {
    majMin = execFileSync('stat', ['-c', '%Hd:%Ld', HERE], { encoding: 'utf8' }).trim();
  } catch {
    t.skip('stat(1) without %Hd:%Ld');
    return;
  }
  let kb: number | undefined;
  for (const q of [`/sys/dev/block/${majMin}/queue/read_ahead_kb`, `/sys/dev/block/${majMin}/../queue/read_ahead_kb`]) {
    try {
      kb = Number(readFileSync(q, 'utf8').trim());
      break;
    } catch {
      // a partition, or no block device (overlay, tmpfs)
    }
  }
  assert.equal(readAheadBytes(HERE), kb === undefined ? undefined : kb * 1024);
  assert.equal(readAheadBytes('/no/such/file'), undefined);
});

test('readCacheBytesFor: 4 read-ahead windows, at most 64 MiB and 1/16 of the file; 0 for O_DIRECT only', () => {
  const ra = readAheadBytes(HERE) ?? 8 * MiB;
  const big = 2 ** 40;
  assert.equal(readCacheBytesFor(HERE, big, true, ''), Math.min(MAX_READ_CACHE_BYTES, 4 * ra));
  assert.equal(readCacheBytesFor(HERE, 16 * MiB, true, ''), Math.min(MiB, 4 * ra));
});

test('readCacheBytesFor: FLEXINFER_READ_CACHE and O_DIRECT only', () => {
  const big = 2 ** 40;
  assert.equal(readCacheBytesFor(HERE, big, false, ''), 0);
  // FLEXINFER_READ_CACHE: a size of its own, or 0; bad text is a typed error naming the variable.
  assert.equal(readCacheBytesFor(HERE, big, true, '96MiB'), 96 * MiB);
  assert.equal(readCacheBytesFor(HERE, 100 * MiB, true, '10%'), 10 * MiB);
  assert.equal(readCacheBytesFor(HERE, big, true, '0'), 0);
  assert.equal(readCacheBytesFor(HERE, big, false, '96MiB'), 0);
  assert.throws(() => readCacheBytesFor(HERE, big, true, 'lots'), /FLEXINFER_READ_CACHE/);
});
