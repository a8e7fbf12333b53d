import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calibrateStorage, calibrationCachePath, calibrationIsStale, CALIBRATION_DRIFT, CALIBRATION_MAX_AGE_MS, readCachedCalibration, refreshCalibration, type Calibration } from './calibrate.js';
import { deepestNearBest, DEPTH_TIE, directStart, MIN_DIRECT_START_DEPTH, readPathsFrom } from './create.js';
import { randomBytes } from './testing.js';

function withCache<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'fi-cal-'));
  const saved = process.env.FLEXINFER_CACHE_DIR;
  process.env.FLEXINFER_CACHE_DIR = join(dir, 'cache');
  try {
    return fn(dir);
  } finally {
    if (saved === undefined) delete process.env.FLEXINFER_CACHE_DIR;
    else process.env.FLEXINFER_CACHE_DIR = saved;
    rmSync(dir, { recursive: true, force: true });
  }
}

test('calibrateStorage probes every read path, keeps the fastest, caches it per device with when and under what load', () => {
  withCache((dir) => {
    const path = join(dir, 'data.bin');
    writeFileSync(path, randomBytes(8 * 1024 * 1024 + 123, 5));
    assert.equal(readCachedCalibration(path), undefined);
    const probes = [
      { direct: true, depth: 1 },
      { direct: true, depth: 4 },
      { direct: false, depth: 1 },
    ];
    const cal = calibrateStorage(path, { probes, bytes: 4 << 20 });
    // O_DIRECT probes are left out where the file system refuses them (tmpfs).
    assert.ok(cal.probes.length === 3 || cal.probes.every((p) => !p.direct));
    for (const p of cal.probes) {
      assert.equal(p.bytes, 4 << 20);
      assert.ok(p.bytesPerSec > 0 && p.seconds > 0);
    }
    const fastest = Math.max(...cal.probes.map((p) => p.bytesPerSec));
    assert.equal(cal.readBytesPerSec, fastest);
    const winner = cal.probes.find((p) => p.bytesPerSec === fastest)!;
    assert.deepEqual(cal.path, { direct: winner.direct, depth: winner.depth });
    assert.equal(cal.bufferedBytesPerSec, cal.probes.find((p) => !p.direct)!.bytesPerSec);
    assert.equal(cal.source, 'probe');
    assert.ok(Number.isFinite(cal.loadAverage));
    assert.ok(Math.abs(Date.parse(cal.measuredAt) - Date.now()) < 60_000);
    assert.deepEqual(readCachedCalibration(path), cal);
    const onDisk = JSON.parse(readFileSync(calibrationCachePath(), 'utf8'));
    assert.deepEqual(Object.keys(onDisk), [cal.device]);
    // The streamer's candidates (their order: the readPathsFrom test): the first two are of both kinds.
    const paths = readPathsFrom(cal);
    const directProbe = cal.probes.some((p) => p.direct);
    const start = directStart(cal.probes.filter((p) => p.direct));
    assert.deepEqual(paths[0], directProbe ? { direct: true, depth: start!.depth, prior: start!.bytesPerSec } : { ...cal.path, prior: cal.readBytesPerSec });
    assert.notEqual(paths[1]!.direct, paths[0]!.direct);
  });
});

test('an entry of an older version (no read path) is measured again', () => {
  withCache((dir) => {
    const path = join(dir, 'data.bin');
    writeFileSync(path, randomBytes(1 << 20, 6));
    const cal = calibrateStorage(path, { probes: [{ direct: false, depth: 1 }], bytes: 1 << 20 });
    const old = { ...cal } as Partial<Calibration>;
    delete old.path;
    mkdirSync(join(dir, 'cache'), { recursive: true });
    writeFileSync(calibrationCachePath(), JSON.stringify({ [cal.device]: { ...old, preferDirect: true, ioThreads: 2 } }));
    assert.equal(readCachedCalibration(path), undefined);
  });
});

