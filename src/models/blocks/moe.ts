/**
 * Mixture-of-Experts FFN (llama.cpp's build_moe_ffn with softmax gating and renormalised
 * weights, the form of qwen3moe and Mixtral):
 *
 *   probs   = softmax(x · Wrouter^T)                       [m, E]   over all experts
 *   ids, w  = top-k(probs), w / sum(w)                     [m, k]
 *   e_ij    = Wdown_e · (silu(Wgate_e · x_i) * Wup_e · x_i)   for e = ids[i, j]
 *   out_i   = sum_j w_ij * e_ij                            [m, dim]
 *
 * Rows are grouped by expert: each expert's matmuls run once over all rows routed to it
 * (matmulId), and the experts come from the weight store's ExpertWeights, which may read them
 * from storage into its cache in waves. The result of a row never depends on the other rows of
 * the batch (row-invariant kernels, per-row routing and sums).
 */
import type { ExpertWeights, WeightTensor } from '../../weights/store.js';
import type { MoeConfig } from '../config.js';
import { matmulId, moeCombine, moeRoute, rmsNorm as rmsNormKernel, siluMul } from '../../native/index.js';
import { f32, linear } from './linear.js';

/** Scratch of the MoE block for maxRows rows (allocated once per model). */
export class MoeScratch {
  probs: Float32Array; // [maxRows, E] router logits, then probabilities
  ids: Int32Array; // [maxRows * k] routed experts
  weights: Float32Array; // [maxRows * k]
  hg: Float32Array; // [maxRows * k, ffnExp] gate, then silu(gate) * up, of one wave
  hu: Float32Array; // [maxRows * k, ffnExp] up of one wave
  pairOut: Float32Array; // [maxRows * k, dim] down projection of every (row, j)
  order: Int32Array; // [maxRows * k] pair indices sorted by expert
  starts: Int32Array; // [E + 1] each expert's range in `order`
  waveIn: Int32Array; // [maxRows * k] x row of each pair of a wave
  wavePair: Int32Array; // [maxRows * k] pair index of each pair of a wave
  waveStarts: Int32Array; // [E + 1]
  iota: Int32Array; // [maxRows * k] 0, 1, 2, ...
  xPred: Float32Array; // [PREDICT_MAX_ROWS, dim] next layer's normed input (prediction)
  predProbs: Float32Array; // [PREDICT_MAX_ROWS, E]

  constructor(c: MoeConfig, dim: number, maxRows: number) {
    const pairs = maxRows * c.numExpertsUsed;
    this.probs = new Float32Array(maxRows * c.numExperts);
    this.ids = new Int32Array(pairs);
    this.weights = new Float32Array(pairs);
    this.hg = new Float32Array(pairs * c.expertFfnDim);
    this.hu = new Float32Array(pairs * c.expertFfnDim);
    this.pairOut = new Float32Array(pairs * dim);
    this.order = new Int32Array(pairs);
    this.starts = new Int32Array(c.numExperts + 1);
    this.waveIn = new Int32Array(pairs);
    this.wavePair = new Int32Array(pairs);
    this.waveStarts = new Int32Array(c.numExperts + 1);
    this.iota = Int32Array.from({ length: pairs }, (_, i) => i);
    const pr = Math.min(maxRows, PREDICT_MAX_ROWS);
    this.xPred = new Float32Array(pr * dim);
    this.predProbs = new Float32Array(pr * c.numExperts);
  }

  /** Bytes a MoeScratch of these limits allocates (for the memory budget). */
  static bytes(c: MoeConfig, dim: number, maxRows: number): number {
    const pairs = maxRows * c.numExpertsUsed;
    const pr = Math.min(maxRows, PREDICT_MAX_ROWS);
    return 4 * (maxRows * c.numExperts + 5 * pairs + 2 * pairs * c.expertFfnDim + pairs * dim + 2 * (c.numExperts + 1) + pairs + pr * (dim + c.numExperts));
  }
}

/**
 * Batches of more rows than this predict "every expert" for the next layer (their union covers
 * most experts anyway) instead of running the next router over every row.
 */
export const PREDICT_MAX_ROWS = 16;

/**
 * The MoE FFN of `layer` over m rows: out = sum_j w_ij * expert_ij(x_i). `x` is the normed
 * input [m, dim] and may be `out`. `ahead` predicts later layers' experts (for prefetch).
 */
