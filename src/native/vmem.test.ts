import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ChunkPool, Reservation } from './vmem.js';

const CHUNK = 64 << 10;

test('vmem: bytes written through one reservation read back through another mapping the same chunk', () => {
  const pool = new ChunkPool({ chunkBytes: CHUNK, capacityChunks: 8 });
  assert.equal(pool.sharing, true);
  const a = new Reservation(pool, 4 * CHUNK);
  const b = new Reservation(pool, 2 * CHUNK);
  const c = pool.allocChunk();
  a.map(2 * CHUNK, c);
  b.map(CHUNK, c);
  const va = new Uint32Array(a.buffer, 2 * CHUNK, CHUNK / 4);
  const vb = new Uint32Array(b.buffer, CHUNK, CHUNK / 4);
  for (let i = 0; i < va.length; i++) va[i] = (i * 2654435761) >>> 0;
  for (let i = 0; i < vb.length; i++) assert.equal(vb[i], (i * 2654435761) >>> 0);
  vb[7] = 42; // and the other way round
  assert.equal(va[7], 42);
  assert.equal(pool.mapCount(c), 2);
  assert.equal(a.chunkAt(2 * CHUNK), c);
  assert.equal(a.chunkAt(0), -1);
  const st = pool.stats();
  assert.equal(st.mappedChunks, 2);
  assert.equal(st.maps, 2);
  a.release();
  b.release();
  pool.freeChunk(c);
  pool.dispose();
});

test('vmem: copyChunk copies a chunk prefix; a freed chunk reads back as zeros', () => {
  const pool = new ChunkPool({ chunkBytes: CHUNK, capacityChunks: 4 });
  const r = new Reservation(pool, 2 * CHUNK);
  const src = pool.allocChunk();
  const dst = pool.allocChunk();
  r.map(0, src);
  r.map(CHUNK, dst);
  const s = new Uint8Array(r.buffer, 0, CHUNK);
  const d = new Uint8Array(r.buffer, CHUNK, CHUNK);
  s.fill(7);
  d.fill(1);
  pool.copyChunk(src, dst, 1000);
  assert.equal(d[0], 7);
  assert.equal(d[999], 7);
  assert.equal(d[1000], 1);
  r.unmap(0);
  pool.freeChunk(src);
  const again = pool.allocChunk();
  assert.equal(again, src); // LIFO reuse
  r.map(0, again);
  assert.ok(new Uint8Array(r.buffer, 0, CHUNK).every((x) => x === 0), 'discarded chunk holds no old data');
  assert.equal(pool.stats().discards, 1);
  pool.dispose(); // also releases r
  assert.equal(r.buffer.byteLength, 0, 'buffer detached by dispose');
});

test('vmem: pool returns to fully free after release', () => {
  const pool = new ChunkPool({ chunkBytes: CHUNK, capacityChunks: 16 });
  const rs = [new Reservation(pool, 8 * CHUNK), new Reservation(pool, 8 * CHUNK)];
  const chunks: number[] = [];
  for (let i = 0; i < 16; i++) {
    const c = pool.allocChunk();
    assert.notEqual(c, -1);
    chunks.push(c);
    rs[i % 2]!.map(Math.floor(i / 2) * CHUNK, c);
    new Uint8Array(rs[i % 2]!.buffer, Math.floor(i / 2) * CHUNK, 16).fill(i);
  }
  assert.equal(pool.allocChunk(), -1, 'exhausted pool returns -1');
  assert.equal(pool.stats().mappedChunks, 16);
  assert.throws(() => pool.freeChunk(chunks[0]!), /still mapped/);
  for (const r of rs) r.release();
  for (const c of chunks) pool.freeChunk(c);
  const st = pool.stats();
  assert.equal(st.usedChunks, 0);
  assert.equal(st.freeChunks, 16);
  assert.equal(st.mappedChunks, 0);
  assert.equal(st.reservations, 0);
  pool.dispose();
});

