/**
 * qwen3 (Qwen3 dense): the llama block with RoPE in the NeoX layout, no q/k/v biases, a head
 * width of its own (attention.key_length: q is numHeads * headDim wide, not dim) and an
 * RMSNorm over every head of q and of k before the rotation:
 *
 *   q = rope(rmsnorm_head(Wq · x) * attn_q_norm)
 *   k = rope(rmsnorm_head(Wk · x) * attn_k_norm)      (the rest is llama.ts)
 */
import type { Architecture } from './registry.js';
import { readModelConfig } from './config.js';
import type { LayerWeights } from '../weights/store.js';
import { LLAMA_LAYER_TENSORS, LlamaModel } from './llama.js';
import { qkHeadNorm } from './blocks/norm.js';

export class Qwen3Model extends LlamaModel {
  protected override qkv(w: LayerWeights, m: number): void {
    super.qkv(w, m);
    // per-head rmsnorm: q = rmsnorm_head(q) * attn_q_norm, k = rmsnorm_head(k) * attn_k_norm
    qkHeadNorm(this.s.q, this.s.k, w, m, this.config, this.config.rmsEps);
  }
}

export const qwen3: Architecture = {
  name: 'qwen3',
  readConfig: (file) => readModelConfig(file, 'qwen3'),
  requiredLayerTensors: [...LLAMA_LAYER_TENSORS, 'attn_q_norm.weight', 'attn_k_norm.weight'],
  create: (config, weights, kv, options) => new Qwen3Model(config, weights, kv, options, 'neox'),
};
