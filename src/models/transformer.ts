/**
 * The decoder-only transformer forward pass shared by the llama family and qwen2
 * (pre-norm RMSNorm, rotary attention with grouped KV heads, SwiGLU FFN).
 *
 * Three structures, three lifetimes (llama2.c): ModelConfig (hyperparameters), the
 * WeightStore (weights, acquired per layer), RunState (scratch for a max batch, allocated once).
 *
 * A forward pass takes a batch of rows (sequence, position, token). Matmuls run over all rows
 * at once; attention runs per sequence over that sequence's contiguous K/V from the KvCache
 * (the rows of one sequence are consecutive in the batch). Logits are computed only for the
 * rows that ask for them.
 */
import type { ModelConfig } from './config.js';
import type { WeightStore, WeightTensor } from '../weights/store.js';
import type { KvCache } from '../kv/cache.js';
import { GgmlType } from '../gguf/ggml-type.js';
import { matmul, rmsNorm, rope, storeKv, attention, siluMul, add, addBias } from '../native/index.js';

/** One forward pass's input. Arrays may be longer than numRows; only [0, numRows) is read. */
export interface Batch {
  numRows: number;
  /** Token id of each row. [numRows] */
  tokens: Int32Array;
  /** Position of each row in its sequence. [numRows] */
  positions: Int32Array;
  /** KV sequence id of each row; rows of one sequence are consecutive. [numRows] */
  seqs: Int32Array;
  /** Rows whose logits are wanted, ascending. [numLogitRows] */
  logitRows: Int32Array;
  numLogitRows: number;
}

/** Scratch memory of the forward pass, sized for maxRows rows and maxLogitRows logit rows. */
class RunState {
  x: Float32Array; // [maxRows, dim] residual stream
  xb: Float32Array; // [maxRows, dim] normed input / projection output
  q: Float32Array; // [maxRows, numHeads * headDim]
  k: Float32Array; // [maxRows, kvDim]
  v: Float32Array; // [maxRows, kvDim]
  att: Float32Array; // [maxRows, numHeads * headDim] attention output
  hb: Float32Array; // [maxRows, ffnDim] gate, then silu(gate) * up
  hb2: Float32Array; // [maxRows, ffnDim] up
  xLogit: Float32Array; // [maxLogitRows, dim] hidden states of the rows that need logits
  logits: Float32Array; // [maxLogitRows, vocab]

  constructor(c: ModelConfig, maxRows: number, maxLogitRows: number) {
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    this.x = new Float32Array(maxRows * c.dim);
    this.xb = new Float32Array(maxRows * c.dim);
    this.q = new Float32Array(maxRows * qDim);
    this.k = new Float32Array(maxRows * kvDim);
    this.v = new Float32Array(maxRows * kvDim);
    this.att = new Float32Array(maxRows * qDim);
    this.hb = new Float32Array(maxRows * c.ffnDim);
    this.hb2 = new Float32Array(maxRows * c.ffnDim);
    this.xLogit = new Float32Array(maxLogitRows * c.dim);
    this.logits = new Float32Array(maxLogitRows * c.vocabSize);
  }
}

/** Views of one sequence's consecutive rows [start, start + n) in the scratch buffers. */
interface SeqRun {
  seq: number;
  n: number;
  positions: Int32Array; // [n]
  q: Float32Array; // [n, qDim]
  k: Float32Array; // [n, kvDim]
  v: Float32Array; // [n, kvDim]
  att: Float32Array; // [n, qDim]
}

/** F32 view of an F32 tensor's bytes (copied once if the bytes are not 4-aligned). */
const f32Views = new WeakMap<Uint8Array, Float32Array>();
function f32(t: WeightTensor): Float32Array {
  let view = f32Views.get(t.data);
  if (!view) {
    if (t.type !== GgmlType.F32) throw new TypeError(`tensor '${t.name}' must be f32 (norms, biases, rope factors)`);
    const d = t.data;
    view = d.byteOffset % 4 === 0 ? new Float32Array(d.buffer, d.byteOffset, d.byteLength / 4) : new Float32Array(d.slice().buffer);
    f32Views.set(t.data, view);
  }
  return view;
}

