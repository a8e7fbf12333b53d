/**
 * phi3 (Phi-3 / Phi-3.5-mini, Phi-4-mini): the llama block with q, k, v in one fused projection
 * (attn_qkv), gate and up in one (ffn_up, gate first), NeoX RoPE over the first
 * rope.dimension_count dimensions of each head (Phi-4-mini rotates 96 of 128), and "longrope"
 * scaling: per-pair frequency divisors, long ones when the context a sequence may reach exceeds
 * rope.scaling.original_context_length (llama.cpp: n_ctx_seq > n_ctx_orig_yarn), short ones
 * otherwise, with cos/sin multiplied by rope.scaling.attn_factor.
 *
 *   x = token_embd[tokens]
 *   for each block:
 *     q | k | v = Wqkv · rmsnorm(x)
 *     h = x + Wo · attention(rope(q) / sqrt(headDim), rope(k), v)
 *     g | u = Wup · rmsnorm(h)
 *     x = h + Wdown · (silu(g) * u)
 *   logits = Wout · rmsnorm(x)
 *
 * The query is scaled after RoPE and the scores are not scaled again, as llama.cpp does.
 * llama.cpp ignores phi3's attention.sliding_window (its SWA is disabled for phi3); so does this.
 */
import type { Architecture } from './registry.js';
import { readModelConfig, type GgufMetadataSource, type ModelConfig } from './config.js';
import type { Batch, SeqRun, TransformerOptions } from './transformer.js';
import type { LayerWeights, WeightStore } from '../weights/store.js';
import type { KvCache } from '../kv/cache.js';
import { LlamaModel } from './llama.js';
import { f32, linear } from './blocks/linear.js';
import { attention, defaultAttentionScale, rope, type AttentionOptions, type RopeOptions } from './blocks/attention.js';
import { swigluFused } from './blocks/ffn.js';
import { scale } from '../native/index.js';
import { InvalidModelError } from '../errors.js';

/** phi3's hyperparameters beyond the common ones. */
export interface Phi3Config extends ModelConfig {
  /** rope.scaling.original_context_length (default: context_length). */
  ropeOriginalContext: number;
  /** rope.scaling.attn_factor: cos/sin factor (default 1). */
  ropeAttnFactor: number;
}

function readPhi3Config(file: GgufMetadataSource): Phi3Config {
  const c = readModelConfig(file, 'phi3', { partialRotary: true });
  const orig = file.get('phi3.rope.scaling.original_context_length');
  const attnFactor = file.get('phi3.rope.scaling.attn_factor');
  if (orig !== undefined && !(Number(orig) > 0)) throw new InvalidModelError(`phi3.rope.scaling.original_context_length should be positive, got ${String(orig)}`);
  if (attnFactor !== undefined && !(typeof attnFactor === 'number' && attnFactor > 0)) {
    throw new InvalidModelError(`phi3.rope.scaling.attn_factor should be a positive number, got ${String(attnFactor)}`);
  }
  const names = new Set(file.tensors.map((t) => t.name));
  for (let l = 0; l < c.numLayers; l++) {
    const b = `blk.${l}.`;
    const up = file.tensors.find((t) => t.name === b + 'ffn_up.weight');
    if (up && up.dims[1] !== 2 * c.ffnDim) throw new InvalidModelError(`tensor '${b}ffn_up.weight' has ${up.dims[1]} rows, expected gate + up = 2 * feed_forward_length = ${2 * c.ffnDim}`);
    if (!names.has(b + 'attn_qkv.weight') && !['attn_q', 'attn_k', 'attn_v'].every((n) => names.has(`${b}${n}.weight`))) {
      throw new InvalidModelError(`tensor '${b}attn_qkv.weight' (or attn_q, attn_k and attn_v) is missing`);
    }
  }
  for (const n of ['rope_factors_long.weight', 'rope_factors_short.weight']) {
    const t = file.tensors.find((x) => x.name === n);
    if (t && t.dims[0] !== c.ropeDim / 2) throw new InvalidModelError(`tensor '${n}' has ${t.dims[0]} values, expected rope.dimension_count / 2 = ${c.ropeDim / 2}`);
  }
  return {
    ...c,
    ropeOriginalContext: orig === undefined ? c.contextLength : Number(orig),
    ropeAttnFactor: attnFactor === undefined ? 1 : (attnFactor as number),
  };
}

export class Phi3Model extends LlamaModel {
  declare readonly config: Phi3Config;
  private readonly phiRope: RopeOptions;
  private readonly phiAttn: AttentionOptions;

  constructor(config: ModelConfig, weights: WeightStore, kv: KvCache, options: TransformerOptions) {
    super(config, weights, kv, options, 'neox');
    const c = this.config;
    // longrope: long factors when a sequence may run past the original context (llama.cpp's get_rope_factors)
    const factors = weights.global(kv.shape.maxContext > c.ropeOriginalContext ? 'rope_factors_long.weight' : 'rope_factors_short.weight');
    this.phiRope = { ...this.rope, freqFactors: factors ? f32(factors).slice() : null, dims: c.ropeDim, attnFactor: c.ropeAttnFactor };
    // q arrives scaled by 1/sqrt(headDim), so the scores are not scaled again
    this.phiAttn = { ...this.attn, scale: 1 };
  }

  /** q, k, v from s.xb (fused or not), rotated, q scaled, then attention into s.att. */
  protected override selfAttention(layer: number, w: LayerWeights, batch: Batch, runs: readonly SeqRun[]): void {
    const c = this.config;
    const s = this.s;
    const m = batch.numRows;
    this.qkv(w, m);
    rope(s.q, m, c.numHeads, c.headDim, batch.positions, this.phiRope);
    rope(s.k, m, c.numKvHeads, c.headDim, batch.positions, this.phiRope);
    // q *= 1/sqrt(headDim) (after RoPE, as llama.cpp)
    scale(s.q, m * c.numHeads * c.headDim, defaultAttentionScale(c.headDim));
    attention(this.kv, layer, runs, this.phiAttn);
  }

  /** q | k | v = xb·Wqkv^T: the three row ranges of the fused projection (or separate tensors). */
  protected override qkv(w: LayerWeights, m: number): void {
    const wqkv = w.find('attn_qkv.weight');
    if (!wqkv) return super.qkv(w, m);
    const s = this.s;
    const qDim = this.config.numHeads * this.config.headDim;
    const kvDim = this.config.numKvHeads * this.config.headDim;
    linear(s.q, wqkv, s.xb, m, { start: 0, count: qDim });
    linear(s.k, wqkv, s.xb, m, { start: qDim, count: kvDim });
    linear(s.v, wqkv, s.xb, m, { start: qDim + kvDim, count: kvDim });
  }

  /** SwiGLU over the fused gate | up projection. */
  protected override ffn(_layer: number, w: LayerWeights, m: number): void {
    swigluFused(this.s.xb, w, this.s.xb, m, this.s);
  }
}

export const phi3: Architecture = {
  name: 'phi3',
  readConfig: readPhi3Config,
  requiredLayerTensors: ['attn_norm.weight', 'attn_output.weight', 'ffn_norm.weight', 'ffn_up.weight', 'ffn_down.weight'],
  create: (config, weights, kv, options) => new Phi3Model(config, weights, kv, options),
};
