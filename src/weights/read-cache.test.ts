import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MAX_READ_CACHE_BYTES, readAheadBytes, readCacheAtLoad, readCacheBytesFor, readCacheCap, readCachePolicy, ROOM_PER_STREAMED_BYTE } from './read-cache.js';
import { memoryCgroupSupport, runInMemoryCgroup } from './cgroup.js';

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

test('readCacheAtLoad: 0.4 of what the level streams less the limit\'s margin (at least the base, at most 0.4), at the highest level that fits (by hand)', () => {
  assert.equal(ROOM_PER_STREAMED_BYTE, 0.4);
  // Five levels: weights 100..500 MiB, streamed 1000..600 MiB.
  const levels = { bytesAt: [100, 200, 300, 400, 500].map((m) => m * MiB), streamedAt: [1000, 900, 800, 700, 600].map((m) => m * MiB) };
  const p = (marginMiB: number, baseMiB = 32) => ({ baseBytes: baseMiB * MiB, fixed: false, marginBytes: marginMiB * MiB });
  // Margin 64: need = 400-64 = 336 at level 0, 296 at 1, 256 at 2, 216 at 3, 176 at 4.
  // Room 600: level 4 needs 676, 3 needs 616, 2 needs 556 <= 600: 256 MiB.
  assert.equal(readCacheAtLoad(p(64), levels, 600 * MiB), 256 * MiB);
  // Room 1000: level 4 (500 + 176 = 676).
  assert.equal(readCacheAtLoad(p(64), levels, 1000 * MiB), 176 * MiB);
  // Room 300: no level fits (level 0 needs 436): the least-memory level's cache, 336.
  assert.equal(readCacheAtLoad(p(64), levels, 300 * MiB), 336 * MiB);
  // A wide margin: the base (32 MiB) everywhere, so the top level that fits with it.
  assert.equal(readCacheAtLoad(p(1000), levels, 600 * MiB), 32 * MiB);
  // No limit: the base, at most the law (a level that streams little needs little room).
  assert.equal(readCacheAtLoad({ baseBytes: 32 * MiB, fixed: false, marginBytes: Infinity }, levels, 600 * MiB), 32 * MiB);
  const nearlyAll = { bytesAt: [100, 200, 300].map((m) => m * MiB), streamedAt: [200, 100, 10].map((m) => m * MiB) };
  // Level 2 streams 10 MiB: 4 MiB of cache (not 32), and 300 + 4 fits 305.
  assert.equal(readCacheAtLoad({ baseBytes: 32 * MiB, fixed: false, marginBytes: Infinity }, nearlyAll, 305 * MiB), 4 * MiB);
  assert.equal(readCacheAtLoad(p(64), nearlyAll, 305 * MiB), 4 * MiB);
  // Level 1 (100 MiB streamed): law 40, margin 64 -> max(32, -24) = 32 <= 40.
  assert.equal(readCacheAtLoad(p(64), nearlyAll, 290 * MiB), 32 * MiB);
  // A fixed size (FLEXINFER_READ_CACHE / O_DIRECT only): the base, whatever the level streams.
  assert.equal(readCacheAtLoad({ baseBytes: 5 * MiB, fixed: true, marginBytes: 0 }, levels, 600 * MiB), 5 * MiB);
  // A cap (what a static split leaves unused): at most 50 MiB, so level 4 fits (500 + 50 <= 600).
  assert.equal(readCacheAtLoad({ ...p(64), maxBytes: 50 * MiB }, levels, 600 * MiB), 50 * MiB);
  // Cap 0 (a static split leaves nothing unused): no cache, the top level.
  assert.equal(readCacheAtLoad({ ...p(64), maxBytes: 0 }, levels, 600 * MiB), 0);
});

test('readCacheCap: the static reservation above the floor, plus the runtime reserve the floor holds (by hand)', () => {
  // --parallel 16: static reserves 1400 MiB of KV, the floor 47: 1353 + min(9, 47).
  assert.equal(readCacheCap(1400 * MiB, 47 * MiB, 9 * MiB), 1362 * MiB);
  // --parallel 1: the floor is the static reservation: only the reserve the floor holds.
  assert.equal(readCacheCap(47 * MiB, 47 * MiB, 9 * MiB), 9 * MiB);
  assert.equal(readCacheCap(47 * MiB, 47 * MiB, 60 * MiB), 47 * MiB);
  // A floor set above the static reservation: nothing from the KV side.
  assert.equal(readCacheCap(10 * MiB, 20 * MiB, 0), 0);
});

test('readCachePolicy: the margin is the limit less the budget (none without a limit); a set size is fixed', () => {
  const big = 2 ** 40;
  assert.deepEqual(readCachePolicy(HERE, big, 500 * MiB, true, '', 564 * MiB), { baseBytes: readCacheBytesFor(HERE, big, true, ''), fixed: false, marginBytes: 64 * MiB });
  assert.equal(readCachePolicy(HERE, big, 500 * MiB, true, '', undefined).marginBytes, Infinity);
  assert.equal(readCachePolicy(HERE, big, 500 * MiB, true, '', 400 * MiB).marginBytes, 0);
  assert.deepEqual(readCachePolicy(HERE, big, 500 * MiB, true, '96MiB', 564 * MiB), { baseBytes: 96 * MiB, fixed: true, marginBytes: 64 * MiB });
  assert.equal(readCachePolicy(HERE, big, 500 * MiB, false, '', 564 * MiB).fixed, true);
});

const support = memoryCgroupSupport();
test('memoryLimitBytes: a process in a memory cgroup of 300 MiB reads 300 MiB', { skip: support.ok ? false : support.reason }, async () => {
  const cgroupJs = new URL('./cgroup.js', import.meta.url).href;
  const r = await runInMemoryCgroup(process.execPath, ['--input-type=module', '-e', `import { memoryLimitBytes } from ${JSON.stringify(cgroupJs)}; console.log(memoryLimitBytes())`], 300 * MiB, { timeoutMs: 60_000 });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(Number(r.stdout.trim()), 300 * MiB);
});