/** A decoder-only transformer bound to its weights and KV cache. */
export class Transformer {
  readonly config: ModelConfig;
  readonly maxRows: number;
  readonly maxLogitRows: number;
  private readonly weights: WeightStore;
  private readonly kv: KvCache;
  private readonly s: RunState;
  private readonly freqFactors: Float32Array | null;

  constructor(config: ModelConfig, weights: WeightStore, kv: KvCache, options: { maxRows: number; maxLogitRows: number }) {
    this.config = config;
    this.weights = weights;
    this.kv = kv;
    this.maxRows = options.maxRows;
    this.maxLogitRows = options.maxLogitRows;
    this.s = new RunState(config, options.maxRows, options.maxLogitRows);
    // llama3 rope scaling: per-frequency divisors stored in the file. [headDim / 2]
    const rf = config.hasRopeFreqs ? weights.global('rope_freqs.weight') : undefined;
    this.freqFactors = rf ? f32(rf).slice() : null;
  }

  /** Bytes of scratch memory a Transformer with these limits allocates (for the memory budget). */
  static scratchBytes(c: ModelConfig, maxRows: number, maxLogitRows: number): number {
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const perRow = 2 * c.dim + 2 * qDim + 2 * kvDim + 2 * c.ffnDim;
    return 4 * (maxRows * perRow + maxLogitRows * (c.dim + c.vocabSize));
  }

