/**
 * What a vTensor pool costs, as a memory cgroup charges it and as the process's RssShmem shows
 * it: the serve bench reports the first (peak_cgroup_anon_shmem_bytes), because the second
 * counts a chunk once per mapping and not at all while only the prefix cache holds it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryCgroupSupport, runInMemoryCgroup } from '../weights/cgroup.js';

const MiB = 1048576;
const support = memoryCgroupSupport();
const skip = support.ok ? false : `memory cgroups unavailable: ${support.reason}`;

// Tinyllama's KV geometry (22 layers, kvDim 256: 512 B a token of one layer's K or V) in 128 KiB chunks:
// 256 tokens of one layer's K or V per chunk, a block (one chunk of each of 44 tensors) 5.5 MiB.
const child = (managerUrl: string, cgroupUrl: string) => `
const { VTensorKvManager } = await import(${JSON.stringify(managerUrl)});
const { cgroupMemoryStat, processRss } = await import(${JSON.stringify(cgroupUrl)});
const cb = 131072;
const m = new VTensorKvManager({ shape: { numLayers: 22, kvDim: 256, maxContext: 4096 }, capacityBytes: 64 * 44 * cb, chunkBytes: cb, backgroundMapping: false });
const shmem0 = cgroupMemoryStat().shmemBytes;
const rss0 = processRss().RssShmem ?? 0;
const at = () => ({ pool: m.numUsedChunks * cb, cgroup: cgroupMemoryStat().shmemBytes - shmem0, process: (processRss().RssShmem ?? 0) - rss0 });
// Every byte of every mapped chunk is written, so every page of the pool is touched.
const touch = (s) => { for (let l = 0; l < 22; l++) { m.keys(s, l).fill(1, 0, 3 * 256 * 256); m.values(s, l).fill(1, 0, 3 * 256 * 256); } };
const toks = Uint32Array.from({ length: 543 }, (_, i) => 300 + i);
const a = m.createSequence();
m.ensure(a, 543);
touch(a);
m.commit(a, toks);
const one = at();
m.release(a, true);
const cached = at();
for (let i = 0; i < 4; i++) { const h = m.matchPrefix(toks.subarray(0, 512)); m.ensure(h.seq, 543); touch(h.seq); }
const hits = at();
console.log(JSON.stringify({ one, cached, hits }));
m.dispose();
`;

test('vTensor pool memory: the cgroup charges every chunk once (cached ones too); RssShmem counts mappings', { skip }, async () => {
  const managerUrl = new URL('./vtensor-manager.js', import.meta.url).href;
  const cgroupUrl = new URL('../weights/cgroup.js', import.meta.url).href;
  const r = await runInMemoryCgroup(process.execPath, ['--input-type=module', '-e', child(managerUrl, cgroupUrl)], 512 * MiB, { timeoutMs: 120_000 });
  assert.equal(r.exitCode, 0, r.stderr);
  const { one, cached, hits } = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<'one' | 'cached' | 'hits', { pool: number; cgroup: number; process: number }>;
  const block = 44 * 131072; // one chunk of each layer's K and V: 5.5 MiB
  // One sequence of 543 tokens: 3 blocks, mapped once.
  assert.equal(one.pool, 3 * block);
  // Released into the prefix cache: the pool still holds its 3 blocks, nothing maps them.
  assert.equal(cached.pool, 3 * block);
  // Four hits of its first 512 tokens: each shares block 0 (tokens 0-255), copies block 1
  // (255 of its tokens match: the last prompt token is always computed) and maps a new block 2:
  // 3 + 4 x 2 = 11 blocks.
  assert.equal(hits.pool, 11 * block);
  const near = (x: number, want: number, what: string) => assert.ok(Math.abs(x - want) <= MiB, `${what}: ${(x / MiB).toFixed(1)} MiB, expected ${(want / MiB).toFixed(1)}`);
  // The cgroup: every page once, mapped or cached.
  near(one.cgroup, 3 * block, 'cgroup, one sequence');
  near(cached.cgroup, 3 * block, 'cgroup, cached');
  near(hits.cgroup, 11 * block, 'cgroup, four hits');
  // The process: once per mapping; nothing while only the cache holds it; more than the pool with hits.
  near(one.process, 3 * block, 'RssShmem, one sequence');
  near(cached.process, 0, 'RssShmem, cached');
  assert.ok(hits.process >= 4 * 3 * block, `RssShmem with four hits mapping 3 blocks each: ${(hits.process / MiB).toFixed(1)} MiB`);
});