test('vmem: bad offsets, indices and handles throw; released buffers are detached', () => {
  const pool = new ChunkPool({ chunkBytes: CHUNK, capacityChunks: 4 });
  const r = new Reservation(pool, 2 * CHUNK);
  const c = pool.allocChunk();
  assert.throws(() => r.map(100, c), RangeError); // not chunk-aligned
  assert.throws(() => r.map(2 * CHUNK, c), RangeError); // past the end
  assert.throws(() => r.map(-CHUNK, c), RangeError);
  assert.throws(() => r.map(0, 4), RangeError); // chunk index >= capacity
  assert.throws(() => r.map(0, 1.5), RangeError);
  assert.throws(() => r.unmap(0), /not mapped/);
  r.map(0, c);
  assert.throws(() => r.map(0, c), /already holds/);
  assert.throws(() => pool.copyChunk(c, 3), /not allocated/);
  assert.throws(() => pool.freeChunk(99), RangeError);
  assert.throws(() => new ChunkPool({ chunkBytes: 1000, capacityChunks: 4 }), RangeError);
  assert.throws(() => new ChunkPool({ chunkBytes: CHUNK, capacityChunks: 0 }), RangeError);
  const view = new Uint8Array(r.buffer);
  assert.equal(view.length, 2 * CHUNK);
  r.release();
  assert.equal(r.buffer.byteLength, 0);
  assert.equal(view.length, 0, 'views on a released reservation become empty');
  assert.equal(view[0], undefined);
  assert.throws(() => r.map(0, c), /not valid/);
  pool.freeChunk(c);
  pool.dispose();
  assert.throws(() => pool.allocChunk(), /after dispose/);
});

test('vmem: huge pages are used when available, else the pool says why not', () => {
  const pool = new ChunkPool({ capacityChunks: 2, hugePages: true });
  assert.equal(pool.chunkBytes, 2 << 20);
  if (pool.hugePages) assert.equal(pool.backing, 'memfd-hugetlb');
  else {
    assert.equal(pool.backing, 'memfd');
    assert.notEqual(pool.hugePagesNote, '');
  }
  const r = new Reservation(pool, 2 * pool.chunkBytes);
  const c = pool.allocChunk();
  r.map(pool.chunkBytes, c);
  new Uint8Array(r.buffer, pool.chunkBytes, 4).set([1, 2, 3, 4]);
  assert.deepEqual([...new Uint8Array(r.buffer, pool.chunkBytes, 4)], [1, 2, 3, 4]);
  pool.dispose();
});

function runChild(body: string): ReturnType<typeof spawnSync> {
  const url = new URL('./vmem.js', import.meta.url).href;
  const script = `import { ChunkPool, Reservation } from ${JSON.stringify(url)};\n${body}`;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
}

test('vmem: touching an unmapped offset kills the process (child process), a mapped one does not', () => {
  const setup = `
    const pool = new ChunkPool({ chunkBytes: ${CHUNK}, capacityChunks: 4 });
    const r = new Reservation(pool, 4 * ${CHUNK});
    r.map(0, pool.allocChunk());
    const v = new Uint8Array(r.buffer);
    v[0] = 1;
  `;
  const ok = runChild(`${setup} v[100] = 3; console.log('alive', v[100]);`);
  assert.equal(ok.status, 0, String(ok.stderr));
  assert.match(String(ok.stdout), /alive 3/);
  for (const touch of [`v[${CHUNK}] = 1;`, `console.log(v[${3 * CHUNK + 5}]);`]) {
    const res = runChild(`${setup} ${touch} console.log('survived');`);
    assert.equal(res.error, undefined, 'child must not hang');
    assert.ok(res.signal === 'SIGSEGV' || res.signal === 'SIGBUS', `child died by ${res.signal} (status ${res.status})`);
    assert.doesNotMatch(String(res.stdout), /survived/);
  }
  // After unmap the range faults again.
  const res = runChild(`${setup} r.unmap(0); v[0] = 2; console.log('survived');`);
  assert.ok(res.signal === 'SIGSEGV' || res.signal === 'SIGBUS', `child died by ${res.signal}`);
});

