/**
 * Per-architecture parts of a synthetic model: the tensors of one block and the metadata keys
 * only some architectures have, as llama.cpp's converter writes them. plan.ts owns the types
 * (quant mixes) and the order of the file; this file owns which tensors a block has.
 */
import { gv, type GgufValue } from '../gguf/value.js';
import { longRopeAttnFactor, longRopeFactors, type SynthPreset } from './presets.js';

/** How plan.ts adds a tensor: a 2-D weight (typed by the mix) or an f32 vector. */
export interface TensorSink {
  /** dims in ggml order [nIn, nOut] (or [nIn, nOut, experts]); values ~ N(0, std^2), row r times rowScale[r]. */
  matrix(name: string, role: string, layer: number, dims: number[], std: number, rowScale?: Float32Array): void;
  /** n f32 values ~ N(mean, std^2). */
  vector(name: string, n: number, mean: number, std: number): void;
}

/** attention.key_length: the preset's headDim, or dim / nHeads. */
export function headDimOf(p: SynthPreset): number {
  return p.headDim ?? p.dim / p.nHeads;
}

/**
 * The tensors of block `layer`. Initialization keeps activations O(1) (see planSynth): the
 * residual-writing matrices (attn_output, ffn_down) are scaled by 1 / sqrt(2 * layers).
 */
export function addLayerTensors(p: SynthPreset, layer: number, t: TensorSink): void {
  const headDim = headDimOf(p);
  const qDim = headDim * p.nHeads;
  const kvDim = headDim * p.nKvHeads;
  const residualStd = 1 / Math.sqrt(2 * p.nLayers);
  const b = `blk.${layer}`;
  t.vector(`${b}.attn_norm.weight`, p.dim, 1, 0.02);
  if (p.arch === 'phi3') {
    // q, k, v fused in attn_qkv [dim, qDim + 2 kvDim]; gate and up fused in ffn_up [dim, 2 ffn] (gate first)
    t.matrix(`${b}.attn_qkv.weight`, 'attn_qkv', layer, [p.dim, qDim + 2 * kvDim], 1 / Math.sqrt(p.dim));
    t.matrix(`${b}.attn_output.weight`, 'attn_output', layer, [qDim, p.dim], residualStd / Math.sqrt(qDim));
    t.vector(`${b}.ffn_norm.weight`, p.dim, 1, 0.02);
    t.matrix(`${b}.ffn_up.weight`, 'ffn_up', layer, [p.dim, 2 * p.ffn], 1 / Math.sqrt(p.dim));
    t.matrix(`${b}.ffn_down.weight`, 'ffn_down', layer, [p.ffn, p.dim], residualStd / Math.sqrt(p.ffn));
    return;
  }
  t.matrix(`${b}.attn_q.weight`, 'attn_q', layer, [p.dim, qDim], 1 / Math.sqrt(p.dim));
  t.matrix(`${b}.attn_k.weight`, 'attn_k', layer, [p.dim, kvDim], 1 / Math.sqrt(p.dim));
  t.matrix(`${b}.attn_v.weight`, 'attn_v', layer, [p.dim, kvDim], 1 / Math.sqrt(p.dim));
  if (p.qkvBias) {
    t.vector(`${b}.attn_q.bias`, qDim, 0, 0.1);
    t.vector(`${b}.attn_k.bias`, kvDim, 0, 0.1);
    t.vector(`${b}.attn_v.bias`, kvDim, 0, 0.1);
  }
  if (p.arch === 'qwen3' || p.arch === 'qwen3moe' || p.arch === 'gemma3') {
    // per-head q/k RMSNorm weights [headDim]
    t.vector(`${b}.attn_q_norm.weight`, headDim, 1, 0.02);
    t.vector(`${b}.attn_k_norm.weight`, headDim, 1, 0.02);
  }
  const gemma = p.arch === 'gemma2' || p.arch === 'gemma3';
  t.matrix(`${b}.attn_output.weight`, 'attn_output', layer, [qDim, p.dim], residualStd / Math.sqrt(qDim));
  if (gemma) t.vector(`${b}.post_attention_norm.weight`, p.dim, 1, 0.02);
  t.vector(`${b}.ffn_norm.weight`, p.dim, 1, 0.02);
  if (p.moe) {
    // router [dim, E] (f32: llama.cpp never quantizes ffn_gate_inp) and the experts stacked
    // [dim, ffn, E] / [ffn, dim, E], typed by the mix like their dense counterparts
    const { experts: E, ffn } = p.moe;
    t.matrix(`${b}.ffn_gate_inp.weight`, 'ffn_gate_inp', layer, [p.dim, E], 1 / Math.sqrt(p.dim), p.moe.routerSkew ? routerRowScale(E, p.moe.routerSkew, layer) : undefined);
    t.matrix(`${b}.ffn_gate_exps.weight`, 'ffn_gate', layer, [p.dim, ffn, E], 1 / Math.sqrt(p.dim));
    t.matrix(`${b}.ffn_up_exps.weight`, 'ffn_up', layer, [p.dim, ffn, E], 1 / Math.sqrt(p.dim));
    t.matrix(`${b}.ffn_down_exps.weight`, 'ffn_down', layer, [ffn, p.dim, E], residualStd / Math.sqrt(ffn));
    return;
  }
  t.matrix(`${b}.ffn_gate.weight`, 'ffn_gate', layer, [p.dim, p.ffn], 1 / Math.sqrt(p.dim));
  t.matrix(`${b}.ffn_up.weight`, 'ffn_up', layer, [p.dim, p.ffn], 1 / Math.sqrt(p.dim));
  t.matrix(`${b}.ffn_down.weight`, 'ffn_down', layer, [p.ffn, p.dim], residualStd / Math.sqrt(p.ffn));
  if (gemma) t.vector(`${b}.post_ffw_norm.weight`, p.dim, 1, 0.02);
}

