/**
 * Architectures by name (general.architecture). An unknown name is an
 * UnsupportedArchitectureError listing what is supported.
 */
import type { GgufMetadataSource, ModelConfig } from './config.js';
import type { Transformer, TransformerOptions } from './transformer.js';
import type { WeightStore } from '../weights/store.js';
import type { KvCache } from '../kv/cache.js';
import { InvalidModelError, UnsupportedArchitectureError } from '../errors.js';
import { llamaFamily } from './llama-moe.js';
import { qwen2 } from './qwen2.js';
import { qwen3 } from './qwen3.js';
import { qwen3moe } from './qwen3moe.js';
import { smollm3 } from './smollm3.js';
import { gemma2 } from './gemma2.js';
import { gemma3 } from './gemma3.js';
import { phi3 } from './phi3.js';

/** What the registry knows of one architecture. */
export interface Architecture {
  readonly name: string;
  /** Validated hyperparameters from the file's metadata. */
  readConfig(file: GgufMetadataSource): ModelConfig;
  /** Tensors every block must have ("blk.N." + name). */
  readonly requiredLayerTensors: readonly string[];
  /** The block's tensors for this config, when they depend on it (dense or MoE blocks). */
  layerTensors?(config: ModelConfig): readonly string[];
  /** The architecture's forward pass bound to its weights and KV cache. */
  create(config: ModelConfig, weights: WeightStore, kv: KvCache, options: TransformerOptions): Transformer;
}

const ARCHITECTURES: ReadonlyMap<string, Architecture> = new Map([llamaFamily, qwen2, qwen3, qwen3moe, smollm3, gemma2, gemma3, phi3].map((a) => [a.name, a]));

/** Names of the supported architectures. */
export function supportedArchitectures(): string[] {
  return [...ARCHITECTURES.keys()];
}

/** The architecture registered under `name`, or UnsupportedArchitectureError. */
export function getArchitecture(name: string): Architecture {
  const arch = ARCHITECTURES.get(name);
  if (!arch) throw new UnsupportedArchitectureError(name, supportedArchitectures());
  return arch;
}

/**
 * Config of a parsed GGUF file: finds the architecture, reads its hyperparameters, checks that
 * every block has its tensors.
 */
export function modelConfigFromGguf(file: GgufMetadataSource): ModelConfig {
  const name = file.get('general.architecture');
  if (typeof name !== 'string') throw new InvalidModelError(`metadata key 'general.architecture' is missing`);
  const arch = getArchitecture(name);
  const config = arch.readConfig(file);
  const names = new Set(file.tensors.map((t) => t.name));
  for (let l = 0; l < config.numLayers; l++) {
    for (const t of arch.layerTensors?.(config) ?? arch.requiredLayerTensors) {
      if (!names.has(`blk.${l}.${t}`)) throw new InvalidModelError(`tensor 'blk.${l}.${t}' is missing`);
    }
  }
  if (!names.has('output_norm.weight')) throw new InvalidModelError(`tensor 'output_norm.weight' is missing`);
  return config;
}

/** The forward pass of `config.architecture`, bound to its weights and KV cache. */
export function createTransformer(config: ModelConfig, weights: WeightStore, kv: KvCache, options: TransformerOptions): Transformer {
  return getArchitecture(config.architecture).create(config, weights, kv, options);
}
