/**
 * Read buffers in 2 MiB pages (read-buffer.ts): the switch's values, the alignment and region
 * rounding by hand, and, where the kernel offers transparent huge pages on request, that a
 * touched read buffer is really backed by them (/proc/self/smaps).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { InvalidOptionError } from '../errors.js';
import { bufferAddress } from '../native/index.js';
import { allocReadBuffer, HUGE_PAGE_BYTES, hugeReadBuffers, readRegionBytes } from './read-buffer.js';

const MiB = 1024 * 1024;

function withEnv<T>(value: string | undefined, f: () => T): T {
  const saved = process.env.FLEXINFER_HUGE_PAGES;
  if (value === undefined) delete process.env.FLEXINFER_HUGE_PAGES;
  else process.env.FLEXINFER_HUGE_PAGES = value;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.FLEXINFER_HUGE_PAGES;
    else process.env.FLEXINFER_HUGE_PAGES = saved;
  }
}

/** AnonHugePages (bytes) of the mapping that holds `address`, from /proc/self/smaps. */
function anonHugeBytesAt(address: number): number {
  const lines = readFileSync('/proc/self/smaps', 'utf8').split('\n');
  let inside = false;
  for (const line of lines) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (m) inside = parseInt(m[1]!, 16) <= address && address < parseInt(m[2]!, 16);
    const h = /^AnonHugePages:\s+(\d+) kB/.exec(line);
    if (inside && h) return Number(h[1]) * 1024;
  }
  return 0;
}

test('hugeReadBuffers: on by default and with 1, off with 0, anything else an InvalidOptionError naming the variable', () => {
  assert.equal(hugeReadBuffers(undefined), true);
  assert.equal(hugeReadBuffers(''), true);
  assert.equal(hugeReadBuffers('1'), true);
  assert.equal(hugeReadBuffers('0'), false);
  assert.throws(() => hugeReadBuffers('yes'), (e: unknown) => e instanceof InvalidOptionError && /FLEXINFER_HUGE_PAGES/.test((e as Error).message));
});

test('allocReadBuffer / readRegionBytes: 2 MiB-aligned and whole 2 MiB pages from 2 MiB up, unchanged below or when off (by hand)', () => {
  withEnv(undefined, () => {
    const big = allocReadBuffer(3 * MiB);
    assert.equal(big.byteLength, 3 * MiB);
    assert.equal(bufferAddress(big) % HUGE_PAGE_BYTES, 0);
    const small = allocReadBuffer(8192);
    assert.equal(small.byteLength, 8192);
    assert.equal(bufferAddress(small) % 4096, 0);
    assert.equal(readRegionBytes(3 * MiB), 4 * MiB);
    assert.equal(readRegionBytes(4 * MiB), 4 * MiB);
    assert.equal(readRegionBytes(MiB), MiB);
  });
  withEnv('0', () => {
    assert.equal(readRegionBytes(3 * MiB), 3 * MiB);
    const b = allocReadBuffer(3 * MiB);
    assert.equal(b.byteLength, 3 * MiB);
    assert.equal(bufferAddress(b) % 4096, 0);
  });
});

test('allocReadBuffer: a touched 4 MiB read buffer is backed by 2 MiB pages where THP is offered on request', (t) => {
  let thp = '';
  try {
    thp = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
  } catch {
    // no THP here
  }
  if (!/\[(always|madvise)\]/.test(thp)) {
    t.skip(`transparent huge pages not offered here (${thp.trim() || 'no sysfs entry'})`);
    return;
  }
  const buf = withEnv(undefined, () => allocReadBuffer(4 * MiB));
  new Uint8Array(buf).fill(1); // first touch: the faults take 2 MiB pages
  assert.ok(anonHugeBytesAt(bufferAddress(buf)) >= HUGE_PAGE_BYTES, 'no 2 MiB page backs the read buffer');
});