  /**
   * Runs the batch through the model: writes each row's K/V into the cache at its position and
   * returns the logits of batch.logitRows, a view into scratch memory valid until the next
   * call. [numLogitRows, vocab]
   */
  forward(batch: Batch): Float32Array {
    const c = this.config;
    const s = this.s;
    const m = batch.numRows;
    if (m < 1 || m > this.maxRows) throw new RangeError(`batch of ${m} rows; this model runs 1..${this.maxRows}`);
    if (batch.numLogitRows > this.maxLogitRows) throw new RangeError(`${batch.numLogitRows} logit rows; at most ${this.maxLogitRows}`);
    const dim = c.dim;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const eps = c.rmsEps;
    const freqScale = 1 / c.ropeScale;
    // llama.cpp's kq_scale = 1.0f / sqrtf(headDim), rounded in f32 at each step (1 / Math.sqrt in
    // double differs by an ulp for 242 of headDim 1..1024, e.g. 96 and 112).
    const scale = Math.fround(1 / Math.fround(Math.sqrt(c.headDim)));
    const runs = this.splitRuns(batch);

    // token embeddings: x = token_embd[tokens]  [m, dim]
    this.weights.embed(batch.tokens.subarray(0, m), s.x);

    for (let l = 0; l < c.numLayers; l++) {
      const w = this.weights.acquire(l);

      // attention rmsnorm: xb = rmsnorm(x) * attn_norm  [m, dim]
      rmsNorm(s.xb, s.x, f32(w.get('attn_norm.weight')), m, dim, eps);

      // qkv projections: q = xb·Wq^T [m, qDim], k = xb·Wk^T, v = xb·Wv^T [m, kvDim]
      const wq = w.get('attn_q.weight');
      const wk = w.get('attn_k.weight');
      const wv = w.get('attn_v.weight');
      matmul(s.q, wq.data, wq.type, qDim, dim, s.xb, m);
      matmul(s.k, wk.data, wk.type, kvDim, dim, s.xb, m);
      matmul(s.v, wv.data, wv.type, kvDim, dim, s.xb, m);
      if (c.qkvBias) {
        // qwen2: q += bq, k += bk, v += bv
        addBias(s.q, f32(w.get('attn_q.bias')), m, qDim);
        addBias(s.k, f32(w.get('attn_k.bias')), m, kvDim);
        addBias(s.v, f32(w.get('attn_v.bias')), m, kvDim);
      }

      // rotary position embedding on q and k, each row at its own position
      rope(s.q, m, c.numHeads, c.headDim, batch.positions, c.ropeMode, c.ropeFreqBase, freqScale, this.freqFactors);
      rope(s.k, m, c.numKvHeads, c.headDim, batch.positions, c.ropeMode, c.ropeFreqBase, freqScale, this.freqFactors);

      // per sequence: append the rows' k, v to its cache, then causal attention over [0, pos]
      for (const r of runs) {
        const keys = this.kv.keys(r.seq, l); // [maxContext, kvDim] f16
        const values = this.kv.values(r.seq, l); // [maxContext, kvDim] f16
        storeKv(keys, r.k, r.n, kvDim, r.positions);
        storeKv(values, r.v, r.n, kvDim, r.positions);
        attention(r.att, r.q, keys, values, r.n, r.positions, c.numHeads, c.numKvHeads, c.headDim, scale);
      }

      // output projection and residual: x += att·Wo^T  [m, dim]
      const wo = w.get('attn_output.weight');
      matmul(s.xb, wo.data, wo.type, dim, qDim, s.att, m);
      add(s.x, s.x, s.xb, m * dim);

      // ffn rmsnorm: xb = rmsnorm(x) * ffn_norm  [m, dim]
      rmsNorm(s.xb, s.x, f32(w.get('ffn_norm.weight')), m, dim, eps);

      // SwiGLU: hb = silu(xb·Wgate^T) * (xb·Wup^T)  [m, ffnDim]
      const wg = w.get('ffn_gate.weight');
      const wu = w.get('ffn_up.weight');
      matmul(s.hb, wg.data, wg.type, c.ffnDim, dim, s.xb, m);
      matmul(s.hb2, wu.data, wu.type, c.ffnDim, dim, s.xb, m);
      siluMul(s.hb, s.hb, s.hb2, m * c.ffnDim);

      // down projection and residual: x += hb·Wdown^T  [m, dim]
      const wd = w.get('ffn_down.weight');
      matmul(s.xb, wd.data, wd.type, dim, c.ffnDim, s.hb, m);
      add(s.x, s.x, s.xb, m * dim);

      this.weights.release(l);
    }

    // gather the rows that need logits: xLogit = x[logitRows]  [numLogitRows, dim]
    const nl = batch.numLogitRows;
    if (nl === 0) return s.logits.subarray(0, 0);
    for (let i = 0; i < nl; i++) {
      const row = batch.logitRows[i]!;
      s.xLogit.set(s.x.subarray(row * dim, (row + 1) * dim), i * dim);
    }

    // final rmsnorm and classifier: logits = rmsnorm(xLogit)·Wout^T  [numLogitRows, vocab]
    rmsNorm(s.xLogit, s.xLogit, f32(this.global('output_norm.weight')), nl, dim, eps);
    const wout = c.tiedOutput ? this.global('token_embd.weight') : this.global('output.weight');
    matmul(s.logits, wout.data, wout.type, c.vocabSize, dim, s.xLogit, nl);
    return s.logits.subarray(0, nl * c.vocabSize);
  }

  private global(name: string): WeightTensor {
    const t = this.weights.global(name);
    if (!t) throw new Error(`weight store has no tensor '${name}'`);
    return t;
  }

  /** Splits the batch into runs of consecutive rows of one sequence, with scratch views. */
  private splitRuns(batch: Batch): SeqRun[] {
    const c = this.config;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const s = this.s;
    const runs: SeqRun[] = [];
    let start = 0;
    for (let i = 1; i <= batch.numRows; i++) {
      if (i < batch.numRows && batch.seqs[i] === batch.seqs[start]) continue;
      const n = i - start;
      runs.push({
        seq: batch.seqs[start]!,
        n,
        positions: batch.positions.subarray(start, i),
        q: s.q.subarray(start * qDim, i * qDim),
        k: s.k.subarray(start * kvDim, i * kvDim),
        v: s.v.subarray(start * kvDim, i * kvDim),
        att: s.att.subarray(start * qDim, i * qDim),
      });
      start = i;
    }
    return runs;
  }
}
