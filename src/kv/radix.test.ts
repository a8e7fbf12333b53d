import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkRadixCache } from './radix.js';
import { mulberry32 } from './random.js';

function lcp(a: Uint32Array, b: Uint32Array): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

test('radix: matches the longest cached prefix (brute-force reference) and its chunks come from a matching sequence', () => {
  const rand = mulberry32(99);
  const tpc = 4;
  const numTensors = 2;
  const refs = new Map<number, number>();
  const cache = new ChunkRadixCache(tpc, numTensors, {
    ref: (c) => refs.set(c, (refs.get(c) ?? 0) + 1),
    unref: (c) => {
      const r = refs.get(c)! - 1;
      assert.ok(r >= 0, 'unref below zero');
      refs.set(c, r);
    },
  });
  const inserted: Uint32Array[] = [];
  const chunkId = (s: number, slot: number, t: number) => s * 10000 + slot * 10 + t;
  for (let s = 0; s < 200; s++) {
    const base = inserted.length > 0 && rand() < 0.6 ? inserted[Math.floor(rand() * inserted.length)]! : new Uint32Array(0);
    const keep = Math.floor(rand() * (base.length + 1));
    const tokens = Uint32Array.from([...base.subarray(0, keep), ...Array.from({ length: Math.floor(rand() * 20) }, () => Math.floor(rand() * 3))]);
    if (tokens.length === 0) continue;
    cache.insert(tokens, (slot, t) => chunkId(inserted.length, slot, t));
    inserted.push(tokens);
    for (let q = 0; q < 5; q++) {
      const src = inserted[Math.floor(rand() * inserted.length)]!;
      const query = Uint32Array.from([...src.subarray(0, Math.floor(rand() * (src.length + 1))), ...Array.from({ length: Math.floor(rand() * 6) }, () => Math.floor(rand() * 3))]);
      const maxTokens = Math.max(0, query.length - 1);
      const want = Math.min(maxTokens, Math.max(0, ...inserted.map((x) => lcp(x, query))));
      const m = cache.match(query, maxTokens);
      assert.equal(m.numTokens, want, `query ${query.join(',')}`);
      assert.equal(m.path.length, Math.floor((m.numTokens - m.partialTokens) / tpc));
      // Every shared chunk belongs to an inserted sequence with the same tokens up to that block.
      m.path.forEach((node, j) => {
        for (let t = 0; t < numTensors; t++) {
          const owner = Math.floor(node.chunks[t]! / 10000);
          assert.equal(node.chunks[t], chunkId(owner, j, t));
          assert.ok(lcp(inserted[owner]!, query) >= (j + 1) * tpc);
        }
      });
      if (m.partial !== null) {
        const owner = Math.floor(m.partial.chunks[0]! / 10000);
        assert.ok(lcp(inserted[owner]!, query) >= m.numTokens, 'partial block holds the matched tokens');
      }
    }
  }
  assert.ok(cache.numNodes > 0);
  let held = 0;
  for (const r of refs.values()) held += r;
  assert.equal(held, cache.numNodes * numTensors, 'one ref per node and tensor');
  cache.clear();
  assert.equal(cache.numNodes, 0);
  for (const [c, r] of refs) assert.equal(r, 0, `chunk ${c} still referenced`);
});

test('radix: eviction takes the least recently used leaf, never a kept one', () => {
  const cache = new ChunkRadixCache(2, 1, { ref: () => {}, unref: () => {} });
  let id = 0;
  cache.insert(Uint32Array.from([1, 2, 3, 4]), () => id++); // blocks [1,2] [3,4]
  cache.insert(Uint32Array.from([1, 2, 5]), () => id++); // tail [5] under [1,2]
  cache.match(Uint32Array.from([1, 2, 3, 4, 9]), 4); // touches [1,2], [3,4]
  assert.equal(cache.numNodes, 3);
  assert.ok(cache.evictOne());
  assert.equal(cache.match(Uint32Array.from([1, 2, 5, 0]), 3).numTokens, 2, 'tail [5] was the LRU leaf');
  const m = cache.match(Uint32Array.from([1, 2, 3, 4, 0]), 4);
  assert.ok(cache.evictOne(new Set(m.path)) === false, 'only kept nodes left (a non-leaf parent is not evictable)');
  assert.ok(cache.evictOne());
  assert.equal(cache.match(Uint32Array.from([1, 2, 3, 4, 0]), 4).numTokens, 2);
});

test('radix: evictable() lists exactly what repeated evictOne(keep) evicts; remove() drops a node with its subtree', () => {
  const refs = new Map<number, number>();
  const cache = new ChunkRadixCache(2, 1, {
    ref: (c) => refs.set(c, (refs.get(c) ?? 0) + 1),
    unref: (c) => refs.set(c, refs.get(c)! - 1),
  });
  let id = 0;
  cache.insert(Uint32Array.from([1, 2, 3, 4, 5]), () => id++); // [1,2] -> [3,4] -> tail [5]   chunks 0 1 2
  cache.insert(Uint32Array.from([1, 2, 7, 8]), () => id++); //   [1,2] -> [7,8]                chunk 3
  cache.insert(Uint32Array.from([9]), () => id++); //              tail [9]                      chunk 4
  const held = () => [...refs].filter(([, r]) => r > 0).map(([c]) => c).sort((a, b) => a - b);
  assert.deepEqual(held(), [0, 1, 2, 3, 4]);
  const m = cache.match(Uint32Array.from([1, 2, 3, 4, 0]), 4); // path [1,2] [3,4]
  const keep = new Set(m.path);
  const chunksOf = (nodes: { chunks: Int32Array }[]) => nodes.map((n) => n.chunks[0]!).sort((a, b) => a - b);
  // Kept: [1,2] and [3,4]; [1,2] is also an ancestor of a kept node. Evictable: tail [5], [7,8], tail [9].
  assert.deepEqual(chunksOf(cache.evictable(keep)), [2, 3, 4]);
  assert.deepEqual(chunksOf(cache.evictable()), [0, 1, 2, 3, 4]);
  // Reference: evict until nothing is left under `keep`, and see which chunks went.
  const before = held();
  while (cache.evictOne(keep)) {
    /* evict */
  }
  assert.deepEqual(before.filter((c) => !held().includes(c)), [2, 3, 4]);
  // remove() of [1,2] drops its whole subtree ([3,4]) and their refs.
  cache.remove(m.path[0]!);
  assert.equal(cache.numNodes, 0);
  assert.deepEqual(held(), []);
  assert.throws(() => cache.remove(m.path[0]!), /not in the cache/);
});
