/**
 * The forward pass against a naive float64 reference written from the equations (one token at
 * a time, one sequence at a time), on tiny random llama and qwen2 configs: batched prefill,
 * several sequences in one batch, chunked prefill and decode must all give the reference's
 * logits. K/V are rounded to f16 in the reference too (the cache stores f16 by design).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Batch } from './transformer.js';
import { createTransformer } from './registry.js';
import type { GemmaConfig } from './gemma2.js';
import type { Phi3Config } from './phi3.js';
import type { ModelConfig } from './config.js';
import type { LayerWeights, WeightStore, WeightTensor } from '../weights/store.js';
import type { KvCache, KvShape } from '../kv/cache.js';
import { GgmlType } from '../gguf/ggml-type.js';
import { f16ToF32, f32ToF16 } from '../gguf/f16.js';

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000 - 0.5;
  };
}

const base: ModelConfig = {
  architecture: 'llama', dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 96, vocabSize: 50,
  contextLength: 64, rmsEps: 1e-5, ropeFreqBase: 10000, ropeScale: 1, tiedOutput: false, hasRopeFreqs: false, ropeDim: 16,
};

/** What the reference must know of each architecture (the model files know it themselves). */
interface Traits {
  ropeMode: 'normal' | 'neox';
  qkvBias: boolean;
  /** RMSNorm over each head of q and k before RoPE (attn_q_norm / attn_k_norm). */
  qkNorm?: boolean;
  /** Layers l with (l + 1) % noRopeStep == 0 skip RoPE. */
  noRopeStep?: number;
  /** Gemma: scaled embeddings, post-norms, GEGLU, query scale, soft-caps, local layers (GemmaConfig). */
  gemma?: boolean;
  /** phi3: fused attn_qkv and gate|up, longrope factors chosen by context, attn_factor, partial rotary (Phi3Config). */
  phi3?: boolean;
}
const TRAITS: Record<string, Traits> = {
  llama: { ropeMode: 'normal', qkvBias: false },
  qwen2: { ropeMode: 'neox', qkvBias: true },
  qwen3: { ropeMode: 'neox', qkvBias: false, qkNorm: true },
  smollm3: { ropeMode: 'normal', qkvBias: false, noRopeStep: 4 },
  gemma2: { ropeMode: 'neox', qkvBias: false, gemma: true },
  gemma3: { ropeMode: 'neox', qkvBias: false, qkNorm: true, gemma: true },
  phi3: { ropeMode: 'neox', qkvBias: false, phi3: true },
};

/** The phi3 fields of a config. */
function phi3Of(c: ModelConfig): Phi3Config | null {
  return TRAITS[c.architecture]!.phi3 ? (c as Phi3Config) : null;
}

/** The gemma fields of a config (the test builds GemmaConfig objects for the gemma cases). */
function gemmaOf(c: ModelConfig): GemmaConfig | null {
  return TRAITS[c.architecture]!.gemma ? (c as GemmaConfig) : null;
}

