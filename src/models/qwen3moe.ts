/**
 * qwen3moe (Qwen3-30B-A3B, Qwen3-235B-A22B): the qwen3 block (per-head q/k RMSNorm, NeoX rope,
 * head width from attention.key_length) with a routed mixture of SwiGLU experts in place of
 * its FFN, llama.cpp's build_moe_ffn with softmax gating and renormalised weights:
 *
 *   x = h + sum_j w_j · Wdown_e_j · (silu(Wgate_e_j · xb) * Wup_e_j · xb),  xb = rmsnorm(h)
 *       e_j, w_j = top-k(softmax(Wrouter · xb)), renormalised        (the rest is qwen3.ts)
 *
 * Experts are stacked in blk.N.ffn_{gate,up,down}_exps ([dim, n_ff_exp, E] in ggml order);
 * their width is qwen3moe.expert_feed_forward_length.
 */
import type { Architecture } from './registry.js';
import type { ModelConfig } from './config.js';
import type { LayerWeights, WeightStore } from '../weights/store.js';
import type { KvCache } from '../kv/cache.js';
import type { TransformerOptions } from './transformer.js';
import { LLAMA_LAYER_TENSORS } from './llama.js';
import { Qwen3Model } from './qwen3.js';
import { moeLayerTensors, readMoeModelConfig } from './moe-config.js';
import { MoeFeedForward } from './moe.js';

export class Qwen3MoeModel extends Qwen3Model {
  readonly #moe: MoeFeedForward;

  constructor(config: ModelConfig, weights: WeightStore, kv: KvCache, options: TransformerOptions) {
    super(config, weights, kv, options, 'neox');
    this.#moe = new MoeFeedForward(config, weights, options.maxRows);
  }

  /** The routed experts in place of SwiGLU: xb = moe(xb) */
  protected override ffn(layer: number, w: LayerWeights, m: number): void {
    this.#moe.run(this.s.xb, this.s.x, m, layer, w);
  }
}

export const qwen3moe: Architecture = {
  name: 'qwen3moe',
  readConfig: (file) => readMoeModelConfig(file, 'qwen3moe'),
  requiredLayerTensors: [...moeLayerTensors(LLAMA_LAYER_TENSORS), 'attn_q_norm.weight', 'attn_k_norm.weight'],
  create: (config, weights, kv, options) => new Qwen3MoeModel(config, weights, kv, options),
};
