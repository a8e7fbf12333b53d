/**
 * The issue-5 invariant: the KV layout and prefix reuse change memory, never results. Greedy
 * tokens and logits are bit-identical with `vtensor`, `paged` and `contiguous`, with and
 * without a reused prefix, for one sequence alone and for several in one batch.
 *
 * Two levels:
 * - Forward pass over a KvManager (in this thread): logits of suffix rows computed on top of
 *   a prefix taken from the prefix cache (matchPrefix) equal the logits of the same rows
 *   computed from scratch, alone or four sequences in one batch, for every layout; vTensor uses
 *   small chunks here so the prefix spans shared full chunks and a copied tail (paged: shared
 *   16-token blocks and a copy-on-write of the partly matched one).
 * - Public API (engine worker, scheduler): evaluate(allLogits) logits and greedy complete()
 *   tokens equal across layouts; rounds with prefix-cache hits (checked: cachedPromptTokens > 0)
 *   give the same tokens as the cold round; the tokens are the argmax of no-reuse logits.
 *
 * Models: tiny-15m (llama, MHA) and a shrunk qwen2.5-0.5b (GQA 4:2, q/k/v biases, 152k vocab).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { SYNTH_PRESETS, type SynthPreset } from '../synth/presets.js';
import { readGgufSync } from '../gguf/reader.js';
import { createTransformer, modelConfigFromGguf } from '../models/registry.js';
import type { Transformer, Batch } from '../models/transformer.js';
import { createKvManager, VTensorKvManager, type KvManager } from '../kv/index.js';
import { rowBytes } from '../kv/shape.js';
import { createWeightStore } from '../weights/create.js';
import { setThreads } from '../native/index.js';
import { loadModel, type Model } from '../index.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-kv-invariants-'));
const LAYOUTS = ['vtensor', 'paged', 'contiguous'] as const;

interface Case {
  name: string;
  path: string;
  preset: SynthPreset | string;
}

const qwenShrunk: SynthPreset = { ...SYNTH_PRESETS['qwen2.5-0.5b']!, name: 'qwen2.5-0.5b-shrunk', dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffn: 512 };
const CASES: Case[] = [
  { name: 'tiny-15m', path: join(dir, 'tiny-15m-q8_0.gguf'), preset: 'tiny-15m' },
  { name: 'qwen2 GQA (shrunk qwen2.5-0.5b)', path: join(dir, 'qwen2-shrunk-q8_0.gguf'), preset: qwenShrunk },
  // The architectures of issue 11, narrow and shallow: gemma3 (layers 0-4 local with a 32-token
  // window, shorter than the shared 150-token prefix; layer 5 global), phi3 (fused projections,
  // partial rotary, longrope: long factors since 256 > 128), gemma2 (soft-capped attention
  // scores in every layout's kernel, layer 0 local), smollm3 (layer 3 without RoPE), qwen3
  // (q/k norms, head_dim 128 on a 256 residual).
  { name: 'gemma3 sliding window (shrunk gemma-3-1b)', path: join(dir, 'gemma3-shrunk-q8_0.gguf'), preset: shrink('gemma-3-1b', { nLayers: 6, nKvHeads: 1, headDim: 64, slidingWindow: 32 }) },
  { name: 'phi3 (shrunk phi-3.5-mini)', path: join(dir, 'phi3-shrunk-q8_0.gguf'), preset: shrink('phi-3.5-mini', { headDim: 64, ropeDim: 48, longRope: { originalContext: 128 } }) },
  { name: 'gemma2 soft-capping (shrunk gemma-2-2b)', path: join(dir, 'gemma2-shrunk-q8_0.gguf'), preset: shrink('gemma-2-2b', { headDim: 64, slidingWindow: 32 }) },
  { name: 'smollm3 NoPE layer (shrunk smollm3-3b)', path: join(dir, 'smollm3-shrunk-q8_0.gguf'), preset: shrink('smollm3-3b', { nLayers: 4 }) },
  { name: 'qwen3 q/k norms (shrunk qwen3-0.6b)', path: join(dir, 'qwen3-shrunk-q8_0.gguf'), preset: shrink('qwen3-0.6b', { headDim: 128 }) },
];

/** A preset made small (256 wide, 2 layers, 4 heads on 2 KV heads, FFN 512) with overrides. */
function shrink(name: string, o: Partial<SynthPreset>): SynthPreset {
  return { ...SYNTH_PRESETS[name]!, name: `${name}-shrunk`, dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffn: 512, ...o };
}

