import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KvShape } from './cache.js';
import { PagedKvManager, PAGED_BLOCK_TOKENS as B } from './paged-manager.js';
import { checkPattern, mulberry32, runKvConformance, writePattern } from './kv-conformance.js';
import { hashBlockTokens, ROOT_BLOCK_HASH } from './block-hash.js';

const perToken = (s: KvShape) => s.numLayers * 2 * s.kvDim * 2;

function assertAllFree(m: PagedKvManager): void {
  assert.equal(m.pool.numFreeBlocks, m.pool.numBlocks, 'every block back in the free queue');
  assert.equal(m.numCachedBlocks, 0, 'nothing cached');
  for (const b of m.pool.blocks) assert.equal(b.refCount, 0, `block ${b.id} unheld`);
}

runKvConformance({
  name: 'paged',
  create: (shape, capacityTokens) => new PagedKvManager({ shape, capacityBytes: capacityTokens * perToken(shape) }),
  assertAllFree: (m) => assertAllFree(m as PagedKvManager),
});

runKvConformance({
  name: 'paged (4 kv heads per block)',
  create: (shape, capacityTokens) => new PagedKvManager({ shape, capacityBytes: capacityTokens * perToken(shape), headDim: shape.kvDim / 4 }),
  assertAllFree: (m) => assertAllFree(m as PagedKvManager),
});

const shape: KvShape = { numLayers: 2, kvDim: 32, maxContext: 256 };
const tokensOf = (n: number, seed: number) => Uint32Array.from({ length: n }, (_, i) => (i * 7 + seed * 13) % 23);

/** A sequence of `tokens` with its pattern written and committed. */
function filled(m: PagedKvManager, tokens: Uint32Array): number {
  const s = m.createSequence()!;
  assert.ok(m.ensure(s, tokens.length));
  writePattern(m, s, tokens, 0, tokens.length);
  m.commit(s, tokens);
  return s;
}

test('paged: a sequence holds ceil(length / 16) blocks; 16 random lengths waste less than a block each', () => {
  const rand = mulberry32(5);
  const m = new PagedKvManager({ shape, capacityBytes: 16 * shape.maxContext * perToken(shape) });
  let tokens = 0;
  const seqs = [];
  for (let i = 0; i < 16; i++) {
    const n = 1 + Math.floor(rand() * shape.maxContext);
    tokens += n;
    const s = filled(m, tokensOf(n, i));
    assert.equal(m.blockTable(s).length, Math.ceil(n / B));
    seqs.push(s);
  }
  const st = m.stats();
  assert.equal(st.liveBytes, tokens * perToken(shape));
  assert.ok(st.mappedBytes >= st.liveBytes && st.mappedBytes < st.liveBytes + 16 * B * perToken(shape), `${st.mappedBytes} vs ${st.liveBytes}`);
  assert.equal(st.numMappings, seqs.reduce((n, s) => n + m.blockTable(s).length, 0), 'block-table entries');
  // Every block id appears in exactly one table.
  const ids = seqs.flatMap((s) => [...m.blockTable(s)]);
  assert.equal(new Set(ids).size, ids.length);
  m.dispose();
});

test('paged: fork shares every block, and the first write copies only the shared partial block', () => {
  const m = new PagedKvManager({ shape, capacityBytes: 8 * B * perToken(shape) });
  const base = tokensOf(40, 1); // blocks 0, 1 full, block 2 holds 8 tokens
  const p = filled(m, base);
  const parentTable = [...m.blockTable(p)];
  const c = m.fork(p, 36)!;
  assert.deepEqual([...m.blockTable(c)], parentTable, 'the child maps the same blocks');
  assert.equal(m.stats().sharedBytes, 3 * B * perToken(shape));
  const free = m.pool.numFreeBlocks;
  // The child writes position 36: block 2 is shared, so it gets a copy of its 4 rows.
  const childTokens = Uint32Array.from([...base.subarray(0, 36), 99, 98]);
  assert.ok(m.ensure(c, childTokens.length));
  assert.equal(m.numCopiedBlocks, 1);
  assert.equal(m.pool.numFreeBlocks, free - 1);
  assert.deepEqual([...m.blockTable(c)].slice(0, 2), parentTable.slice(0, 2), 'full blocks stay shared');
  assert.notEqual(m.blockTable(c)[2], parentTable[2]);
  writePattern(m, c, childTokens, 36, 38);
  m.commit(c, childTokens);
  checkPattern(m, c, childTokens, 'child');
  checkPattern(m, p, base, 'parent untouched');
  // The parent's block 2 is private again: it writes in place.
  assert.ok(m.ensure(p, 41));
  assert.equal(m.numCopiedBlocks, 1);
  // A fork never needs a free block, even from a full pool.
  while (m.pool.numFreeBlocks > 0) assert.ok(m.ensure(m.createSequence()!, B));
  const c2 = m.fork(p, 40);
  assert.notEqual(c2, null, 'fork from a full pool');
  assert.equal(m.ensure(c2!, 41), false, 'but its copy-on-write waits for a free block');
  assert.equal(m.length(c2!), 40);
  m.dispose();
});

