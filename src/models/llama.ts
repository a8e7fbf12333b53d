/**
 * The llama family: Llama 2/3, Mistral (files say "llama"), TinyLlama, SmolLM.
 *
 *   x = token_embd[tokens]
 *   for each block:
 *     h = x + Wo · attention(rope(Wq · rmsnorm(x)), rope(Wk · rmsnorm(x)), Wv · rmsnorm(x))
 *     x = h + Wdown · (silu(Wgate · rmsnorm(h)) * Wup · rmsnorm(h))
 *   logits = Wout · rmsnorm(x)
 *
 * RoPE in the "normal" layout (pairs (2i, 2i+1), as llama.cpp's GGUF conversion permutes Q/K
 * for it), grouped-query attention, tied or untied output, llama3 rope scaling through
 * rope_freqs.weight. Other architectures that differ from it in one step subclass it and
 * override that step (qkv, ropeFor, ffn).
 */
import type { Architecture } from './registry.js';
import { readModelConfig, type ModelConfig } from './config.js';
import { Transformer, type Batch, type SeqRun, type TransformerOptions } from './transformer.js';
import type { WeightStore, LayerWeights } from '../weights/store.js';
import type { KvCache } from '../kv/cache.js';
import { f32, linear } from './blocks/linear.js';
import { rmsNorm } from './blocks/norm.js';
import { attention, defaultAttentionScale, rope, type AttentionOptions, type RopeMode, type RopeOptions } from './blocks/attention.js';
import { swiglu } from './blocks/ffn.js';
import { add } from '../native/index.js';

export class LlamaModel extends Transformer {
  /** Rotary embedding of every layer (subclasses may vary it per layer: ropeFor). */
  protected readonly rope: RopeOptions;
  protected readonly attn: AttentionOptions;

  constructor(config: ModelConfig, weights: WeightStore, kv: KvCache, options: TransformerOptions, ropeMode: RopeMode = 'normal') {
    super(config, weights, kv, options);
    // llama3 rope scaling: per-frequency divisors stored in the file. [headDim / 2]
    const rf = config.hasRopeFreqs ? weights.global('rope_freqs.weight') : undefined;
    this.rope = { mode: ropeMode, freqBase: config.ropeFreqBase, freqScale: 1 / config.ropeScale, freqFactors: rf ? f32(rf).slice() : null };
    this.attn = { numHeads: config.numHeads, numKvHeads: config.numKvHeads, headDim: config.headDim, scale: defaultAttentionScale(config.headDim) };
  }

  forward(batch: Batch): Float32Array {
    const c = this.config;
    const s = this.s;
    const m = batch.numRows;
    const runs = this.begin(batch);

    // token embeddings: x = token_embd[tokens]  [m, dim]
    this.embed(batch);

    for (let l = 0; l < c.numLayers; l++) {
      const w = this.weights.acquire(l);

      // attention rmsnorm: xb = rmsnorm(x) * attn_norm  [m, dim]
      rmsNorm(s.xb, s.x, w.get('attn_norm.weight'), m, c.rmsEps);
      // self-attention: att = attention(q, k, v) over each sequence's cache  [m, qDim]
      this.selfAttention(l, w, batch, runs);
      // output projection and residual: x += att·Wo^T  [m, dim]
      linear(s.xb, w.get('attn_output.weight'), s.att, m);
      add(s.x, s.x, s.xb, m * c.dim);

      // ffn rmsnorm: xb = rmsnorm(x) * ffn_norm  [m, dim]
      rmsNorm(s.xb, s.x, w.get('ffn_norm.weight'), m, c.rmsEps);
      // feed-forward and residual: x += ffn(xb)  [m, dim]
      this.ffn(l, w, m);
      add(s.x, s.x, s.xb, m * c.dim);

      this.weights.release(l);
    }

    // final rmsnorm and classifier: logits = rmsnorm(x[logitRows])·Wout^T  [numLogitRows, vocab]
    const outputNorm = this.global('output_norm.weight');
    return this.head(batch, (x, rows) => rmsNorm(x, x, outputNorm, rows, c.rmsEps));
  }

  /** q, k, v from the normed input s.xb, rotated, then attention into s.att. */
  protected selfAttention(layer: number, w: LayerWeights, batch: Batch, runs: readonly SeqRun[]): void {
    const c = this.config;
    const s = this.s;
    const m = batch.numRows;
    // q = xb·Wq^T [m, qDim], k = xb·Wk^T, v = xb·Wv^T [m, kvDim]
    this.qkv(w, m);
    // rotary position embedding on q and k, each row at its own position
    const r = this.ropeFor(layer);
    if (r !== null) {
      rope(s.q, m, c.numHeads, c.headDim, batch.positions, r);
      rope(s.k, m, c.numKvHeads, c.headDim, batch.positions, r);
    }
    // per sequence: append k, v to its cache, then causal attention over [0, pos]
    attention(this.kv, layer, runs, this.attn);
  }

  /**
   * The FFN of `layer` in place on the normed input s.xb: SwiGLU over ffn_gate / ffn_up /
   * ffn_down, xb = Wdown · (silu(Wgate · xb) * Wup · xb)  [m, dim]; phi3 fuses gate | up,
   * MoE models route to experts.
   */
  protected ffn(_layer: number, w: LayerWeights, m: number): void {
    swiglu(this.s.xb, w, this.s.xb, m, this.s);
  }

  /** The q, k, v projections of s.xb into s.q, s.k, s.v. */
  protected qkv(w: LayerWeights, m: number): void {
    const s = this.s;
    linear(s.q, w.get('attn_q.weight'), s.xb, m);
    linear(s.k, w.get('attn_k.weight'), s.xb, m);
    linear(s.v, w.get('attn_v.weight'), s.xb, m);
  }

  /** RoPE of `layer`, or null for a layer without positional encoding. */
  protected ropeFor(_layer: number): RopeOptions | null {
    return this.rope;
  }
}

/** Tensors of a llama block. */
export const LLAMA_LAYER_TENSORS: readonly string[] = [
  'attn_norm.weight', 'attn_q.weight', 'attn_k.weight', 'attn_v.weight', 'attn_output.weight',
  'ffn_norm.weight', 'ffn_gate.weight', 'ffn_up.weight', 'ffn_down.weight',
];

export const llama: Architecture = {
  name: 'llama',
  readConfig: (file) => readModelConfig(file, 'llama'),
  requiredLayerTensors: LLAMA_LAYER_TENSORS,
  create: (config, weights, kv, options) => new LlamaModel(config, weights, kv, options),
};