before(async () => {
  for (const c of CASES) await synthesize(c.path, c.preset, 'q8_0', { seed: 7 });
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** Deterministic pseudo-random token ids in [3, vocab) (xorshift32). */
function randomTokens(n: number, vocab: number, seed: number): Uint32Array {
  const out = new Uint32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = 3 + (s % (vocab - 3));
  }
  return out;
}

/** First index where two float arrays differ bit for bit (NaN-safe), or -1. */
function firstBitDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

function assertBitEqual(a: Float32Array, b: Float32Array, what: string): void {
  const i = firstBitDiff(a, b);
  assert.equal(a.length, b.length, `${what}: lengths`);
  assert.ok(i < 0, `${what}: first difference at element ${i}: ${a[i]} vs ${b[i]}`);
}

function argmax(x: Float32Array, from: number, n: number): number {
  let best = 0;
  for (let j = 1; j < n; j++) if (x[from + j]! > x[from + best]!) best = j;
  return best;
}

// --- forward pass over a KvManager ---------------------------------------------------------

/** One sequence's rows [from, tokens.length) in a batch; logits of positions >= logitsFrom. */
interface Part {
  seq: number;
  tokens: Uint32Array;
  from: number;
}

/**
 * Runs one forward pass over the parts (ensure, forward, commit). Returns per part the logits
 * of its positions [logitsFrom, tokens.length): [tokens.length - logitsFrom, vocab].
 */
function forwardParts(tf: Transformer, kv: KvManager, parts: Part[], vocab: number, logitsFrom: number): Float32Array[] {
  const numRows = parts.reduce((n, p) => n + p.tokens.length - p.from, 0);
  const batch: Batch = {
    numRows,
    tokens: new Int32Array(numRows),
    positions: new Int32Array(numRows),
    seqs: new Int32Array(numRows),
    logitRows: new Int32Array(numRows),
    numLogitRows: 0,
  };
  let r = 0;
  for (const p of parts) {
    assert.ok(p.from <= logitsFrom, 'logits rows are computed');
    assert.ok(kv.ensure(p.seq, p.tokens.length), 'KV room');
    for (let i = p.from; i < p.tokens.length; i++, r++) {
      batch.tokens[r] = p.tokens[i]!;
      batch.positions[r] = i;
      batch.seqs[r] = p.seq;
      if (i >= logitsFrom) batch.logitRows[batch.numLogitRows++] = r;
    }
  }
  const logits = tf.forward(batch); // [numLogitRows, vocab]
  const out: Float32Array[] = [];
  const n = parts[0]!.tokens.length - logitsFrom;
  for (let i = 0; i < parts.length; i++) {
    out.push(logits.slice(i * n * vocab, (i + 1) * n * vocab));
    kv.commit(parts[i]!.seq, parts[i]!.tokens);
  }
  return out;
}

for (const c of CASES) {
  test(`${c.name}: forward logits with a reused prefix equal recomputed ones, alone and batched, vtensor == paged == contiguous`, async () => {
    setThreads(2);
    const file = readGgufSync(c.path);
    const config = modelConfigFromGguf(file);
    const vocab = config.vocabSize;
    const PREFIX = 150;
    const SUFFIX = 12;
    const N = 4;
    const common = randomTokens(PREFIX, vocab, 11);
    const seqTokens = Array.from({ length: N }, (_, i) => Uint32Array.from([...common, ...randomTokens(SUFFIX, vocab, 100 + i)]));
    const len = PREFIX + SUFFIX;
    const maxRows = N * len;
    const { store } = await createWeightStore(file, {});
    const shape = { numLayers: config.numLayers, kvDim: config.numKvHeads * config.headDim, maxContext: 256 };
    // vTensor chunks of the smallest legal size (lcm(4096, row)), so the 150-token prefix is
    // shared full chunks plus a copied partial tail.
    const row = rowBytes(shape);
    let chunkBytes = row;
    while (chunkBytes % 4096 !== 0) chunkBytes += row;
    const tokensPerChunk = chunkBytes / row;
    assert.ok(tokensPerChunk < PREFIX, `chunk of ${tokensPerChunk} tokens leaves no full chunk in the prefix`);
    const capacityBytes = 3 * N * shape.maxContext * shape.numLayers * 2 * row;
    const suffixLogits: Record<string, Float32Array[]> = {};
    try {
      for (const layout of LAYOUTS) {
        const kv = createKvManager({ layout, shape, capacityBytes, ...(layout === 'vtensor' ? { chunkBytes } : layout === 'paged' ? { headDim: config.headDim } : { maxSequences: 3 * N }) });
        const tf = createTransformer(config, store, kv, { maxRows, maxLogitRows: maxRows });
        try {
          // (1) Each sequence alone, from scratch, not cached.
          const alone: Float32Array[] = [];
          for (const t of seqTokens) {
            const seq = kv.createSequence()!;
            alone.push(forwardParts(tf, kv, [{ seq, tokens: t, from: 0 }], vocab, PREFIX)[0]!);
            kv.release(seq, false);
          }
          // (2) All four in one batch, from scratch.
          const seqs = seqTokens.map(() => kv.createSequence()!);
          const together = forwardParts(tf, kv, seqTokens.map((t, i) => ({ seq: seqs[i]!, tokens: t, from: 0 })), vocab, PREFIX);
          for (let i = 0; i < N; i++) assertBitEqual(together[i]!, alone[i]!, `${layout}: sequence ${i} batched vs alone`);
          // Sequence 0 goes to the prefix cache; the others are dropped.
          for (let i = 0; i < N; i++) kv.release(seqs[i]!, i === 0);
          // (3) Sequences 1..3 alone on top of the cached prefix (they diverge from 0 at PREFIX).
          for (let i = 1; i < N; i++) {
            const m = kv.matchPrefix(seqTokens[i]!);
            assert.ok(m !== null, `${layout}: prefix-cache hit for sequence ${i}`);
            assert.equal(m.numTokens, PREFIX, `${layout}: matched tokens`);
            const l = forwardParts(tf, kv, [{ seq: m.seq, tokens: seqTokens[i]!, from: PREFIX }], vocab, PREFIX)[0]!;
            assertBitEqual(l, alone[i]!, `${layout}: sequence ${i} suffix on a reused prefix vs from scratch`);
            kv.release(m.seq, false);
          }
          // (4) All four in one batch, each on the reused prefix (sequence 0 matches all but its last token).
          const matches = seqTokens.map((t) => kv.matchPrefix(t)!);
          assert.ok(matches.every((m) => m !== null && m.numTokens >= PREFIX), `${layout}: batched prefix hits`);
          // vTensor maps the prefix's full chunks into every match instead of copying them.
          if (layout !== 'contiguous') assert.ok(kv.stats().sharedBytes > 0, `${layout}: prefix chunks / blocks shared`);
          const reused = forwardParts(tf, kv, seqTokens.map((t, i) => ({ seq: matches[i]!.seq, tokens: t, from: PREFIX })), vocab, PREFIX);
          for (let i = 1; i < N; i++) assertBitEqual(reused[i]!, alone[i]!, `${layout}: sequence ${i} batched on a reused prefix`);
          for (const m of matches) kv.release(m.seq, false);
          const st = kv.stats();
          assert.ok(st.prefixHits >= 2 * N - 1 && st.prefixTokensReused >= (2 * N - 1) * PREFIX, `${layout}: stats ${JSON.stringify(st)}`);
          suffixLogits[layout] = alone;
        } finally {
          kv.dispose();
        }
      }
      for (let i = 0; i < N; i++) {
        assertBitEqual(suffixLogits.vtensor![i]!, suffixLogits.contiguous![i]!, `sequence ${i}: vtensor vs contiguous`);
        assertBitEqual(suffixLogits.paged![i]!, suffixLogits.vtensor![i]!, `sequence ${i}: paged vs vtensor`);
      }
    } finally {
      store.dispose();
    }
  });
}

// --- public API ---------------------------------------------------------------------------

const GREEDY = { temperature: 0, maxTokens: 8 } as const;

interface ApiRun {
  logits: Float32Array;
  cold: number[][];
  warmAlone: number[][];
  followUp: number[][];
  prompts: Uint32Array[];
  followPrompts: Uint32Array[];
}

/** One layout: evaluate logits, then three rounds of greedy generations (see file comment). */
async function apiRun(c: Case, layout: (typeof LAYOUTS)[number]): Promise<ApiRun> {
  const model: Model = await loadModel(c.path, { threads: 2, contextSize: 1024, parallel: 8, kv: layout });
  try {
    const vocab = model.info.vocabSize;
    const logits = await model.evaluate(randomTokens(40, vocab, 3), { allLogits: true }); // [40, vocab]
    const common = model.tokenize('Once upon a time, in a small village by the sea, there lived an old fisherman and his clever cat. Every morning', { addBos: true });
    const endings = [' they', ' the cat', ' a storm came and', ' nobody'];
    const prompts = endings.map((e) => Uint32Array.from([...common, ...model.tokenize(e, { addBos: false })]));
    // Round 1: four at once, nothing cached yet.
    type SchedStats = { scheduler: { steps: number; rows: number } };
    const s0 = ((await model.stats()) as SchedStats).scheduler;
    const r1 = await Promise.all(prompts.map((p) => model.complete(p, GREEDY)));
    const s1 = ((await model.stats()) as SchedStats).scheduler;
    // Decode steps carried rows of several sequences (4 x 7 decode rows in about 7 steps). The
    // prompt rows are those computed: on a loaded machine the four requests may reach the
    // scheduler a step apart, and then the later ones find the common prefix already cached.
    const promptRows = prompts.reduce((n, p, i) => n + p.length - r1[i]!.cachedPromptTokens, 0);
    assert.ok(s1.rows - s0.rows - promptRows >= 2 * (s1.steps - s0.steps), `${layout}: round 1 was batched (${s1.rows - s0.rows} rows, ${promptRows} of them prompt rows, ${s1.steps - s0.steps} steps)`);
    // Round 2: each alone; round 1 left every prompt in the prefix cache.
    const r2 = [];
    for (const p of prompts) r2.push(await model.complete(p, GREEDY));
    r2.forEach((r, i) => assert.ok(r.cachedPromptTokens >= common.length, `${layout}: round 2 prompt ${i} cached ${r.cachedPromptTokens}`));
    // Round 3: four follow-ups at once (prompt + reply + more), each on its cached turn.
    const more = model.tokenize(' And then', { addBos: false });
    const followPrompts = prompts.map((p, i) => Uint32Array.from([...p, ...r1[i]!.tokens, ...more]));
    const r3 = await Promise.all(followPrompts.map((p) => model.complete(p, GREEDY)));
    r3.forEach((r, i) => assert.ok(r.cachedPromptTokens >= prompts[i]!.length, `${layout}: round 3 prompt ${i} cached ${r.cachedPromptTokens}`));
    return { logits, cold: r1.map((r) => r.tokens), warmAlone: r2.map((r) => r.tokens), followUp: r3.map((r) => r.tokens), prompts, followPrompts };
  } finally {
    await model.dispose();
  }
}

for (const c of CASES) {
  test(`${c.name}: public API logits and greedy tokens equal across layouts, with and without prefix reuse, alone and batched`, async () => {
    const runs: Partial<Record<(typeof LAYOUTS)[number], ApiRun>> = {};
    for (const layout of LAYOUTS) runs[layout] = await apiRun(c, layout);
    const v = runs.vtensor!;
    const k = runs.contiguous!;
    const p = runs.paged!;
    assertBitEqual(v.logits, k.logits, 'evaluate(allLogits) vtensor vs contiguous');
    assertBitEqual(p.logits, v.logits, 'evaluate(allLogits) paged vs vtensor');
    for (const run of [v, p, k]) {
      assert.deepEqual(run.warmAlone, run.cold, 'alone on a reused prefix vs batched cold');
    }
    for (const [other, name] of [[k, 'contiguous'], [p, 'paged']] as const) {
      assert.deepEqual(other.cold, v.cold, `batched cold: vtensor vs ${name}`);
      assert.deepEqual(other.followUp, v.followUp, `batched follow-ups on reused prefixes: vtensor vs ${name}`);
    }

    // Independent check: the generated tokens are the argmax of logits computed without any
    // reuse or batching (one evaluate over prompt + generated tokens, teacher-forced).
    const model = await loadModel(c.path, { threads: 2, contextSize: 512, parallel: 1, kv: 'contiguous' });
    try {
      const vocab = model.info.vocabSize;
      const pairs = [...k.prompts.map((p, i) => [p, k.cold[i]!] as const), ...k.followPrompts.map((p, i) => [p, k.followUp[i]!] as const)];
      for (const [prompt, gen] of pairs) {
        const all = Uint32Array.from([...prompt, ...gen.slice(0, -1)]);
        const logits = await model.evaluate(all, { allLogits: true }); // [all.length, vocab]
        const argmaxes = gen.map((_, j) => argmax(logits, (prompt.length - 1 + j) * vocab, vocab));
        assert.deepEqual(gen, argmaxes, 'greedy tokens == argmax of uncached logits');
      }
    } finally {
      await model.dispose();
    }
  });
}

// --- tight pool ---------------------------------------------------------------------------------

// vTensor used to miss here: matchPrefix copied the cached tail into fresh chunks and, with no
// free chunk, gave up, where contiguous hands the parked slot over. Now a tail block that only
// the cache holds is handed over too (src/kv/vtensor-manager.ts).
test('prefix reuse when the pool holds one sequence: vtensor and paged hit as contiguous does, and the logits equal recomputed ones', async () => {
  setThreads(2);
  const c = CASES[0]!; // tiny-15m: 576-byte rows, so a default chunk (lcm(64 KiB, row)) holds 1024 tokens
  const file = readGgufSync(c.path);
  const config = modelConfigFromGguf(file);
  const vocab = config.vocabSize;
  const shape = { numLayers: config.numLayers, kvDim: config.numKvHeads * config.headDim, maxContext: 64 };
  const turn1 = randomTokens(40, vocab, 21);
  const turn2 = Uint32Array.from([...turn1, ...randomTokens(9, vocab, 22)]);
  const { store } = await createWeightStore(file, {});
  const reused: Record<string, Float32Array> = {};
  try {
    for (const layout of LAYOUTS) {
      // Room for exactly one sequence: one chunk per layer tensor (the whole context), 4 blocks, or one slot.
      const kv =
        layout === 'vtensor'
          ? createKvManager({ layout, shape, capacityBytes: 2 * shape.numLayers * 1024 * rowBytes(shape) })
          : createKvManager({ layout, shape, capacityBytes: shape.maxContext * shape.numLayers * 2 * rowBytes(shape), ...(layout === 'paged' ? { headDim: config.headDim } : {}) });
      const tf = createTransformer(config, store, kv, { maxRows: turn2.length, maxLogitRows: turn2.length });
      try {
        if (layout === 'vtensor') assert.equal((kv as VTensorKvManager).pool.capacityChunks, 2 * shape.numLayers, 'one chunk per tensor');
        // Turn 1 from scratch, then into the prefix cache.
        const a = kv.createSequence()!;
        forwardParts(tf, kv, [{ seq: a, tokens: turn1, from: 0 }], vocab, turn1.length - 1);
        kv.release(a, true);
        // Turn 2 on the cached turn 1: the pool has no free memory, the cache must give its own.
        const m = kv.matchPrefix(turn2);
        assert.ok(m !== null, `${layout}: prefix-cache hit`);
        assert.equal(m.numTokens, turn1.length, `${layout}: the whole first turn is reused`);
        reused[layout] = forwardParts(tf, kv, [{ seq: m.seq, tokens: turn2, from: turn1.length }], vocab, turn1.length)[0]!;
        kv.release(m.seq, false);
        kv.clearPrefixCache();
        // Reference: turn 2 from scratch.
        const b = kv.createSequence()!;
        const scratch = forwardParts(tf, kv, [{ seq: b, tokens: turn2, from: 0 }], vocab, turn1.length)[0]!;
        kv.release(b, false);
        assertBitEqual(reused[layout]!, scratch, `${layout}: turn 2 logits on the reused prefix vs from scratch`);
        const st = kv.stats();
        assert.equal(st.prefixHits, 1);
        assert.equal(st.prefixTokensReused, turn1.length);
      } finally {
        kv.dispose();
      }
    }
    assertBitEqual(reused.vtensor!, reused.contiguous!, 'turn 2 logits: vtensor vs contiguous');
    assertBitEqual(reused.paged!, reused.vtensor!, 'turn 2 logits: paged vs vtensor');
  } finally {
    store.dispose();
  }
});

// --- sliding window ----------------------------------------------------------------------------

// vTensor gives back the chunks a local layer's window has left behind (KvShape.layerWindows);
// the attention kernel never reads there, so the logits must not change by a bit.
test('gemma3 sliding window: vTensor with the window unmapping == without, bit for bit, decoding chunks past the window; local layers hold their window plus one chunk; a cached conversation is reused at its end', async () => {
  setThreads(2);
  const c = CASES.find((x) => x.name.startsWith('gemma3'))!;
  const file = readGgufSync(c.path);
  const config = modelConfigFromGguf(file);
  const vocab = config.vocabSize;
  const windows = config.layerWindows!;
  assert.deepEqual(windows, [32, 32, 32, 32, 32, 0]);
  const base = { numLayers: config.numLayers, kvDim: config.numKvHeads * config.headDim, maxContext: 256 };
  const chunkBytes = 4096; // 32 tokens of 64-element rows: the window is one chunk
  const tokensPerChunk = chunkBytes / rowBytes(base);
  const PROMPT = 40, STEPS = 90;
  const prompt = randomTokens(PROMPT, vocab, 31);
  const { store } = await createWeightStore(file, {});
  const runs: Record<string, { logits: Float32Array[]; tokens: Uint32Array; next: Float32Array }> = {};
  try {
    for (const unmap of [true, false]) {
      const kv = new VTensorKvManager({ shape: { ...base, layerWindows: windows }, capacityBytes: 4 << 20, chunkBytes, windowUnmap: unmap });
      const tf = createTransformer(config, store, kv, { maxRows: PROMPT, maxLogitRows: 1 });
      try {
        const seq = kv.createSequence()!;
        let tokens = prompt;
        const logits = [forwardParts(tf, kv, [{ seq, tokens, from: 0 }], vocab, PROMPT - 1)[0]!];
        for (let i = 0; i < STEPS; i++) {
          tokens = Uint32Array.from([...tokens, argmax(logits[i]!, 0, vocab)]);
          logits.push(forwardParts(tf, kv, [{ seq, tokens, from: tokens.length - 1 }], vocab, tokens.length - 1)[0]!);
          if (unmap) {
            const bound = (32 / tokensPerChunk + 1) * chunkBytes * 2; // K and V: window + one chunk
            for (let l = 0; l < 5; l++) assert.ok(kv.layerBytes(seq, l) <= bound, `step ${i}: local layer ${l} holds ${kv.layerBytes(seq, l)} B`);
            assert.equal(kv.layerBytes(seq, 5), Math.ceil(tokens.length / tokensPerChunk) * chunkBytes * 2, 'the global layer holds every token');
          }
        }
        // The conversation goes to the prefix cache; the next turn reuses all of it.
        kv.release(seq, true);
        const turn = Uint32Array.from([...tokens, ...randomTokens(3, vocab, 32)]);
        const m = kv.matchPrefix(turn)!;
        assert.ok(m !== null && m.numTokens === tokens.length, `unmap ${unmap}: the whole conversation is reused`);
        const next = forwardParts(tf, kv, [{ seq: m.seq, tokens: turn, from: m.numTokens }], vocab, turn.length - 1)[0]!;
        kv.release(m.seq);
        runs[String(unmap)] = { logits, tokens, next };
      } finally {
        kv.dispose();
      }
    }
    const on = runs['true']!, off = runs['false']!;
    assert.deepEqual(on.tokens, off.tokens, 'greedy tokens');
    on.logits.forEach((l, i) => assertBitEqual(l, off.logits[i]!, `step ${i} logits, unmapping on vs off`));
    assertBitEqual(on.next, off.next, 'next turn on the reused prefix, unmapping on vs off');
  } finally {
    store.dispose();
  }
});

// The KV sizing counts a local layer as its window plus one pass (pool-size.ts layerChunks), so
// a prompt longer than that is mapped pass by pass: admission maps its first chunk and each
// prefill pass its own rows, the window dropping behind. With the whole prompt mapped at
// admission this pool (one sequence, sized by that bound) refuses the prompt (KvCapacityError).
test('gemma3 sliding window: a prompt longer than window + one pass runs in a vTensor pool sized for window + one pass; same tokens as the contiguous layout', async () => {
  const c = CASES.find((x) => x.name.startsWith('gemma3'))!;
  const vocab = modelConfigFromGguf(readGgufSync(c.path)).vocabSize;
  // 4096 tokens in 64 KiB chunks of 512: a global layer's K or V needs 8 chunks, a local one 3
  // (32-token window + 512 rows); a 3900-token prompt mapped whole would need 8 in every layer.
  const prompt = randomTokens(3900, vocab, 11);
  const out: Record<string, number[]> = {};
  for (const kv of ['contiguous', 'vtensor'] as const) {
    const model: Model = await loadModel(c.path, { threads: 2, contextSize: 4096, parallel: 1, kv, prefixCache: false });
    try {
      if (kv === 'vtensor') {
        const s = (await model.stats()) as { kv: { capacityBytes?: number } };
        // By hand: (5 local layers x 3 + 1 global x 8) chunks for K and as many for V, plus one
        // spare tail per (layer, K/V): 58 chunks of 64 KiB (the whole context: 108).
        assert.equal(s.kv.capacityBytes, 58 * 65536, 'the pool is sized for the windows, not the whole context');
      }
      out[kv] = Array.from((await model.complete(prompt, GREEDY)).tokens);
    } finally {
      await model.dispose();
    }
  }
  assert.equal(out.vtensor!.length, GREEDY.maxTokens);
  assert.deepEqual(out.vtensor, out.contiguous);
});
