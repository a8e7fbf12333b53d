/**
 * Several models in one process share the native compute thread pool (one per process) while
 * each runs its own engine worker. Two models - one with vTensor KV and one with contiguous KV,
 * each decoding a batch of parallel sequences - generate at the same time, and every sequence
 * must get exactly the tokens it gets when its model runs alone. (A race in the pool's hand-over
 * between jobs once crashed a script that did this; the pool itself is stress-tested in
 * src/native/threadpool.test.ts.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { loadModel, type Model } from './model.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-two-models-'));
const A = join(dir, 'tiny-a-q8_0.gguf');
const B = join(dir, 'tiny-b-q4_0.gguf');
const PROMPTS = ['Once upon a time', 'The little dog', 'In the morning, the sun', 'She said hello to'];
const GREEDY = { temperature: 0, repeatPenalty: 1, maxTokens: 12, ignoreEos: true } as const;

before(async () => {
  await synthesize(A, 'tiny-15m', 'q8_0', { seed: 21 });
  await synthesize(B, 'tiny-15m', 'q4_0', { seed: 22 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function generateAll(model: Model): Promise<number[][]> {
  const results = await Promise.all(PROMPTS.map((p) => model.complete(p, GREEDY)));
  return results.map((r) => [...r.tokens]);
}

test('two models (vtensor and contiguous KV) decoding batches at the same time give each sequence its solo tokens', { timeout: 300_000 }, async () => {
  const opts = { threads: 2, contextSize: 128, parallel: 4 } as const;
  // Alone: one model at a time, each prompt on its own.
  const solo = async (path: string, kv: 'vtensor' | 'contiguous'): Promise<number[][]> => {
    const m = await loadModel(path, { ...opts, parallel: 1, kv });
    try {
      const out: number[][] = [];
      for (const p of PROMPTS) out.push([...(await m.complete(p, GREEDY)).tokens]);
      return out;
    } finally {
      await m.dispose();
    }
  };
  const soloA = await solo(A, 'vtensor');
  const soloB = await solo(B, 'contiguous');
  assert.notDeepEqual(soloA, soloB, 'the two models must differ, or the test shows nothing');

  const [ma, mb] = await Promise.all([loadModel(A, { ...opts, kv: 'vtensor' }), loadModel(B, { ...opts, kv: 'contiguous' })]);
  try {
    for (let round = 0; round < 3; round++) {
      const [ga, gb] = await Promise.all([generateAll(ma), generateAll(mb)]);
      assert.deepEqual(ga, soloA, `round ${round}: vtensor model`);
      assert.deepEqual(gb, soloB, `round ${round}: contiguous model`);
    }
  } finally {
    await Promise.all([ma.dispose(), mb.dispose()]);
  }
});