export function moeFfn(
  out: Float32Array,
  x: Float32Array,
  m: number,
  layer: number,
  router: WeightTensor,
  experts: ExpertWeights,
  c: MoeConfig,
  dim: number,
  s: MoeScratch,
  ahead?: readonly { layer: number; experts: Int32Array }[],
): void {
  const E = c.numExperts;
  const k = c.numExpertsUsed;
  const ff = c.expertFfnDim;
  // router: probs = softmax(x · Wrouter^T), top-k, renormalised weights  [m, E] -> [m, k]
  linear(s.probs, router, x, m);
  moeRoute(s.probs, m, E, k, s.ids, s.weights, true);
  if (c.weightsScale !== 0 && c.weightsScale !== 1) for (let i = 0; i < m * k; i++) s.weights[i] = Math.fround(s.weights[i]! * c.weightsScale);

  // group the (row, j) pairs by expert: order = pairs sorted by expert, starts = ranges
  const starts = s.starts;
  starts.fill(0);
  for (let p = 0; p < m * k; p++) starts[s.ids[p]! + 1]!++;
  for (let e = 0; e < E; e++) starts[e + 1]! += starts[e]!;
  const fill = s.waveStarts; // reused as a cursor here
  fill.set(starts);
  for (let p = 0; p < m * k; p++) s.order[fill[s.ids[p]!]!++] = p;
  let numUsed = 0;
  for (let e = 0; e < E; e++) if (starts[e + 1]! > starts[e]!) numUsed++;
  const used = new Int32Array(numUsed);
  for (let e = 0, i = 0; e < E; e++) if (starts[e + 1]! > starts[e]!) used[i++] = e;

  // experts, wave by wave: e_ij = Wdown · (silu(Wgate · x_i) * Wup · x_i) into pairOut[i * k + j]
  experts.useExperts(
    layer,
    used,
    (wave, tensors) => {
      let n = 0;
      const ws: { gate: Uint8Array[]; up: Uint8Array[]; down: Uint8Array[] } = { gate: [], up: [], down: [] };
      s.waveStarts[0] = 0;
      wave.forEach((e, g) => {
        for (let q = starts[e]!; q < starts[e + 1]!; q++) {
          const pair = s.order[q]!;
          s.waveIn[n] = Math.floor(pair / k);
          s.wavePair[n++] = pair;
        }
        s.waveStarts[g + 1] = n;
        const t = tensors[g]!;
        ws.gate.push(t.gate.data);
        ws.up.push(t.up.data);
        ws.down.push(t.down.data);
      });
      const t0 = tensors[0]!;
      const waveStarts = s.waveStarts.subarray(0, wave.length + 1);
      // hg = x · Wgate^T, hu = x · Wup^T  [n, ff]; hg = silu(hg) * hu
      matmulId(s.hg, ws.gate, t0.gate.type, ff, dim, x, s.waveIn, null, waveStarts);
      matmulId(s.hu, ws.up, t0.up.type, ff, dim, x, s.waveIn, null, waveStarts);
      siluMul(s.hg, s.hg, s.hu, n * ff);
      // pairOut[pair] = hg · Wdown^T  [n, dim] scattered to the pairs' rows
      matmulId(s.pairOut, ws.down, t0.down.type, dim, ff, s.hg, s.iota, s.wavePair, waveStarts);
    },
    ahead,
  );

  // weighted sum in top-k order: out_i = ((w_i0 e_i0 + w_i1 e_i1) + ...)  [m, dim]
  moeCombine(out, s.pairOut, s.weights, m, k, dim);
}

/**
 * The experts layer `layer` is expected to route the batch to, from the hidden state `h`
 * [m, dim] before this layer's FFN: that layer's ffn_norm and router applied to `h` (the
 * residual stream changes little from one layer to the next), union over rows of the top k.
 */
export function predictExperts(h: Float32Array, m: number, layer: number, experts: ExpertWeights, c: MoeConfig, dim: number, eps: number, s: MoeScratch): Int32Array {
  const E = c.numExperts;
  const k = c.numExpertsUsed;
  if (m > PREDICT_MAX_ROWS || m * k >= 2 * E) return Int32Array.from({ length: E }, (_, e) => e);
  const { norm, gateInp } = experts.router(layer);
  rmsNormKernel(s.xPred, h, f32(norm), m, dim, eps);
  linear(s.predProbs, gateInp, s.xPred, m);
  const predIds = new Int32Array(m * k);
  const predW = new Float32Array(m * k);
  moeRoute(s.predProbs, m, E, k, predIds, predW, false);
  const seen = new Uint8Array(E);
  for (const e of predIds) seen[e] = 1;
  const out: number[] = [];
  for (let e = 0; e < E; e++) if (seen[e]) out.push(e);
  return Int32Array.from(out);
}
