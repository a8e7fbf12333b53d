/**
 * The llama family: Llama 2/3, Mistral (files say "llama"), TinyLlama, SmolLM.
 * Pre-norm blocks, RoPE in the "normal" layout (pairs (2i, 2i+1), as llama.cpp's GGUF
 * conversion permutes Q/K for it), grouped-query attention, SwiGLU FFN, tied or untied output,
 * llama3 rope scaling through rope_freqs.weight. The forward pass is src/models/transformer.ts.
 */
import type { Architecture } from './registry.js';
import { readModelConfig } from './config.js';

export const llama: Architecture = {
  name: 'llama',
  readConfig: (file) => readModelConfig(file, 'llama', { ropeMode: 'normal', qkvBias: false }),
  requiredLayerTensors: ['attn_norm.weight', 'attn_q.weight', 'attn_k.weight', 'attn_v.weight', 'attn_output.weight', 'ffn_norm.weight', 'ffn_gate.weight', 'ffn_up.weight', 'ffn_down.weight'],
};