/** Tensors outside the blocks an architecture adds (before token_embd): phi3's rope factors. */
export function addGlobalTensors(p: SynthPreset, add: (name: string, values: Float32Array) => void): void {
  if (p.longRope) {
    const f = longRopeFactors(p.ropeDim ?? headDimOf(p));
    add('rope_factors_long.weight', f.long);
    add('rope_factors_short.weight', f.short);
  }
}

/**
 * Synthetic routing skew: expert e's router row scaled by (1 + rank_e)^-s (rank: a fixed
 * permutation per layer), normalised to a mean square of 1. A router logit x · w_e then has a
 * spread proportional to the scale, and top-k picks the wide ones more often: popular experts,
 * as measured in real MoE models (the popularity this gives is measured, never assumed: runs
 * on such files are labelled synthetic skew). s = 0: uniform routing.
 */
export function routerRowScale(E: number, s: number, layer: number): Float32Array {
  // A permutation of the experts per layer from a small LCG seeded by the layer.
  const rank = Array.from({ length: E }, (_, i) => i);
  let x = (layer * 2654435761 + 12345) >>> 0;
  for (let i = E - 1; i > 0; i--) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const j = x % (i + 1);
    [rank[i], rank[j]] = [rank[j]!, rank[i]!];
  }
  const raw = rank.map((r) => Math.pow(1 + r, -s));
  const rms = Math.sqrt(raw.reduce((a, v) => a + v * v, 0) / E);
  return Float32Array.from(raw, (v) => v / rms);
}

/** Metadata keys beyond the common ones (`{arch}.` prefixed). */
export function archMetadata(p: SynthPreset): Array<[string, GgufValue]> {
  const a = p.arch;
  const m: Array<[string, GgufValue]> = [];
  if (p.headDim !== undefined) {
    m.push([`${a}.attention.key_length`, gv.u32(p.headDim)], [`${a}.attention.value_length`, gv.u32(p.headDim)]);
  }
  if (p.ropeLinearScale !== undefined) m.push([`${a}.rope.scaling.type`, gv.str('linear')], [`${a}.rope.scaling.factor`, gv.f32(p.ropeLinearScale)]);
  if (p.slidingWindow !== undefined) m.push([`${a}.attention.sliding_window`, gv.u32(p.slidingWindow)]);
  if (p.attnSoftcap !== undefined) m.push([`${a}.attn_logit_softcapping`, gv.f32(p.attnSoftcap)]);
  if (p.finalSoftcap !== undefined) m.push([`${a}.final_logit_softcapping`, gv.f32(p.finalSoftcap)]);
  if (p.longRope) {
    m.push(
      [`${a}.rope.scaling.original_context_length`, gv.u32(p.longRope.originalContext)],
      [`${a}.rope.scaling.attn_factor`, gv.f32(longRopeAttnFactor(p.context, p.longRope.originalContext))],
    );
  }
  if (p.moe) {
    m.push([`${a}.expert_count`, gv.u32(p.moe.experts)], [`${a}.expert_used_count`, gv.u32(p.moe.used)]);
    if (p.moe.ffnKey) m.push([`${a}.expert_feed_forward_length`, gv.u32(p.moe.ffn)]);
    // Not a llama.cpp key: labels a file whose routers were skewed on purpose.
    if (p.moe.routerSkew) m.push(['flexinfer.synth.router_skew', gv.f32(p.moe.routerSkew)]);
  }
  return m;
}
