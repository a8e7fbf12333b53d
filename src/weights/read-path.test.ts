import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReadPathSelector, type PathSample } from './read-path.js';
import type { ReadPath } from './probe.js';

const DIRECT: ReadPath = { direct: true, depth: 8 };
const BUFFERED: ReadPath = { direct: false, depth: 4 };
const GB = 1e9;

/** One token of `bytes` on `path` at `rate` (bytes/s), as the store reports it. */
function token(path: ReadPath, rate: number, bytes = 300e6): PathSample[] {
  return [
    { direct: true, bytes: path.direct ? bytes : 0, busySec: path.direct ? bytes / rate : 0 },
    { direct: false, bytes: path.direct ? 0 : bytes, busySec: path.direct ? 0 : bytes / rate },
  ];
}

/** Runs `n` tokens on a device where each path reads at rates(path, tokenIndex); returns the paths used. */
function run(sel: ReadPathSelector, n: number, rates: (p: ReadPath, t: number) => number): ReadPath[] {
  const used: ReadPath[] = [];
  for (let t = 0; t < n; t++) {
    const p = sel.current;
    used.push(p);
    sel.onToken(token(p, rates(p, t)));
  }
  return used;
}

test('ReadPathSelector moves to the faster path when the calibration guessed wrong', () => {
  const sel = new ReadPathSelector([DIRECT, BUFFERED], 0, { exploreEvery: 8 });
  // Buffered is twice as fast on this disk today.
  const used = run(sel, 40, (p) => (p.direct ? 1 * GB : 2 * GB));
  assert.deepEqual(sel.best, BUFFERED);
  // It stays mostly on the fast path once it has found it.
  const late = used.slice(20);
  assert.ok(late.filter((p) => !p.direct).length >= 17, `${late.filter((p) => !p.direct).length} of 20 late tokens buffered`);
  const est = sel.estimates();
  assert.ok(Math.abs(est[0]!.bytesPerSec - 1 * GB) < 1e-3 * GB);
  assert.ok(Math.abs(est[1]!.bytesPerSec - 2 * GB) < 1e-3 * GB);
});

test('ReadPathSelector keeps a good start, and tries a clearly worse path less and less often', () => {
  const sel = new ReadPathSelector([DIRECT, BUFFERED], 0, { exploreEvery: 8 });
  const used = run(sel, 200, (p) => (p.direct ? 2 * GB : 1 * GB));
  assert.deepEqual(sel.best, DIRECT);
  const buffered = used.filter((p) => !p.direct).length;
  // Explorations after 8, 16, 32, 64 tokens of exploitation: one token each.
  assert.ok(buffered <= 6, `${buffered} of 200 tokens on the worse path`);
  assert.ok(buffered >= 3, 'it did look');
});

test('ReadPathSelector follows the disk when the paths trade places mid-run (drift)', () => {
  const sel = new ReadPathSelector([DIRECT, BUFFERED], 0, { exploreEvery: 8 });
  // Direct fast for 30 tokens, then direct drops to a third while buffered holds.
  const used = run(sel, 80, (p, t) => (p.direct ? (t < 30 ? 2.4 * GB : 0.8 * GB) : 1.6 * GB));
  assert.ok(used.slice(0, 30).filter((p) => p.direct).length >= 24);
  assert.deepEqual(sel.best, BUFFERED);
  assert.ok(used.slice(45).filter((p) => !p.direct).length >= 28, `${used.slice(45).filter((p) => !p.direct).length} of 35 late tokens buffered`);
  assert.ok(sel.switches >= 2);
});

test('ReadPathSelector: a candidate whose probe figure was clearly lower waits longer for its first turn', () => {
  const close = new ReadPathSelector([{ ...DIRECT, prior: 2 * GB }, { ...BUFFERED, prior: 1.9 * GB }], 0, { exploreEvery: 8 });
  const far = new ReadPathSelector([{ ...DIRECT, prior: 2 * GB }, { ...BUFFERED, prior: 1 * GB }], 0, { exploreEvery: 8 });
  const first = (sel: ReadPathSelector) => run(sel, 60, (p) => (p.direct ? 2 * GB : 1.5 * GB)).findIndex((p) => !p.direct);
  assert.equal(first(close), 1 + 3, 'after the warm-up token and firstExplore (3) tokens');
  assert.equal(first(far), 1 + 32);
  // The early turn is only the first: the next comes exploreEvery (doubled after a clear loss) later.
  const used = run(new ReadPathSelector([{ ...DIRECT, prior: 2 * GB }, { ...BUFFERED, prior: 1.9 * GB }], 0, { exploreEvery: 8 }), 60, (p) => (p.direct ? 2 * GB : 1.9 * GB));
  const turns = used.map((p, i) => (p.direct ? -1 : i)).filter((i) => i >= 0);
  assert.deepEqual(turns.slice(0, 2), [4, 4 + 1 + 8], 'a close loser: first at 4, then 8 exploit tokens later');
  const late = new ReadPathSelector([{ ...DIRECT, prior: 2 * GB }, { ...BUFFERED, prior: 1.9 * GB }], 0, { exploreEvery: 8, firstExplore: 8 });
  assert.equal(first(late), 1 + 8, 'firstExplore: 8 keeps the old cadence');
});

test('ReadPathSelector: one candidate never switches; bad arguments are refused', () => {
  const sel = new ReadPathSelector([BUFFERED]);
  run(sel, 50, () => GB);
  assert.equal(sel.switches, 0);
  assert.throws(() => new ReadPathSelector([]), RangeError);
  assert.throws(() => new ReadPathSelector([DIRECT], 1), RangeError);
});