const CAL: Calibration = {
  device: '1',
  readBytesPerSec: 2e9,
  path: { direct: true, depth: 8 },
  directBytesPerSec: 2e9,
  bufferedBytesPerSec: 1.2e9,
  probes: [],
  bytesMeasured: 1 << 28,
  measuredAt: '2026-01-01T00:00:00.000Z',
  loadAverage: 3.5,
  source: 'probe',
  file: '/m.gguf',
};

test('refreshCalibration: a run that agrees leaves the entry; one that disagrees replaces the rate and path, dated now', () => {
  const within = CAL.readBytesPerSec * (1 - CALIBRATION_DRIFT * 0.9);
  assert.equal(refreshCalibration(CAL, { path: { direct: true, depth: 8 }, bytesPerSec: within, bytes: 1e9 }), undefined);
  const now = new Date('2026-01-02T00:00:00.000Z');
  const slow = refreshCalibration(CAL, { path: { direct: false, depth: 4 }, bytesPerSec: 1.3e9, bytes: 5e8 }, now)!;
  assert.equal(slow.readBytesPerSec, 1.3e9);
  assert.deepEqual(slow.path, { direct: false, depth: 4 });
  assert.equal(slow.bufferedBytesPerSec, 1.3e9);
  assert.equal(slow.directBytesPerSec, 2e9, 'the other path keeps its figure');
  assert.equal(slow.source, 'run');
  assert.equal(slow.measuredAt, now.toISOString());
  assert.equal(slow.bytesMeasured, 5e8);
  assert.equal(refreshCalibration(CAL, { path: CAL.path, bytesPerSec: 0, bytes: 0 }), undefined);
});

test('refreshCalibration: a run\'s compute rate replaces the matmul figure when it disagrees, leaving the read figures and date alone', () => {
  const cal: Calibration = { ...CAL, computeBytesPerSec: 40e9, computeSource: 'matmul' };
  // Agrees on both: nothing to save.
  assert.equal(refreshCalibration(cal, { path: cal.path, bytesPerSec: cal.readBytesPerSec, bytes: 1e9, computeBytesPerSec: 40e9 * (1 - CALIBRATION_DRIFT * 0.9) }), undefined);
  const now = new Date('2026-01-02T00:00:00.000Z');
  const slower = refreshCalibration(cal, { path: cal.path, bytesPerSec: cal.readBytesPerSec, bytes: 1e9, computeBytesPerSec: 22e9 }, now)!;
  assert.equal(slower.computeBytesPerSec, 22e9);
  assert.equal(slower.computeSource, 'run');
  assert.equal(slower.readBytesPerSec, cal.readBytesPerSec);
  assert.equal(slower.measuredAt, cal.measuredAt, 'the storage figures keep their date (they are what goes stale)');
  // Both disagree: both replaced.
  const both = refreshCalibration(cal, { path: { direct: true, depth: 16 }, bytesPerSec: 3.5e9, bytes: 1e9, computeBytesPerSec: 20e9 }, now)!;
  assert.deepEqual([both.readBytesPerSec, both.computeBytesPerSec, both.measuredAt], [3.5e9, 20e9, now.toISOString()]);
  // An entry without a compute figure takes the run's.
  const { computeBytesPerSec: _, ...bare } = cal;
  assert.equal(refreshCalibration(bare as Calibration, { path: cal.path, bytesPerSec: cal.readBytesPerSec, bytes: 1e9, computeBytesPerSec: 30e9 })!.computeBytesPerSec, 30e9);
});

test('calibrationIsStale: older than CALIBRATION_MAX_AGE_MS, or undated', () => {
  const t = Date.parse(CAL.measuredAt);
  assert.equal(calibrationIsStale(CAL, t + CALIBRATION_MAX_AGE_MS - 1), false);
  assert.equal(calibrationIsStale(CAL, t + CALIBRATION_MAX_AGE_MS + 1), true);
  assert.equal(calibrationIsStale({ measuredAt: 'yesterday-ish' }, t), true);
});

