/**
 * gemma3 (Gemma 3 text): the gemma2 block (gemma2.ts) with an RMSNorm over every head of q and k
 * before RoPE, no attention-logit soft-capping (final soft-capping only if the file sets it),
 * and 5 local (sliding-window) layers to 1 global. Local layers rotate with base 10000
 * (rope.freq_base_swa) and no scaling; global layers with rope.freq_base and its linear
 * scaling (Gemma 3 4B+: factor 8).
 *
 *   q = rope(rmsnorm_head(Wq · x) * attn_q_norm) * queryScale
 *   k = rope(rmsnorm_head(Wk · x) * attn_k_norm)
 */
import type { Architecture } from './registry.js';
import type { LayerWeights } from '../weights/store.js';
import { GEMMA2_LAYER_TENSORS, Gemma2Model, readGemmaConfig } from './gemma2.js';
import { qkHeadNorm } from './blocks/norm.js';

export class Gemma3Model extends Gemma2Model {
  protected override qkv(w: LayerWeights, m: number): void {
    super.qkv(w, m);
    // per-head rmsnorm: q = rmsnorm_head(q) * attn_q_norm, k = rmsnorm_head(k) * attn_k_norm
    qkHeadNorm(this.s.q, this.s.k, w, m, this.config, this.config.rmsEps);
  }
}

export const gemma3: Architecture = {
  name: 'gemma3',
  readConfig: (file) => readGemmaConfig(file, 'gemma3'),
  requiredLayerTensors: [...GEMMA2_LAYER_TENSORS, 'attn_q_norm.weight', 'attn_k_norm.weight'],
  create: (config, weights, kv, options) => new Gemma3Model(config, weights, kv, options),
};
