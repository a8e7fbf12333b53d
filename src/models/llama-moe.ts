/**
 * Mixtral-style llama files (general.architecture "llama" with llama.expert_count): the llama
 * block with a routed mixture of SwiGLU experts in place of its FFN (llama.cpp's build_moe_ffn
 * with softmax gating and renormalised weights):
 *
 *   x = h + sum_j w_j · Wdown_e_j · (silu(Wgate_e_j · xb) * Wup_e_j · xb),  xb = rmsnorm(h)
 *       e_j, w_j = top-k(softmax(Wrouter · xb)), renormalised        (the rest is llama.ts)
 *
 * Experts are stacked in blk.N.ffn_{gate,up,down}_exps ([dim, ffn, E] in ggml order);
 * llama.feed_forward_length is the width of one expert.
 */
import type { Architecture } from './registry.js';
import { readModelConfig, type ModelConfig } from './config.js';
import type { LayerWeights, WeightStore } from '../weights/store.js';
import type { KvCache } from '../kv/cache.js';
import type { TransformerOptions } from './transformer.js';
import { llama, LLAMA_LAYER_TENSORS, LlamaModel } from './llama.js';
import { isMoeFile, moeLayerTensors, readMoeModelConfig } from './moe-config.js';
import { MoeFeedForward } from './moe.js';

export class LlamaMoeModel extends LlamaModel {
  readonly #moe: MoeFeedForward;

  constructor(config: ModelConfig, weights: WeightStore, kv: KvCache, options: TransformerOptions) {
    super(config, weights, kv, options);
    this.#moe = new MoeFeedForward(config, weights, options.maxRows);
  }

  /** The routed experts in place of SwiGLU: xb = moe(xb) */
  protected override ffn(layer: number, w: LayerWeights, m: number): void {
    this.#moe.run(this.s.xb, this.s.x, m, layer, w);
  }
}

/** The llama architecture, dense or Mixtral-style MoE by the file's llama.expert_count. */
export const llamaFamily: Architecture = {
  ...llama,
  readConfig: (file) => (isMoeFile(file, 'llama') ? readMoeModelConfig(file, 'llama') : readModelConfig(file, 'llama')),
  layerTensors: (c) => (c.moe ? moeLayerTensors(LLAMA_LAYER_TENSORS) : LLAMA_LAYER_TENSORS),
  create: (config, weights, kv, options) => (config.moe ? new LlamaMoeModel(config, weights, kv, options) : llama.create(config, weights, kv, options)),
};
