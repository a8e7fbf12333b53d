/**
 * Synthetic MoE routers must route like uniform routing over DIFFERENT tokens of one sequence
 * (the worst case for an expert cache, and the README's headline): the experts a token picks
 * must not be the ones the other tokens of its sequence picked. Measured on the real forward
 * pass of a tiny-qwen3moe file: 32 random tokens decoded one step at a time in one sequence, the
 * experts each step asks the weight store for, per layer.
 *
 * The bound comes from uniform routing, not from this code: two independent uniform top-k
 * choices among E experts share k^2 / E experts on average (a hypergeometric count: mean
 * k * k / E, variance k (k/E)(1 - k/E)(E - k)/(E - 1)), so a cache holding only the previous
 * token's experts would hit k / E of the time. Before MOE_EMBEDDING_STD (plan.ts) the same
 * measurement gave one expert picked by 31 of 32 tokens in layer 3.
 *
 * Also: synth --rewrite brings an existing file up to date, byte for byte a fresh synth.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidOptionError } from '../errors.js';
import { readGgufSync } from '../gguf/reader.js';
import { createKvManager } from '../kv/index.js';
import { kvPoolSize } from '../kv/pool-size.js';
import { createTransformer, modelConfigFromGguf } from '../models/registry.js';
import { createWeightStore } from '../weights/create.js';
import type { ExpertWeights, WeightStore } from '../weights/store.js';
import { rewriteSynthTensors } from './rewrite.js';
import { synthesize } from './synth.js';

const N = 32;

test('synthetic MoE routing: 32 random tokens of one sequence pick experts as uniform routing would, in every layer', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-routing-'));
  try {
    const path = join(dir, 'tiny-qwen3moe-q8_0.gguf');
    await synthesize(path, 'tiny-qwen3moe', 'q8_0', { seed: 5 });
    const file = readGgufSync(path);
    const config = modelConfigFromGguf(file);
    const { store } = await createWeightStore(file);
    try {
      // The experts each layer asks the store for, per step (one row per step: its top-k).
      const picked: number[][][] = Array.from({ length: config.numLayers }, () => []);
      const ex = store.experts!;
      const spy: ExpertWeights = {
        numExperts: ex.numExperts,
        allResident: ex.allResident,
        prefetch: ex.prefetch,
        lookahead: ex.lookahead,
        router: (l) => ex.router(l),
        useExperts: (layer, experts, compute, next) => {
          picked[layer]!.push([...experts]);
          ex.useExperts(layer, experts, compute, next);
        },
      };
      const weights = new Proxy(store, { get: (t, p) => (p === 'experts' ? spy : Reflect.get(t, p, t)) }) as WeightStore;
      const shape = { numLayers: config.numLayers, kvDim: config.numKvHeads * config.headDim, maxContext: N + 1 };
      const kv = createKvManager({ layout: 'contiguous', shape, capacityBytes: kvPoolSize(shape, 1, 'contiguous').kvBytes, maxSequences: 1 });
      const model = createTransformer(config, weights, kv, { maxRows: 1, maxLogitRows: 1 });
      const seq = kv.createSequence()!;
      assert.ok(kv.ensure(seq, N));
      let x = 7;
      for (let pos = 0; pos < N; pos++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        const token = 1000 + (x % (config.vocabSize - 2000));
        const row = (v: number) => Int32Array.of(v);
        model.forward({ numRows: 1, tokens: row(token), positions: row(pos), seqs: row(seq), logitRows: row(0), numLogitRows: 1 });
      }
      const E = config.moe!.numExperts;
      const k = config.moe!.numExpertsUsed;
      const uniform = (k * k) / E; // 1 shared expert for 16 experts, 4 used
      // sd of the mean over all pairs under uniform routing: sqrt(var / pairs) ~ 0.035 here
      const pairs = (N * (N - 1)) / 2;
      const sd = Math.sqrt((k * (k / E) * (1 - k / E) * (E - k)) / (E - 1) / pairs);
      for (let l = 0; l < config.numLayers; l++) {
        const sets = picked[l]!;
        assert.equal(sets.length, N);
        for (const s of sets) assert.equal(s.length, k, `layer ${l}: one row asks for its k experts`);
        let shared = 0;
        for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) shared += sets[i]!.filter((e) => sets[j]!.includes(e)).length;
        const mean = shared / pairs;
        // 1.5x the uniform mean: ~14 sd above it, and far below the k (= 4) of routing that
        // ignores the token
        assert.ok(mean < 1.5 * uniform, `layer ${l}: tokens share ${mean.toFixed(2)} experts on average (uniform routing: ${uniform}, sd ${sd.toFixed(3)})`);
        const counts = new Array<number>(E).fill(0);
        for (const s of sets) for (const e of s) counts[e]!++;
        // every expert is used, none by most tokens (uniform: Binomial(32, 1/4) per expert, mean 8)
        assert.ok(counts.every((c) => c > 0), `layer ${l}: unused experts ${counts}`);
        assert.ok(Math.max(...counts) <= N / 2, `layer ${l}: an expert picked by ${Math.max(...counts)} of ${N} tokens`);
      }
      kv.dispose();
    } finally {
      store.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('synth --rewrite: regenerates the named tensors in place, giving the bytes of a fresh synth; other files and unknown names are typed errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-rewrite-'));
  try {
    const fresh = join(dir, 'fresh.gguf');
    const stale = join(dir, 'stale.gguf');
    await synthesize(fresh, 'tiny-mixtral', 'q8_0', { seed: 3, threads: 1 });
    copyFileSync(fresh, stale);
    // as if written by an older generator: the embeddings and the routers overwritten
    const f = readGgufSync(stale);
    const fd = openSync(stale, 'r+');
    for (const t of f.tensors.filter((t) => t.name === 'token_embd.weight' || t.name.endsWith('.ffn_gate_inp.weight'))) writeSync(fd, new Uint8Array(t.byteSize).fill(0x11), 0, t.byteSize, t.fileOffset);
    closeSync(fd);
    assert.notDeepEqual(readFileSync(stale), readFileSync(fresh));
    const r = await rewriteSynthTensors(stale, 'tiny-mixtral', 'q8_0', ['token_embd.weight', 'ffn_gate_inp.weight'], { seed: 3 });
    assert.deepEqual(r.tensors, ['token_embd.weight', ...[0, 1, 2, 3].map((l) => `blk.${l}.ffn_gate_inp.weight`)]);
    assert.equal(r.identical, true);
    assert.ok(readFileSync(stale).equals(readFileSync(fresh)), 'rewritten file = fresh synth');
    // another preset (token_embd 32000 rows, not 151936), another type (q4_k_m: Q4_K, not Q8_0)
    await assert.rejects(rewriteSynthTensors(stale, 'tiny-qwen3moe', 'q8_0', ['token_embd.weight']), (e: unknown) => e instanceof InvalidOptionError && /token_embd.weight is type 8, dims 256x32000/.test(e.message));
    await assert.rejects(rewriteSynthTensors(stale, 'tiny-mixtral', 'q4_k_m', ['blk.0.ffn_gate_exps.weight']), (e: unknown) => e instanceof InvalidOptionError && /is not a 'synth --preset tiny-mixtral --type q4_k_m' file/.test(e.message));
    await assert.rejects(rewriteSynthTensors(stale, 'tiny-mixtral', 'q8_0', ['ffn_router.weight']), (e: unknown) => e instanceof InvalidOptionError && /no tensor .* 'ffn_router.weight'/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
