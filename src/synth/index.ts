/** Synthetic models: presets of public model shapes, planning, and the streaming writer. */
export { SYNTH_PRESETS, SYNTH_PRESET_NAMES, llama3RopeFactors, type SynthPreset, type Llama3RopeScaling } from './presets.js';
export { SYNTH_TYPES, planSynth, synthPreset, synthType, type SynthType, type SynthPlan, type SynthTensor, type SynthInit } from './plan.js';
export { synthesize, synthTensorData, type SynthOptions, type SynthResult } from './synth.js';
export { QUANT_MIXES, QUANT_MIX_NAMES, fallbackType, mixTypes, useMoreBits, type MixModel, type MixTensor, type QuantMix } from './mixes.js';
export { rewriteSynthTensors, type RewriteOptions, type RewriteResult } from './rewrite.js';
