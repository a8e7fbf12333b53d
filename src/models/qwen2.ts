/**
 * qwen2 (Qwen2, Qwen2.5): the llama block with biases on the q/k/v projections and RoPE in the
 * NeoX layout (pairs (i, i + headDim/2)); usually tied output in the small sizes.
 *
 *   q = Wq · x + bq,  k = Wk · x + bk,  v = Wv · x + bv     (the rest is llama.ts)
 */
import type { Architecture } from './registry.js';
import { readModelConfig } from './config.js';
import type { LayerWeights } from '../weights/store.js';
import { LlamaModel } from './llama.js';
import { bias } from './blocks/linear.js';

export class Qwen2Model extends LlamaModel {
  protected override qkv(w: LayerWeights, m: number): void {
    super.qkv(w, m);
    // q += bq, k += bk, v += bv
    bias(this.s.q, w.get('attn_q.bias'), m);
    bias(this.s.k, w.get('attn_k.bias'), m);
    bias(this.s.v, w.get('attn_v.bias'), m);
  }
}

export const qwen2: Architecture = {
  name: 'qwen2',
  readConfig: (file) => readModelConfig(file, 'qwen2'),
  requiredLayerTensors: [
    'attn_norm.weight', 'attn_q.weight', 'attn_q.bias', 'attn_k.weight', 'attn_k.bias', 'attn_v.weight', 'attn_v.bias',
    'attn_output.weight', 'ffn_norm.weight', 'ffn_gate.weight', 'ffn_up.weight', 'ffn_down.weight',
  ],
  create: (config, weights, kv, options) => new Qwen2Model(config, weights, kv, options, 'neox'),
};