/** Random F32 weights in an in-memory store; `w` keeps them as Float32Array for the reference. */
function makeStore(c: ModelConfig, seed: number): { store: WeightStore; w: Map<string, Float32Array> } {
  const r = rng(seed);
  const w = new Map<string, Float32Array>();
  const tensors = new Map<string, WeightTensor>();
  const add = (name: string, dims: number[], scale: number, offset = 0) => {
    const a = new Float32Array(dims.reduce((x, y) => x * y, 1));
    for (let i = 0; i < a.length; i++) a[i] = offset + r() * scale;
    w.set(name, a);
    tensors.set(name, { name, type: GgmlType.F32, dims, data: new Uint8Array(a.buffer) });
  };
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  add('token_embd.weight', [c.dim, c.vocabSize], 2);
  add('output_norm.weight', [c.dim], 0.5, 1);
  if (!c.tiedOutput) add('output.weight', [c.dim, c.vocabSize], 0.5);
  if (c.hasRopeFreqs) add('rope_freqs.weight', [c.headDim / 2], 2, 2.5);
  const phi = TRAITS[c.architecture]!.phi3;
  if (phi) {
    add('rope_factors_long.weight', [c.ropeDim / 2], 6, 4);
    add('rope_factors_short.weight', [c.ropeDim / 2], 1, 1.5);
  }
  for (let l = 0; l < c.numLayers; l++) {
    const p = `blk.${l}.`;
    add(p + 'attn_norm.weight', [c.dim], 0.5, 1);
    if (phi) {
      add(p + 'attn_qkv.weight', [c.dim, qDim + 2 * kvDim], 0.5);
    } else {
      add(p + 'attn_q.weight', [c.dim, qDim], 0.5);
      add(p + 'attn_k.weight', [c.dim, kvDim], 0.5);
      add(p + 'attn_v.weight', [c.dim, kvDim], 0.5);
    }
    if (TRAITS[c.architecture]!.qkvBias) {
      add(p + 'attn_q.bias', [qDim], 0.5);
      add(p + 'attn_k.bias', [kvDim], 0.5);
      add(p + 'attn_v.bias', [kvDim], 0.5);
    }
    if (TRAITS[c.architecture]!.qkNorm) {
      add(p + 'attn_q_norm.weight', [c.headDim], 0.5, 1);
      add(p + 'attn_k_norm.weight', [c.headDim], 0.5, 1);
    }
    add(p + 'attn_output.weight', [qDim, c.dim], 0.3);
    if (TRAITS[c.architecture]!.gemma) {
      add(p + 'post_attention_norm.weight', [c.dim], 0.5, 1);
      add(p + 'post_ffw_norm.weight', [c.dim], 0.5, 1);
    }
    add(p + 'ffn_norm.weight', [c.dim], 0.5, 1);
    if (phi) {
      add(p + 'ffn_up.weight', [c.dim, 2 * c.ffnDim], 0.5);
    } else {
      add(p + 'ffn_gate.weight', [c.dim, c.ffnDim], 0.5);
      add(p + 'ffn_up.weight', [c.dim, c.ffnDim], 0.5);
    }
    add(p + 'ffn_down.weight', [c.ffnDim, c.dim], 0.3);
  }
  let acquired = -1;
  const store: WeightStore = {
    numLayers: c.numLayers,
    acquire(layer: number): LayerWeights {
      assert.equal(acquired, -1, 'a layer was acquired twice without release');
      acquired = layer;
      const get = (s: string) => tensors.get(`blk.${layer}.${s}`);
      return { layer, get: (s) => get(s) ?? assert.fail(`missing ${s}`), find: get };
    },
    release(layer: number) {
      assert.equal(acquired, layer);
      acquired = -1;
    },
    global: (name) => tensors.get(name),
    embed(tokens, out) {
      const e = w.get('token_embd.weight')!;
      tokens.forEach((t, i) => out.set(e.subarray(t * c.dim, (t + 1) * c.dim), i * c.dim));
    },
  };
  return { store, w };
}

/** Plain per-sequence f16 arrays. */
function makeKv(shape: KvShape): KvCache {
  const k = new Map<number, Uint16Array[]>();
  const v = new Map<number, Uint16Array[]>();
  const get = (m: Map<number, Uint16Array[]>, seq: number, layer: number) => {
    if (!m.has(seq)) m.set(seq, Array.from({ length: shape.numLayers }, () => new Uint16Array(shape.maxContext * shape.kvDim)));
    return m.get(seq)![layer]!;
  };
  return { shape, keys: (s, l) => get(k, s, l), values: (s, l) => get(v, s, l) };
}

/** Naive reference: one sequence, one token at a time, float64, K/V rounded to f16. */
class Reference {
  private kc: number[][][] = []; // [layer][pos][kvDim]
  private vc: number[][][] = [];
  constructor(private c: ModelConfig, private w: Map<string, Float32Array>) {
    for (let l = 0; l < c.numLayers; l++) {
      this.kc.push([]);
      this.vc.push([]);
    }
  }

