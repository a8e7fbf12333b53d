/**
 * What every decoder-only architecture shares: the batch it runs, its scratch memory, and the
 * parts of a forward pass that do not depend on the architecture (token embedding rows, the
 * split of a batch into per-sequence runs, gathering the rows that need logits and the
 * classifier). Each architecture is one file (llama.ts, qwen2.ts, ...) whose forward() reads
 * like its math over the blocks in blocks/ (norms, attention, gated FFNs).
 *
 * Three structures, three lifetimes (llama2.c): ModelConfig (hyperparameters), the
 * WeightStore (weights, acquired per layer), RunState (scratch for a max batch, allocated once).
 *
 * A forward pass takes a batch of rows (sequence, position, token). Matmuls run over all rows
 * at once; attention runs per sequence over that sequence's K/V from the KvCache (the rows of
 * one sequence are consecutive in the batch). Logits are computed only for the rows that ask
 * for them.
 */
import type { ModelConfig } from './config.js';
import type { WeightStore, WeightTensor } from '../weights/store.js';
import type { KvCache } from '../kv/cache.js';
import { linear } from './blocks/linear.js';
import { OUTPUT_TEMP_ROWS } from '../weights/output-slices.js';
import { MoeFeedForward } from './moe.js';

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
export class RunState {
  x: Float32Array; // [maxRows, dim] residual stream
  xb: Float32Array; // [maxRows, dim] normed input / projection output
  q: Float32Array; // [maxRows, numHeads * headDim]
  k: Float32Array; // [maxRows, kvDim]
  v: Float32Array; // [maxRows, kvDim]
  att: Float32Array; // [maxRows, numHeads * headDim] attention output
  hb: Float32Array; // [maxRows, ffnDim] gate, then act(gate) * up
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

  /** Bytes a RunState with these limits allocates (for the memory budget). */
  static bytes(c: ModelConfig, maxRows: number, maxLogitRows: number): number {
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const perRow = 2 * c.dim + 2 * qDim + 2 * kvDim + 2 * c.ffnDim;
    return 4 * (maxRows * perRow + maxLogitRows * (c.dim + c.vocabSize));
  }
}

/** Views of one sequence's consecutive rows [start, start + n) in the scratch buffers. */
export interface SeqRun {
  seq: number;
  n: number;
  positions: Int32Array; // [n]
  q: Float32Array; // [n, qDim]
  k: Float32Array; // [n, kvDim]
  v: Float32Array; // [n, kvDim]
  att: Float32Array; // [n, qDim]
}

/** Limits of one model instance's batches. */
export interface TransformerOptions {
  maxRows: number;
  maxLogitRows: number;
}

/**
 * A decoder-only transformer bound to its weights and KV cache. Architectures subclass it and
 * write forward(); the helpers below are the steps every one of them takes the same way.
 */
export abstract class Transformer {
  readonly config: ModelConfig;
  readonly maxRows: number;
  readonly maxLogitRows: number;
  protected readonly weights: WeightStore;
  protected readonly kv: KvCache;
  protected readonly s: RunState;

  constructor(config: ModelConfig, weights: WeightStore, kv: KvCache, options: TransformerOptions) {
    this.config = config;
    this.weights = weights;
    this.kv = kv;
    this.maxRows = options.maxRows;
    this.maxLogitRows = options.maxLogitRows;
    this.s = new RunState(config, options.maxRows, options.maxLogitRows);
  }

  /** Bytes of scratch memory a Transformer with these limits allocates (for the memory budget). */
  static scratchBytes(c: ModelConfig, maxRows: number, maxLogitRows: number): number {
    return RunState.bytes(c, maxRows, maxLogitRows) + MoeFeedForward.scratchBytes(c, maxRows);
  }

  /**
   * Runs the batch through the model: writes each row's K/V into the cache at its position and
   * returns the logits of batch.logitRows, a view into scratch memory valid until the next
   * call. [numLogitRows, vocab]
   */
  abstract forward(batch: Batch): Float32Array;

  /**
   * The final-normed hidden states the last forward() computed logits from (its logit rows):
   * the model's embeddings of those rows. A view into scratch memory. [numLogitRows, dim]
   */
  hiddenStates(numLogitRows: number): Float32Array {
    return this.s.xLogit.subarray(0, numLogitRows * this.config.dim);
  }

  /** Checks the batch against the limits and splits it into per-sequence runs. */
  protected begin(batch: Batch): SeqRun[] {
    const m = batch.numRows;
    if (m < 1 || m > this.maxRows) throw new RangeError(`batch of ${m} rows; this model runs 1..${this.maxRows}`);
    if (batch.numLogitRows > this.maxLogitRows) throw new RangeError(`${batch.numLogitRows} logit rows; at most ${this.maxLogitRows}`);
    return this.splitRuns(batch);
  }

  /** Token embeddings: x = token_embd[tokens]  [m, dim] */
  protected embed(batch: Batch): void {
    this.weights.embed(batch.tokens.subarray(0, batch.numRows), this.s.x);
  }

  /**
   * The classifier over the rows that want logits: xLogit = x[logitRows], then `finalNorm`
   * on them in place, then logits = xLogit·Wout^T (output.weight, or token_embd when tied).
   * Returns [numLogitRows, vocab].
   */
  protected head(batch: Batch, finalNorm: (x: Float32Array, rows: number) => void): Float32Array {
    const c = this.config;
    const s = this.s;
    const nl = batch.numLogitRows;
    if (nl === 0) return s.logits.subarray(0, 0);
    for (let i = 0; i < nl; i++) {
      const row = batch.logitRows[i]!;
      s.xLogit.set(s.x.subarray(row * c.dim, (row + 1) * c.dim), i * c.dim);
    }
    finalNorm(s.xLogit, nl);
    const sliced = this.weights.outputSlices;
    if (!sliced) {
      linear(s.logits, c.tiedOutput ? this.global('token_embd.weight') : this.global('output.weight'), s.xLogit, nl);
      return s.logits.subarray(0, nl * c.vocabSize);
    }
    // Streamed in row slices: each slice gives its rows' logits; one logit row is written in
    // place, more go through the slice's temp (OUTPUT_TEMP_ROWS rows per multiplication).
    sliced.forEach((rowStart, w, temp) => {
      const n = w.dims[1]!;
      if (nl === 1) {
        linear(s.logits.subarray(rowStart, rowStart + n), w, s.xLogit, 1);
        return;
      }
      for (let r0 = 0; r0 < nl; r0 += OUTPUT_TEMP_ROWS) {
        const m = Math.min(OUTPUT_TEMP_ROWS, nl - r0);
        linear(temp, w, s.xLogit.subarray(r0 * c.dim, (r0 + m) * c.dim), m);
        for (let i = 0; i < m; i++) s.logits.set(temp.subarray(i * n, (i + 1) * n), (r0 + i) * c.vocabSize + rowStart);
      }
    });
    return s.logits.subarray(0, nl * c.vocabSize);
  }

  /** A tensor outside the blocks; a missing one is a bug (the registry checked the file). */
  protected global(name: string): WeightTensor {
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
      runs.push({
        seq: batch.seqs[start]!,
        n: i - start,
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
