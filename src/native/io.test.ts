import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeFile, evictFromPageCache, IoStreamer, openFile, pageCacheResidency, readInto } from './io.js';
import { allocAligned } from './memory.js';
import { readAheadBytes } from '../weights/read-cache.js';

/** A file of `n` pseudo-random bytes (xorshift, seeded) and its contents. */
function makeFile(dir: string, n: number, seed = 1): { path: string; bytes: Uint8Array } {
  const bytes = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
  const path = join(dir, `f${seed}.bin`);
  writeFileSync(path, bytes);
  return { path, bytes };
}

test('readInto reads exact ranges by path and by fd, and validates every range', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  try {
    const { path, bytes } = makeFile(dir, 300_001);
    const out = new Uint8Array(1000);
    assert.equal(readInto(path, 12345, out, 10, 900), 900);
    assert.deepEqual(out.subarray(10, 910), bytes.subarray(12345, 13245));
    const fd = openFile(path);
    const view = new Uint8Array(new ArrayBuffer(64), 16, 32);
    readInto(fd, 300_001 - 32, view, 0, 32);
    assert.deepEqual(view, bytes.subarray(300_001 - 32));
    assert.throws(() => readInto(fd, 300_000, out, 0, 2), /end of file/);
    assert.throws(() => readInto(fd, 0, out, 990, 11), /exceeds the buffer/);
    assert.throws(() => readInto(fd, -1, out, 0, 1), RangeError);
    closeFile(fd);
    assert.throws(() => readInto(join(dir, 'missing'), 0, out, 0, 1), /cannot open .*No such file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The engines to test: io_uring where the kernel allows it (else its fallback is checked). */
function engines(path: string): Array<'io_uring' | 'threads'> {
  try {
    new IoStreamer(path, { engine: 'io_uring' }).close();
    return ['io_uring', 'threads'];
  } catch (e) {
    assert.match(String(e), /io_uring requested but not available/);
    const s = new IoStreamer(path);
    assert.equal(s.info().engine, 'threads', 'auto falls back to threads where io_uring is refused');
    assert.ok(s.info().engineError, 'and says why');
    s.close();
    return ['threads'];
  }
}

test('IoStreamer reads groups with and without O_DIRECT, in pieces, on each engine; bytes match the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  try {
    const n = 3 * 1024 * 1024 + 777;
    const { path, bytes } = makeFile(dir, n, 7);
    for (const engine of engines(path)) {
      for (const pieceBytes of [8192, 1 << 20]) {
        for (const direct of [true, false]) {
          const s = new IoStreamer(path, { engine, direct, depth: 4, pieceBytes });
          assert.equal(s.info().engine, engine);
          assert.equal(s.info().pieceBytes, pieceBytes);
          const buf = allocAligned(n + 8192, 4096);
          // Aligned tasks (direct when available), a misaligned one, and one ending at EOF.
          const tasks: [number, number, number, number][] = [
            [0, 0, 0, 1 << 20],
            [0, 1 << 20, 1 << 20, 4096 * 3 + 5],
            [1, 2 * 1024 * 1024 + 32, 2 * 1024 * 1024 + 32, 1000],
            [1, 3 * 1024 * 1024, 3 * 1024 * 1024, 777],
          ];
          const paths = tasks.map(([g, fo, bo, len]) => s.submit(g, fo, buf, bo, len));
          if (direct && s.info().directAvailable) {
            assert.deepEqual(paths, ['direct', 'direct', 'buffered', 'direct']);
          } else {
            assert.ok(paths.every((p) => p === 'buffered'));
          }
          assert.equal(s.wait(0).bytes, (1 << 20) + 4096 * 3 + 5);
          assert.equal(s.wait(1, 10_000).bytes, 1777);
          const u8 = new Uint8Array(buf);
          for (const [, fo, bo, len] of tasks) assert.deepEqual(u8.subarray(bo, bo + len), bytes.subarray(fo, fo + len), `${engine} ${pieceBytes} ${direct}`);
          const st = s.stats();
          assert.equal(st.directBytes + st.bufferedBytes, (1 << 20) + 4096 * 3 + 5 + 1777);
          // Pieces: each task splits into ceil(length / pieceBytes) reads.
          const pieces = tasks.reduce((a, [, , , len]) => a + Math.ceil(len / pieceBytes), 0);
          assert.equal(st.directReads + st.bufferedReads, pieces);
          assert.ok(st.maxInflight >= 1 && st.maxInflight <= 4, `max in flight ${st.maxInflight}`);
          assert.equal(st.inflight, 0);
          assert.equal(s.wait(99).bytes, 0, 'unknown group returns at once');
          s.close();
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('IoStreamer keeps `depth` pieces in flight and measures each path; setPath switches later reads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  try {
    const n = 8 * 1024 * 1024;
    const { path, bytes } = makeFile(dir, n, 21);
    for (const engine of engines(path)) {
      const s = new IoStreamer(path, { engine, direct: true, depth: 8, maxDepth: 8, pieceBytes: 64 * 1024 });
      const buf = allocAligned(n, 4096);
      const direct = s.info().directAvailable;
      // First half on the opening path, second half after a switch to buffered at depth 2.
      for (let g = 0; g < 4; g++) s.submit(g, g << 20, buf, g << 20, 1 << 20);
      for (let g = 0; g < 4; g++) s.wait(g);
      s.setPath(false, 2);
      assert.deepEqual([s.info().direct, s.info().depth], [false, 2]);
      for (let g = 4; g < 8; g++) assert.equal(s.submit(g, g << 20, buf, g << 20, 1 << 20), 'buffered');
      for (let g = 4; g < 8; g++) s.wait(g);
      assert.deepEqual(new Uint8Array(buf), bytes);
      const st = s.stats();
      assert.equal(st.bufferedBytes, (direct ? 4 : 8) << 20);
      assert.equal(st.directBytes, direct ? 4 << 20 : 0);
      assert.equal(st.directReads + st.bufferedReads, 128, '8 MiB in 64 KiB pieces');
      assert.ok(st.maxInflight <= 8, `max in flight ${st.maxInflight} <= depth`);
      assert.ok(st.busyNs > 0 && st.bufferedBusyNs > 0 && st.bufferedBusyNs <= st.busyNs);
      if (direct) assert.ok(st.directBusyNs > 0);
      const meanDepth = st.inflightNs / st.busyNs;
      assert.ok(meanDepth >= 1 && meanDepth <= 8, `mean depth ${meanDepth}`);
      assert.ok(st.latencyP50Us > 0 && st.latencyP50Us <= st.latencyP90Us && st.latencyP90Us <= st.latencyP99Us);
      assert.throws(() => s.setPath(true, 9), /depth must be in \[1, 8\]/);
      s.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('IoStreamer.checkFile says how the open file changed: truncated, written to, replaced, deleted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  try {
    const { path } = makeFile(dir, 1 << 16, 23);
    const open = () => new IoStreamer(path, { direct: false });
    let s = open();
    assert.equal(s.checkFile(), null);
    truncateSync(path, 1 << 15);
    assert.equal(s.checkFile()?.reason, 'truncated');
    assert.match(s.checkFile()!.detail, /went from 65536 to 32768 bytes/);
    s.close();
    s = open();
    appendFileSync(path, 'x');
    assert.equal(s.checkFile()?.reason, 'modified');
    s.close();
    s = open();
    const other = makeFile(dir, 1 << 16, 24).path;
    renameSync(other, path);
    assert.equal(s.checkFile()?.reason, 'replaced');
    s.close();
    s = open();
    unlinkSync(path);
    assert.equal(s.checkFile()?.reason, 'deleted');
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('IoStreamer validates ranges and refuses work after close', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  try {
    const { path } = makeFile(dir, 10_000, 3);
    const s = new IoStreamer(path);
    const buf = allocAligned(8192);
    assert.throws(() => s.submit(0, 9_000, buf, 0, 2000), /exceeds the file/);
    assert.throws(() => s.submit(0, 0, buf, 8000, 200), /exceeds the buffer/);
    assert.throws(() => new IoStreamer(path, { depth: 0 }), /depth/);
    assert.throws(() => new IoStreamer(path, { pieceBytes: 5000 }), /pieceBytes/);
    assert.throws(() => new IoStreamer(path, { engine: 'aio' as 'auto' }), /engine must be/);
    s.close();
    assert.throws(() => s.submit(0, 0, buf, 0, 10), /closed/);
    assert.throws(() => new IoStreamer(join(dir, 'nope')), /No such file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('buffered streamer reads drop their pages; evictFromPageCache empties the cache', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  try {
    const n = 4 * 1024 * 1024;
    const { path } = makeFile(dir, n, 11);
    evictFromPageCache(path);
    const r0 = pageCacheResidency(path);
    assert.equal(r0.totalPages, n / r0.pageSize);
    if (r0.residentPages > r0.totalPages / 10) {
      // tmpfs and some overlay file systems keep their pages: nothing to measure there.
      t.skip(`this file system keeps pages after DONTNEED (${r0.residentPages} of ${r0.totalPages} cached)`);
      return;
    }
    const s = new IoStreamer(path, { direct: false, dropCache: true });
    const buf = allocAligned(n);
    for (let off = 0; off < n; off += 1 << 20) s.submit(0, off, buf, off, 1 << 20);
    s.wait(0);
    s.close();
    const r1 = pageCacheResidency(path);
    // Readahead may leave a little behind; most pages must be gone.
    assert.ok(r1.residentPages <= r1.totalPages / 4, `after dropCache reads: ${r1.residentPages} of ${r1.totalPages} pages cached`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an I/O error in a read task comes back as an exception from wait(), and the group is done', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  try {
    const { path } = makeFile(dir, 1 << 20, 13);
    for (const direct of [true, false]) {
      const s = new IoStreamer(path, { direct });
      // The file shrinks after the streamer checked its size: the read hits end of file.
      truncateSync(path, 4096);
      const buf = allocAligned(1 << 20);
      s.submit(5, 8192, buf, 8192, 65536);
      s.submit(5, 0, buf, 0, 4096);
      assert.throws(() => s.wait(5, 10_000), (e: unknown) => /I\/O error reading .*end of file/.test(String(e)) && (e as { code?: string }).code === 'EOF');
      assert.equal(s.pending(5), 0);
      assert.equal(s.wait(5).bytes, 0, 'the failed group is forgotten after its error');
      s.close();
      writeFileSync(path, new Uint8Array(1 << 20));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('close() fails the reads still queued instead of leaving wait() hanging', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  try {
    const { path } = makeFile(dir, 8 << 20, 17);
    const s = new IoStreamer(path, { depth: 1, direct: false });
    const buf = allocAligned(8 << 20);
    for (let i = 0; i < 8; i++) s.submit(1, i << 20, buf, i << 20, 1 << 20);
    s.close();
    // Either every read ran before close, or the dropped ones fail the group.
    try {
      assert.equal(s.wait(1, 5_000).bytes, 8 << 20);
    } catch (e) {
      assert.match(String(e), /closed before this read ran/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readAhead: false makes buffered pieces read exactly their range; the default reads ahead of them', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  try {
    const n = 16 * 1024 * 1024;
    const { path, bytes } = makeFile(dir, n, 12);
    evictFromPageCache(path);
    const r0 = pageCacheResidency(path);
    if (r0.residentPages > r0.totalPages / 10) {
      t.skip(`this file system keeps pages after DONTNEED (${r0.residentPages} of ${r0.totalPages} cached)`);
      return;
    }
    // The file's first 1 MiB (a read at 0 starts the kernel's read-ahead; a first read elsewhere
    // looks random to it), pages kept (dropCache: false): the page cache shows what the kernel read.
    const cachedAfterRead = (readAhead: boolean) => {
      evictFromPageCache(path);
      const s = new IoStreamer(path, { direct: false, dropCache: false, readAhead });
      assert.equal(s.info().readAhead, readAhead);
      const buf = allocAligned(1 << 20);
      s.submit(0, 0, buf, 0, 1 << 20);
      s.wait(0);
      s.close();
      assert.deepEqual(new Uint8Array(buf), bytes.subarray(0, 1 << 20));
      const r = pageCacheResidency(path);
      evictFromPageCache(path);
      return r.residentPages * r.pageSize;
    };
    assert.equal(cachedAfterRead(false), 1 << 20, 'POSIX_FADV_RANDOM: the kernel reads the piece and nothing more');
    const ahead = readAheadBytes(path) ?? 0;
    // The kernel's read-ahead is a heuristic, and now and then it reads no window for this first
    // read (seen twice with other suites running beside, once in CI: exactly 1 MiB cached with
    // 8 MiB of read-ahead; cause not pinned down, 0 of 20 tries standalone). The most of five
    // tries counts: the claim is that the default CAN read ahead, where readAhead: false never does.
    let withReadAhead = 0;
    for (let i = 0; i < 5 && !(withReadAhead > 1 << 20); i++) withReadAhead = Math.max(withReadAhead, cachedAfterRead(true));
    if (ahead >= 128 * 1024) assert.ok(withReadAhead > 1 << 20, `with the device's ${ahead / 1024} KiB read-ahead the kernel reads past the piece (${withReadAhead} bytes cached, best of 5 tries)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dontCache: RWF_DONTCACHE drops buffered pieces\' pages; where the kernel refuses it the pieces are read without it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-io-'));
  // tmpfs (/dev/shm) refuses RWF_DONTCACHE (EOPNOTSUPP): the fallback path.
  const dirs = [dir, ...(existsSync('/dev/shm') ? [mkdtempSync('/dev/shm/fi-io-')] : [])];
  try {
    for (const d of dirs) {
      const n = 3 * 1024 * 1024 + 5000;
      const { path, bytes } = makeFile(d, n, 13);
      for (const engine of engines(path)) {
        evictFromPageCache(path);
        const s = new IoStreamer(path, { direct: false, dontCache: true, dropCache: false, readAhead: false, engine });
        assert.equal(s.info().dontCache, true, 'asked for');
        const buf = allocAligned(n);
        s.submit(0, 0, buf, 0, n);
        s.wait(0);
        assert.deepEqual(new Uint8Array(buf), bytes, `${d} ${engine}: the bytes of the file either way`);
        const info = s.info();
        const fallbacks = s.stats().dontCacheFallbacks;
        s.close();
        if (info.dontCache) {
          assert.equal(fallbacks, 0);
          assert.equal(info.dontCacheError, undefined);
          // dropCache is off: only the kernel's drop-behind can have emptied the cache.
          const r = pageCacheResidency(path);
          if (!d.startsWith('/dev/shm')) assert.ok(r.residentPages <= 16, `${engine}: ${r.residentPages} pages still cached after RWF_DONTCACHE reads`);
        } else {
          assert.ok(fallbacks >= 1, `${d} ${engine}: the refused pieces were redone`);
          assert.match(info.dontCacheError ?? '', /RWF_DONTCACHE refused: /);
        }
      }
    }
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