  private matvec(name: string, x: number[], rows: number): number[] {
    const W = this.w.get(name)!;
    const n = x.length;
    const out = new Array<number>(rows).fill(0);
    for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) out[r]! += W[r * n + i]! * x[i]!;
    return out;
  }

  private rmsnorm(x: number[], name: string): number[] {
    const g = this.w.get(name)!;
    const ss = x.reduce((a, b) => a + b * b, 0) / x.length;
    const s = 1 / Math.sqrt(ss + this.c.rmsEps);
    return x.map((v, i) => v * s * g[i]!);
  }

  /** rmsnorm of every headDim-wide head of x on its own (weight [headDim]). */
  private headNorm(x: number[], name: string): number[] {
    const hd = this.c.headDim;
    const out: number[] = [];
    for (let h = 0; h < x.length / hd; h++) out.push(...this.rmsnorm(x.slice(h * hd, (h + 1) * hd), name));
    return out;
  }

  private rope(x: number[], numHeads: number, pos: number, layer: number): void {
    const c = this.c;
    const g = gemmaOf(c);
    const phi = phi3Of(c);
    // phi3: long factors when the context (the test's KV holds contextLength) exceeds the original one
    const ff = phi ? this.w.get(c.contextLength > phi.ropeOriginalContext ? 'rope_factors_long.weight' : 'rope_factors_short.weight') : this.w.get('rope_freqs.weight');
    const mscale = phi ? phi.ropeAttnFactor : 1;
    const local = g !== null && g.isLocal[layer]!;
    const base = local ? g.ropeBaseLocal : c.ropeFreqBase;
    const linear = local && c.architecture === 'gemma3' ? 1 : c.ropeScale;
    const nRot = c.ropeDim; // dimensions past nRot are not rotated
    for (let h = 0; h < numHeads; h++) {
      for (let i = 0; i < nRot / 2; i++) {
        const theta = ((pos / linear) * Math.pow(base, (-2 * i) / nRot)) / (ff ? ff[i]! : 1);
        const [a, b] = TRAITS[c.architecture]!.ropeMode === 'normal' ? [2 * i, 2 * i + 1] : [i, i + nRot / 2];
        const x0 = x[h * c.headDim + a]!;
        const x1 = x[h * c.headDim + b]!;
        x[h * c.headDim + a] = (x0 * Math.cos(theta) - x1 * Math.sin(theta)) * mscale;
        x[h * c.headDim + b] = (x0 * Math.sin(theta) + x1 * Math.cos(theta)) * mscale;
      }
    }
  }

  /** Logits after feeding `token` at the next position. */
  step(token: number): number[] {
    const c = this.c;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const pos = this.kc[0]!.length;
    const e = this.w.get('token_embd.weight')!;
    const gm = gemmaOf(c);
    let x = Array.from(e.subarray(token * c.dim, (token + 1) * c.dim)).map((v) => (gm ? v * Math.sqrt(c.dim) : v));
    const f16 = (v: number) => f16ToF32(f32ToF16(v));
    for (let l = 0; l < c.numLayers; l++) {
      const p = `blk.${l}.`;
      const xb = this.rmsnorm(x, p + 'attn_norm.weight');
      const phi = phi3Of(c);
      const qkv = phi ? this.matvec(p + 'attn_qkv.weight', xb, qDim + 2 * kvDim) : [];
      let q = phi ? qkv.slice(0, qDim) : this.matvec(p + 'attn_q.weight', xb, qDim);
      let k = phi ? qkv.slice(qDim, qDim + kvDim) : this.matvec(p + 'attn_k.weight', xb, kvDim);
      const v = phi ? qkv.slice(qDim + kvDim) : this.matvec(p + 'attn_v.weight', xb, kvDim);
      if (TRAITS[c.architecture]!.qkvBias) {
        for (const [vec, n] of [[q, 'q'], [k, 'k'], [v, 'v']] as const) {
          const b = this.w.get(`${p}attn_${n}.bias`)!;
          vec.forEach((_, i) => (vec[i]! += b[i]!));
        }
      }
      const t = TRAITS[c.architecture]!;
      if (t.qkNorm) {
        q = this.headNorm(q, p + 'attn_q_norm.weight');
        k = this.headNorm(k, p + 'attn_k_norm.weight');
      }
      if (!t.noRopeStep || (l + 1) % t.noRopeStep !== 0) {
        this.rope(q, c.numHeads, pos, l);
        this.rope(k, c.numKvHeads, pos, l);
      }
      if (gm) q = q.map((v) => v * gm.queryScale);
      // keys a query sees: all, or the last slidingWindow ones in a local layer
      const first = gm && gm.isLocal[l] ? Math.max(0, pos + 1 - gm.slidingWindow) : 0;
      this.kc[l]!.push(k.map(f16));
      this.vc[l]!.push(v.map(f16));
      const att = new Array<number>(qDim).fill(0);
      const group = c.numHeads / c.numKvHeads;
      for (let h = 0; h < c.numHeads; h++) {
        const kh = Math.floor(h / group) * c.headDim;
        const scores = this.kc[l]!.slice(first).map((kr) => {
          let s = 0;
          for (let i = 0; i < c.headDim; i++) s += q[h * c.headDim + i]! * kr[kh + i]!;
          if (!gm) return s / Math.sqrt(c.headDim);
          return gm.attnSoftcap > 0 ? Math.tanh(s / gm.attnSoftcap) * gm.attnSoftcap : s;
        });
        const max = Math.max(...scores);
        const ex = scores.map((s) => Math.exp(s - max));
        const sum = ex.reduce((a, b) => a + b, 0);
        for (let t = 0; t < ex.length; t++) {
          for (let i = 0; i < c.headDim; i++) att[h * c.headDim + i]! += (ex[t]! / sum) * this.vc[l]![first + t]![kh + i]!;
        }
      }
      let o = this.matvec(p + 'attn_output.weight', att, c.dim);
      if (gm) o = this.rmsnorm(o, p + 'post_attention_norm.weight');
      x = x.map((v, i) => v + o[i]!);
      const xf = this.rmsnorm(x, p + 'ffn_norm.weight');
      const gu = phi ? this.matvec(p + 'ffn_up.weight', xf, 2 * c.ffnDim) : [];
      const g = phi ? gu.slice(0, c.ffnDim) : this.matvec(p + 'ffn_gate.weight', xf, c.ffnDim);
      const u = phi ? gu.slice(c.ffnDim) : this.matvec(p + 'ffn_up.weight', xf, c.ffnDim);
      const act = (v: number) => (gm ? 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * v * (1 + 0.044715 * v * v))) : v / (1 + Math.exp(-v)));
      const hb = g.map((gv, i) => act(gv) * u[i]!);
      let d = this.matvec(p + 'ffn_down.weight', hb, c.dim);
      if (gm) d = this.rmsnorm(d, p + 'post_ffw_norm.weight');
      x = x.map((v, i) => v + d[i]!);
    }
    const xn = this.rmsnorm(x, 'output_norm.weight');
    const logits = this.matvec(c.tiedOutput ? 'token_embd.weight' : 'output.weight', xn, c.vocabSize);
    return gm && gm.finalSoftcap > 0 ? logits.map((v) => Math.tanh(v / gm.finalSoftcap) * gm.finalSoftcap) : logits;
  }
}