test('paged: prefix hits share the cached blocks by hash chain; a different first block hides the rest', () => {
  const m = new PagedKvManager({ shape, capacityBytes: 16 * B * perToken(shape) });
  const a = tokensOf(50, 2); // 3 full blocks + a 2-token tail
  const s = filled(m, a);
  const table = [...m.blockTable(s)];
  assert.equal(m.stats().activeBytes, 4 * B * perToken(shape));
  m.release(s, true);
  assert.equal(m.numCachedBlocks, 4, '3 full blocks and the tail');
  const st = m.stats();
  assert.equal(st.activeBytes, 0, 'blocks held by the prefix cache alone are not in use');
  assert.equal(st.mappedBytes, 4 * B * perToken(shape), 'but they still hold the prefix');
  assert.deepEqual([st.blockTokens, st.numBlocks], [16, 16]);
  const hit = m.matchPrefix(Uint32Array.from([...a, 1]))!;
  assert.equal(hit.numTokens, 50);
  assert.deepEqual([...m.blockTable(hit.seq)], table, 'the very same blocks');
  checkPattern(m, hit.seq, a, 'hit');
  // The block hashes chain: block 1 is found under block 0's hash only.
  const h0 = hashBlockTokens(ROOT_BLOCK_HASH, a.subarray(0, B));
  assert.notEqual(m.pool.lookup(hashBlockTokens(h0, a.subarray(B, 2 * B)), h0, a.subarray(B, 2 * B)), null);
  const other = Uint32Array.from([...a]);
  other[3] = 1000; // same blocks 1 and 2, different block 0
  const miss = m.matchPrefix(other)!;
  assert.equal(miss.numTokens, 3, "block 0's 3 common tokens, nothing past the block that differs");
  m.release(miss.seq);
  // Two hits at once share, and the copy-on-write of the partial block waits for a write.
  const hit2 = m.matchPrefix(Uint32Array.from([...a.subarray(0, 40), 7]))!;
  assert.equal(hit2.numTokens, 40, '2 full blocks + 8 tokens of the third');
  const copied = m.numCopiedBlocks;
  assert.ok(m.ensure(hit2.seq, 41));
  assert.equal(m.numCopiedBlocks, copied + 1, 'the partly matched block was copied before the write');
  checkPattern(m, hit2.seq, a.subarray(0, 40), 'hit 2');
  m.release(hit.seq);
  m.release(hit2.seq);
  m.clearPrefixCache();
  assertAllFree(m);
  m.dispose();
});

test('paged: cached blocks are evicted least recently used first, and a prompt loses its end before its beginning', () => {
  const m = new PagedKvManager({ shape, capacityBytes: 6 * B * perToken(shape) });
  const a = tokensOf(2 * B, 3);
  const b = tokensOf(2 * B, 4);
  const c = tokensOf(2 * B, 5);
  for (const t of [a, b, c]) m.release(filled(m, t), true);
  assert.equal(m.numCachedBlocks, 6);
  // Use a again: b is now the least recently used.
  const hitA = m.matchPrefix(Uint32Array.from([...a, 1]))!;
  assert.equal(hitA.numTokens, 2 * B);
  m.release(hitA.seq, true);
  // One new block evicts b's second block (b's end), not its first.
  assert.ok(m.ensure(m.createSequence()!, 1));
  assert.equal(m.matchPrefix(Uint32Array.from([...b, 1]))?.numTokens, B, "b's first block is still cached");
  assert.equal(m.matchPrefix(Uint32Array.from([...a, 1]))?.numTokens, 2 * B, 'a is whole');
  assert.equal(m.matchPrefix(Uint32Array.from([...c, 1]))?.numTokens, 2 * B, 'c is whole');
  m.dispose();
});

test('paged: release without caching takes back only what the sequence cached itself', () => {
  const m = new PagedKvManager({ shape, capacityBytes: 16 * B * perToken(shape) });
  const a = tokensOf(2 * B, 6);
  m.release(filled(m, a), true);
  const longer = Uint32Array.from([...a, ...tokensOf(2 * B, 7)]);
  const hit = m.matchPrefix(longer)!;
  assert.equal(hit.numTokens, 2 * B);
  assert.ok(m.ensure(hit.seq, longer.length));
  writePattern(m, hit.seq, longer, 2 * B, longer.length);
  m.commit(hit.seq, longer); // caches blocks 2 and 3 as this sequence's
  m.release(hit.seq, false);
  assert.equal(m.matchPrefix(Uint32Array.from([...longer, 1]))?.numTokens, 2 * B, "a's blocks stay cached, the sequence's own are gone");
  m.dispose();
});

test('paged: keys() is not available; bad options are errors', () => {
  const m = new PagedKvManager({ shape, capacityBytes: 4 * B * perToken(shape) });
  const s = m.createSequence()!;
  assert.throws(() => m.keys(s, 0), /no contiguous view/);
  assert.throws(() => m.keyPool(2), /layer must be in \[0, 2\)/);
  assert.throws(() => m.blockTable(999), /does not exist/);
  m.dispose();
  assert.throws(() => new PagedKvManager({ shape, capacityBytes: B * perToken(shape) - 1 }), /holds no .* block of 16 tokens/);
  assert.throws(() => new PagedKvManager({ shape, capacityBytes: 1 << 20, headDim: 5 }), /headDim must be a positive divisor of kvDim 32/);
});
