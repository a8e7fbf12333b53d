/**
 * smollm3 (SmolLM3): the llama block, except that every 4th layer (3, 7, 11, ...) has no
 * positional encoding at all ("NoPE": q and k enter attention unrotated), as llama.cpp's
 * n_no_rope_layer_step = 4. RoPE elsewhere in the llama ("normal") layout.
 */
import type { Architecture } from './registry.js';
import { readModelConfig } from './config.js';
import { LLAMA_LAYER_TENSORS, LlamaModel } from './llama.js';
import type { RopeOptions } from './blocks/attention.js';

/** Every NO_ROPE_LAYER_STEP-th layer skips RoPE. */
const NO_ROPE_LAYER_STEP = 4;

export class SmolLM3Model extends LlamaModel {
  protected override ropeFor(layer: number): RopeOptions | null {
    return (layer + 1) % NO_ROPE_LAYER_STEP === 0 ? null : this.rope;
  }
}

export const smollm3: Architecture = {
  name: 'smollm3',
  readConfig: (file) => readModelConfig(file, 'smollm3'),
  requiredLayerTensors: LLAMA_LAYER_TENSORS,
  create: (config, weights, kv, options) => new SmolLM3Model(config, weights, kv, options),
};