function batchOf(rows: Array<[seq: number, pos: number, token: number, wantLogits: boolean]>): Batch {
  const logitRows = rows.map((r, i) => (r[3] ? i : -1)).filter((i) => i >= 0);
  return {
    numRows: rows.length,
    tokens: Int32Array.from(rows.map((r) => r[2])),
    positions: Int32Array.from(rows.map((r) => r[1])),
    seqs: Int32Array.from(rows.map((r) => r[0])),
    logitRows: Int32Array.from(logitRows),
    numLogitRows: logitRows.length,
  };
}

function assertClose(actual: Float32Array, expected: number[], what: string): void {
  const scale = Math.max(1, ...expected.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  assert.ok(worst <= 2e-3 * scale, `${what}: max |diff| ${worst} > ${2e-3 * scale}`);
}

for (const [label, overrides] of [
  ['llama (normal rope, GQA, untied)', {}],
  ['qwen2 (neox rope, qkv bias, tied output)', { architecture: 'qwen2', tiedOutput: true }],
  ['llama3 rope_freqs + linear rope scale', { hasRopeFreqs: true, ropeScale: 2, ropeFreqBase: 500000 }],
  ['qwen3 (per-head q/k norm, head dim 32 on a 64 residual)', { architecture: 'qwen3', headDim: 32, tiedOutput: true }],
  ['smollm3 (no rope in layer 3)', { architecture: 'smollm3', numLayers: 4 }],
  ['gemma2 (post-norms, GEGLU, soft-caps, window 3 on even layers)', {
    architecture: 'gemma2', headDim: 32, tiedOutput: true, numLayers: 3,
    attnSoftcap: 5, finalSoftcap: 3, slidingWindow: 3, isLocal: [true, false, true], ropeBaseLocal: 10000, queryScale: Math.fround(1 / Math.sqrt(32)),
  }],
  ['gemma3 (q/k norms, local base 10000 unscaled, global linear scale 2, window 4)', {
    architecture: 'gemma3', tiedOutput: true, numLayers: 3, ropeFreqBase: 1e6, ropeScale: 2,
    attnSoftcap: 0, finalSoftcap: 0, slidingWindow: 4, isLocal: [true, true, false], ropeBaseLocal: 10000, queryScale: Math.fround(1 / Math.sqrt(16)),
  }],
  ['phi3 (fused qkv and gate|up, long factors: context 64 > original 32, attn_factor 1.2, 12 of 16 dims rotated)', {
    architecture: 'phi3', ropeDim: 12, ropeOriginalContext: 32, ropeAttnFactor: 1.2,
  }],
  ['phi3 (short factors: context 64 <= original 64, GQA)', {
    architecture: 'phi3', ropeOriginalContext: 64, ropeAttnFactor: 1,
  }],
] as const) {
  test(`forward matches the naive reference: ${label}`, () => {
    // rotate whole heads unless the case says otherwise (partial rotary)
    const c: ModelConfig = { ...base, ...overrides, ropeDim: 'ropeDim' in overrides ? overrides.ropeDim : (overrides as Partial<ModelConfig>).headDim ?? base.headDim };
    const { store, w } = makeStore(c, 1234);
    const kv = makeKv({ numLayers: c.numLayers, kvDim: c.numKvHeads * c.headDim, maxContext: c.contextLength });
    const model = createTransformer(c, store, kv, { maxRows: 16, maxLogitRows: 8 });
    const promptA = [3, 17, 42, 8, 9, 21, 33];
    const promptB = [5, 11, 48];
    const refA = new Reference(c, w);
    const refB = new Reference(c, w);
    const expA = promptA.map((t) => refA.step(t));
    const expB = promptB.map((t) => refB.step(t));
    const V = c.vocabSize;

    // Step 1: A's first 4 tokens (logits for all) and B's whole prompt (last logits) in one batch.
    let logits = model.forward(batchOf([
      ...promptA.slice(0, 4).map((t, p) => [1, p, t, true] as [number, number, number, boolean]),
      ...promptB.map((t, p) => [2, p, t, p === promptB.length - 1] as [number, number, number, boolean]),
    ]));
    for (let p = 0; p < 4; p++) assertClose(logits.subarray(p * V, (p + 1) * V), expA[p]!, `A pos ${p}`);
    assertClose(logits.subarray(4 * V, 5 * V), expB[2]!, 'B last');

    // Step 2: the rest of A's prompt (chunked prefill) next to a decode row of B.
    const nextB = 7;
    const expB3 = refB.step(nextB);
    logits = model.forward(batchOf([
      [2, 3, nextB, true],
      ...promptA.slice(4).map((t, i) => [1, 4 + i, t, i === promptA.length - 5] as [number, number, number, boolean]),
    ]));
    assertClose(logits.subarray(0, V), expB3, 'B decode');
    assertClose(logits.subarray(V, 2 * V), expA[promptA.length - 1]!, 'A last after chunked prefill');

    // Step 3: a lone decode row of A: the same as the reference's next step.
    const expA7 = refA.step(13);
    logits = model.forward(batchOf([[1, 7, 13, true]]));
    assertClose(logits, expA7, 'A decode');
  });
}