test('readPathsFrom: the best O_DIRECT probe first (under a budget the page cache counts), the best buffered one, then the first at twice the depth (no prior)', () => {
  const probe = (direct: boolean, depth: number, gbs: number) => ({ direct, depth, bytes: 1 << 28, seconds: (1 << 28) / (gbs * 1e9), bytesPerSec: gbs * 1e9 });
  const probes = [probe(true, 8, 1.8), probe(true, 16, 2.0), probe(false, 1, 0.7), probe(false, 4, 3.0), probe(false, 8, 3.5), probe(false, 16, 3.2)];
  const cal = { path: { direct: false, depth: 8 }, readBytesPerSec: 3.5e9, probes };
  assert.deepEqual(readPathsFrom(cal), [
    { direct: true, depth: 16, prior: 2.0e9 },
    { direct: false, depth: 8, prior: 3.5e9 },
    { direct: true, depth: 32 },
  ]);
  // At the deepest depth no sibling (a shallower one lost on this disk: NOTE on SHALLOW_SIBLING); without probes of the other kind, its default.
  assert.deepEqual(readPathsFrom({ path: { direct: true, depth: 32 }, readBytesPerSec: 2e9, probes: [probe(true, 32, 2)] }), [
    { direct: true, depth: 32, prior: 2e9 },
    { direct: false, depth: 4 },
  ]);
  // No O_DIRECT probe (a file system that refuses it, or an entry a run refreshed): the calibration's path.
  assert.deepEqual(readPathsFrom({ path: { direct: false, depth: 4 }, readBytesPerSec: 3e9, probes: [] }), [
    { direct: false, depth: 4, prior: 3e9 },
    { direct: true, depth: 8 },
    { direct: false, depth: 8 },
  ]);
});

test('deepestNearBest: among probes within DEPTH_TIE of the fastest, the deepest', () => {
  const probe = (depth: number, gbs: number) => ({ direct: true, depth, bytes: 1 << 28, seconds: (1 << 28) / (gbs * 1e9), bytesPerSec: gbs * 1e9 });
  // The 25% point's "before" probes: direct@4 is fastest by 3%, direct@32 is 8% below it.
  const sweep = [probe(1, 1.15), probe(2, 1.4), probe(4, 1.63), probe(8, 1.56), probe(16, 1.44), probe(32, 1.5)];
  assert.equal(deepestNearBest(sweep)!.depth, 32);
  assert.deepEqual(readPathsFrom({ path: { direct: true, depth: 4 }, readBytesPerSec: 1.63e9, probes: sweep }), [
    { direct: true, depth: 32, prior: 1.5e9 },
    { direct: false, depth: 4 },
  ]);
  // A deeper path clearly slower (more than DEPTH_TIE) does not win.
  assert.ok(DEPTH_TIE < 0.2);
  assert.equal(deepestNearBest([probe(4, 2.0), probe(32, 1.5)])!.depth, 4);
  assert.equal(deepestNearBest([]), undefined);
});

test('directStart: the deepest probe near the best, never shallower than MIN_DIRECT_START_DEPTH', () => {
  const probe = (depth: number, gbs: number) => ({ direct: true, depth, bytes: 1 << 28, seconds: (1 << 28) / (gbs * 1e9), bytesPerSec: gbs * 1e9 });
  assert.equal(MIN_DIRECT_START_DEPTH, 8);
  // A 75% point's "before" probes: direct@2 fastest, deeper ones 20-37% below it (a noisy series).
  const noisy = [probe(1, 1.09), probe(2, 1.42), probe(4, 1.11), probe(8, 0.93), probe(16, 1.13), probe(32, 0.9)];
  assert.equal(deepestNearBest(noisy)!.depth, 2);
  assert.deepEqual(directStart(noisy), probe(8, 0.93));
  assert.deepEqual(readPathsFrom({ path: { direct: true, depth: 2 }, readBytesPerSec: 1.42e9, probes: noisy })[0], { direct: true, depth: 8, prior: 0.93e9 });
  // Near-best at or above the floor: unchanged.
  const flat = [probe(4, 1.63), probe(8, 1.56), probe(32, 1.5)];
  assert.equal(directStart(flat)!.depth, 32);
  // Only shallow depths probed: the near-best one.
  assert.equal(directStart([probe(1, 1), probe(2, 1.5)])!.depth, 2);
  assert.equal(directStart([]), undefined);
});
