import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summarizeTrace } from './io-trace.js';

// Two layers per pass; pass 0 is skipped. Hand-worked totals below.
const a = (s: number, us: number, busyUs: number, bytes: number) => ({ e: 'acquire', s, us, waitUs: 0, busyUs, bytes });
const r = (s: number, us: number, busyUs: number, bytes: number) => ({ e: 'release', s, us, busyUs, bytes });
const events = [
  a(0, 0, 0, 0), r(0, 5, 5, 10),
  { e: 'issue', s: 2, us: 5 },
  a(1, 6, 6, 20), r(1, 10, 8, 20),
  { e: 'token', us: 11, path: 'direct@32', next: 'direct@32' },
  a(2, 20, 18, 100), // first event summarized
  r(2, 30, 20, 110), // compute: wall 10, busy 2, bytes 10
  a(3, 34, 24, 150), // between: wall 4, busy 4, bytes 40
  r(3, 40, 25, 150), // compute: wall 6, busy 1, bytes 0
  a(4, 50, 35, 230), // between: wall 10, busy 10, bytes 80
];

test('summarizeTrace splits the span after the skipped passes into layer compute and the time between layers', () => {
  const s = summarizeTrace(events, 2, 1)!;
  assert.deepEqual(s, {
    layers: 3,
    spanUs: 30,
    bytes: 130,
    compute: { wallUs: 16, busyUs: 3, bytes: 10 },
    between: { wallUs: 14, busyUs: 14, bytes: 120 },
  });
  assert.equal(s.compute.wallUs + s.between.wallUs, s.spanUs);
  assert.equal(s.compute.bytes + s.between.bytes, s.bytes);
});

test('summarizeTrace is undefined for a trace that ends before the first summarized pass', () => {
  assert.equal(summarizeTrace(events.slice(0, 5), 2, 1), undefined);
  assert.equal(summarizeTrace(events, 2, 3), undefined);
});
