/**
 * The vTensor layout over an elastic grant (grant.ts): the conformance suite with the room
 * coming from a grant instead of the chunk pool's size, and the order when KV must grow
 * (cached prefixes first, then the grant, and a refusal leaves everything as it was).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KvShape } from './cache.js';
import type { KvChunkGrant } from './grant.js';
import { runKvConformance } from './kv-conformance.js';
import { VTensorKvManager } from './vtensor-manager.js';

const CHUNK = 4096;
const perToken = (s: KvShape) => s.numLayers * 2 * s.kvDim * 2;

/**
 * A grant with a ceiling: `freeChunks` of unused memory it gives without demoting anything,
 * the rest up to `maxChunks` only when demotion is allowed (a pool demoting weights). Records
 * the requests that may demote.
 */
class TestGrant implements KvChunkGrant {
  limitChunks: number;
  requests: number[] = [];
  refuse = false;
  constructor(
    readonly maxChunks: number,
    start = 0,
    public freeChunks = 0,
  ) {
    this.limitChunks = start;
  }
  request(numChunks: number, mayDemote = true): boolean {
    assert.ok(Number.isInteger(numChunks) && numChunks > 0, `request(${numChunks})`);
    if (!mayDemote) {
      if (numChunks > this.freeChunks) return false;
      this.freeChunks -= numChunks;
      this.limitChunks += numChunks;
      return true;
    }
    this.requests.push(numChunks);
    if (this.refuse || this.limitChunks + numChunks > this.maxChunks) return false;
    this.limitChunks += numChunks;
    return true;
  }
}

const grants = new WeakMap<VTensorKvManager, TestGrant>();

runKvConformance({
  name: 'vtensor over an elastic grant',
  create: (shape, capacityTokens) => {
    const chunks = Math.floor((capacityTokens * perToken(shape)) / CHUNK);
    const grant = new TestGrant(chunks);
    // The chunk pool is twice as large: the grant is what limits.
    const m = new VTensorKvManager({ shape, capacityBytes: 2 * chunks * CHUNK, chunkBytes: CHUNK, grant });
    grants.set(m, grant);
    return m;
  },
  assertAllFree: (m) => {
    const v = m as VTensorKvManager;
    assert.equal(v.pool.stats().usedChunks, 0);
    assert.equal(v.numCachedBlocks, 0);
    const g = grants.get(v)!;
    assert.ok(g.limitChunks <= g.maxChunks, 'never above the ceiling');
  },
});

const shape: KvShape = { numLayers: 2, kvDim: 64, maxContext: 512 }; // 32 tokens per chunk, 4 tensors
const toks = (n: number, seed: number) => Uint32Array.from({ length: n }, (_, i) => (i * 7 + seed) % 1000);

test('elastic grant: cached prefixes go first, the grant is asked only for the rest, a refusal changes nothing', () => {
  const grant = new TestGrant(1000, 16); // room for 4 slots of 4 tensors
  const m = new VTensorKvManager({ shape, capacityBytes: 1000 * CHUNK, chunkBytes: CHUNK, grant });
  // A finished 64-token sequence leaves 2 slots (8 chunks) in the prefix cache.
  const a = m.createSequence()!;
  assert.ok(m.ensure(a, 64));
  m.commit(a, toks(64, 1));
  m.release(a, true);
  assert.equal(m.numUsedChunks, 8);
  assert.equal(m.stats().cachedBytes, 8 * CHUNK);
  assert.equal(m.stats().activeBytes, 0);
  assert.equal(m.stats().limitBytes, 16 * CHUNK);
  // 96 new tokens need 3 slots = 12 chunks: 8 free under the limit + 4 from evicting the cache.
  const b = m.createSequence()!;
  assert.ok(m.ensure(b, 96));
  assert.deepEqual(grant.requests, [], 'no request while eviction covers it');
  assert.equal(m.numCachedBlocks, 1, 'one of the two cached blocks was evicted');
  // 160 tokens: 5 slots = 20 chunks > 16. Evicting the last cached block frees 4 -> ask for 4.
  assert.ok(m.ensure(b, 160));
  assert.deepEqual(grant.requests, [4]);
  assert.equal(m.numCachedBlocks, 0);
  assert.equal(grant.limitChunks, 20);
  // A refused request: false, and the sequence is unchanged.
  grant.refuse = true;
  assert.equal(m.ensure(b, 200), false);
  assert.equal(m.numUsedChunks, 20);
  // Unused memory comes before the prefix cache: a cached block survives a grow the free memory covers.
  grant.refuse = false;
  const c = m.createSequence()!;
  assert.ok(m.ensure(c, 32));
  m.commit(c, toks(32, 9));
  m.release(c, true);
  grant.freeChunks = 4;
  const asked = grant.requests.length;
  assert.ok(m.ensure(b, 192));
  assert.equal(grant.requests.length, asked, 'no demoting request');
  assert.equal(m.numCachedBlocks, 1, 'the cached block stays');
  // prepare() never asks (best effort off the critical path).
  grant.refuse = false;
  const before = grant.requests.length;
  assert.equal(m.prepare(b, 256), false, "8 chunks: 4 evictable, 4 only by demoting");
  assert.equal(grant.requests.length, before);
  // The capacity routers see is the ceiling, the limit is the grant.
  assert.equal(m.stats().capacityBytes, 1000 * CHUNK);
  assert.equal(m.stats().limitBytes, 28 * CHUNK);
  m.dispose();
});

test('elastic grant: a refusal leaves the prefix cache as it was', () => {
  const grant = new TestGrant(8, 8);
  const m = new VTensorKvManager({ shape, capacityBytes: 100 * CHUNK, chunkBytes: CHUNK, grant });
  const a = m.createSequence()!;
  assert.ok(m.ensure(a, 32));
  m.commit(a, toks(32, 2));
  m.release(a, true);
  const b = m.createSequence()!;
  assert.equal(m.ensure(b, 96), false, '12 chunks: 4 free + 4 evictable + 4 refused');
  assert.equal(m.numCachedBlocks, 1, 'nothing evicted for a request that failed');
  m.release(b);
  // evictCachedChunks: the pool's way to take the cache's memory for weights.
  assert.equal(m.evictCachedChunks(1), 4, 'a whole block (4 chunks) goes');
  assert.equal(m.numCachedBlocks, 0);
  assert.equal(m.evictCachedChunks(4), 0, 'nothing left');
  m.dispose();
});