test('vmem: a worker that exits without dispose() leaves no pool behind', async () => {
  const { Worker } = await import('node:worker_threads');
  const { addon } = await import('./addon.js');
  const url = new URL('./vmem.js', import.meta.url).href;
  const w = new Worker(
    `import { parentPort } from 'node:worker_threads';
     const { ChunkPool, Reservation } = await import(${JSON.stringify(url)});
     const pool = new ChunkPool({ chunkBytes: ${CHUNK}, capacityChunks: 4 });
     const r = new Reservation(pool, 2 * ${CHUNK});
     r.map(0, pool.allocChunk());
     new Uint8Array(r.buffer)[0] = 1;
     parentPort.postMessage(pool.handle);
     parentPort.on('message', () => {}); // stay alive until terminated`,
    { eval: true, type: 'module' } as never,
  );
  const handle = await new Promise<number>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  assert.equal(addon.vmemPoolStats(handle).mappedChunks, 1);
  await w.terminate();
  assert.throws(() => addon.vmemPoolStats(handle), /not valid/);
});

test('vmem: background maps land after drain(); other calls wait for drain; failures are undone and reported', async () => {
  const { addon } = await import('./addon.js');
  const pool = new ChunkPool({ chunkBytes: CHUNK, capacityChunks: 16 });
  const a = new Reservation(pool, 8 * CHUNK);
  const b = new Reservation(pool, 8 * CHUNK);
  const c0 = pool.allocChunk();
  a.map(0, c0);
  new Uint8Array(a.buffer, 0, CHUNK).fill(9);
  b.mapAsync(0, c0); // shared, in the background
  const fresh = Array.from({ length: 6 }, () => pool.allocChunk());
  fresh.forEach((c, i) => a.mapAsync((i + 1) * CHUNK, c));
  assert.equal(pool.pendingMaps, 7);
  assert.throws(() => a.unmap(0), /in flight/);
  assert.deepEqual(pool.drain(), []);
  assert.equal(pool.pendingMaps, 0);
  assert.equal(new Uint8Array(b.buffer)[CHUNK - 1], 9, 'shared chunk visible through the background mapping');
  new Uint8Array(a.buffer, CHUNK, 6 * CHUNK).fill(5); // the fresh chunks are writable
  let st = pool.stats();
  assert.equal(st.backgroundMaps, 7);
  assert.equal(st.mappedChunks, 8);
  // Injected failure: the second of three maps fails; drain reports it and undoes it.
  addon.vmemDebugFailNextMaps(0);
  const more = [pool.allocChunk(), pool.allocChunk(), pool.allocChunk()];
  b.mapAsync(CHUNK, more[0]!);
  addon.vmemDebugFailNextMaps(1);
  b.mapAsync(2 * CHUNK, more[1]!);
  b.mapAsync(3 * CHUNK, more[2]!);
  const failed = pool.drain();
  assert.equal(failed.length, 1);
  assert.equal(failed[0]!.handle, b.handle);
  assert.equal(failed[0]!.offset, 2 * CHUNK);
  assert.equal(failed[0]!.chunk, more[1]);
  assert.equal(failed[0]!.code, 'ENOMEM');
  assert.equal(b.chunkAt(2 * CHUNK), -1);
  assert.equal(b.chunkAt(3 * CHUNK), more[2]);
  assert.equal(pool.mapCount(more[1]!), 0);
  pool.freeChunk(more[1]!); // not mapped anywhere: can go back
  st = pool.stats();
  assert.equal(st.backgroundFailures, 1);
  assert.equal(st.mappedChunks, 10);
  pool.dispose();
});
