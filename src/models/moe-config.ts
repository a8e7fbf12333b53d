/**
 * Mixture-of-Experts hyperparameters in llama.cpp's key scheme ({arch}.expert_count,
 * {arch}.expert_used_count, {arch}.expert_feed_forward_length), checked against the stacked
 * expert tensors of every block.
 */
import { InvalidModelError } from '../errors.js';
import { readModelConfig, type GgufMetadataSource, type ModelConfig, type MoeConfig } from './config.js';

/** Tensors of a MoE block's FFN, besides ffn_norm. */
export const MOE_FFN_TENSORS: readonly string[] = ['ffn_gate_inp.weight', 'ffn_gate_exps.weight', 'ffn_up_exps.weight', 'ffn_down_exps.weight'];

/** A dense block's tensors with its SwiGLU FFN replaced by the router and stacked experts. */
export function moeLayerTensors(dense: readonly string[]): string[] {
  return [...dense.filter((t) => !['ffn_gate.weight', 'ffn_up.weight', 'ffn_down.weight'].includes(t)), ...MOE_FFN_TENSORS];
}

/**
 * The config of a MoE file of `arch`: readModelConfig plus the MoE part; ffnDim becomes the
 * width of one expert (what the blocks compute with; qwen3moe's feed_forward_length is a dense
 * width no block uses).
 */
export function readMoeModelConfig(file: GgufMetadataSource, arch: string): ModelConfig {
  const c = readModelConfig(file, arch);
  const moe = readMoeConfig(file, arch, c.dim, c.numLayers);
  return { ...c, ffnDim: moe.expertFfnDim, moe };
}

/** True when the file's blocks are MoE ({arch}.expert_count > 0). */
export function isMoeFile(file: GgufMetadataSource, arch: string): boolean {
  const n = file.get(`${arch}.expert_count`);
  return n !== undefined && Number(n) > 0;
}

/**
 * The MoE config of `arch`'s blocks: counts from the metadata, the expert width from the
 * metadata or (files without expert_feed_forward_length, e.g. Mixtral) from the tensors.
 */
export function readMoeConfig(file: GgufMetadataSource, arch: string, dim: number, numLayers: number): MoeConfig {
  const int = (key: string): number | undefined => {
    const v = file.get(`${arch}.${key}`);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidModelError(`metadata key '${arch}.${key}' should be a positive integer, got ${String(v)}`);
    return n;
  };
  const numExperts = int('expert_count');
  const numExpertsUsed = int('expert_used_count');
  if (numExperts === undefined || numExpertsUsed === undefined) throw new InvalidModelError(`a MoE file needs '${arch}.expert_count' and '${arch}.expert_used_count'`);
  if (numExpertsUsed > numExperts) throw new InvalidModelError(`expert_used_count ${numExpertsUsed} exceeds expert_count ${numExperts}`);
  const tensors = new Map(file.tensors.map((t) => [t.name, t]));
  const gate0 = tensors.get('blk.0.ffn_gate_exps.weight');
  const expertFfnDim = int('expert_feed_forward_length') ?? gate0?.dims[1];
  if (expertFfnDim === undefined) throw new InvalidModelError(`tensor 'blk.0.ffn_gate_exps.weight' is missing`);
  const scaleRaw = file.get(`${arch}.expert_weights_scale`);
  const weightsScale = scaleRaw === undefined ? 0 : Number(scaleRaw);
  if (!Number.isFinite(weightsScale)) throw new InvalidModelError(`metadata key '${arch}.expert_weights_scale' should be a number`);
  const expect: Record<string, number[]> = {
    'ffn_gate_inp.weight': [dim, numExperts],
    'ffn_gate_exps.weight': [dim, expertFfnDim, numExperts],
    'ffn_up_exps.weight': [dim, expertFfnDim, numExperts],
    'ffn_down_exps.weight': [expertFfnDim, dim, numExperts],
  };
  for (let l = 0; l < numLayers; l++) {
    for (const [short, dims] of Object.entries(expect)) {
      const t = tensors.get(`blk.${l}.${short}`);
      if (!t) throw new InvalidModelError(`tensor 'blk.${l}.${short}' is missing`);
      if (t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i])) {
        throw new InvalidModelError(`tensor 'blk.${l}.${short}' has dims [${t.dims.join(', ')}], expected [${dims.join(', ')}]`);
      }
    }
  }
  return { numExperts, numExpertsUsed, expertFfnDim, weightsScale };
}
