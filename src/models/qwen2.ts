/**
 * qwen2 (Qwen2, Qwen2.5): the llama block with biases on the q/k/v projections and RoPE in the
 * NeoX layout (pairs (i, i + headDim/2)); usually tied output in the small sizes.
 * The forward pass is src/models/transformer.ts.
 */
import type { Architecture } from './registry.js';
import { readModelConfig } from './config.js';

export const qwen2: Architecture = {
  name: 'qwen2',
  readConfig: (file) => readModelConfig(file, 'qwen2', { ropeMode: 'neox', qkvBias: true }),
  requiredLayerTensors: [
    'attn_norm.weight', 'attn_q.weight', 'attn_q.bias', 'attn_k.weight', 'attn_k.bias', 'attn_v.weight', 'attn_v.bias',
    'attn_output.weight', 'ffn_norm.weight', 'ffn_gate.weight', 'ffn_up.weight', 'ffn_down.weight',
  ],
};
