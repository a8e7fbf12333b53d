/**
 * What a synthetic model file contains: metadata and the tensor list (names, ggml types,
 * dims, how to initialize), computed without generating any weight. The writer (synth.ts)
 * and the tests of the big presets use the same plan.
 */
import { InvalidOptionError } from '../errors.js';
import { GgmlType } from '../gguf/ggml-type.js';
import { quantizedBytes } from '../gguf/quant.js';
import { gv, type GgufValue } from '../gguf/value.js';
import { layoutGguf } from '../gguf/writer.js';
import { loadVocabSource, type VocabSource } from '../tokenizer/vocab-sources.js';
import { QUANT_MIXES, QUANT_MIX_NAMES, mixTypes, quantMix, type QuantMix } from './mixes.js';
import { SYNTH_PRESETS, SYNTH_PRESET_NAMES, llama3RopeFactors, type SynthPreset } from './presets.js';
import { addGlobalTensors, addLayerTensors, archMetadata, headDimOf } from './arch-tensors.js';

/**
 * Weight formats `flexinfer synth --type` accepts: llama.cpp's file types (mixes.ts), each tensor
 * in the type llama-quantize would give it.
 */
export const SYNTH_TYPES: readonly QuantMix[] = QUANT_MIX_NAMES;
export type SynthType = QuantMix;

/** How a tensor's values are made. */
export type SynthInit =
  | { kind: 'normal'; mean: number; std: number; /** Factor per row (ne[1] index), e.g. skewed routers. */ rowScale?: Float32Array }
  | { kind: 'values'; values: Float32Array };

/** One tensor of the plan. */
export interface SynthTensor {
  name: string;
  type: GgmlType;
  /** ggml order, innermost first: attn_q is [dim, dim], ffn_down [ffn, dim]. */
  dims: number[];
  init: SynthInit;
  /** Elements (product of dims). */
  numElements: number;
  /** Bytes of data in `type`. */
  byteSize: number;
}

/** A complete synthetic model description. */
export interface SynthPlan {
  preset: SynthPreset;
  type: SynthType;
  alignment: number;
  metadata: Array<[string, GgufValue]>;
  tensors: SynthTensor[];
  /** Sum of tensor elements (the parameter count). */
  numParams: number;
  /** Size of the file the plan writes. */
  fileSize: number;
}

/**
 * Token embedding std of Mixture-of-Experts presets: 1 (each element ~ N(0, 1), so the
 * embedding's RMS is 1, as a normed hidden state's), where dense presets use 1 / sqrt(dim).
 *
 * Why (measured on tiny-qwen3moe q8_0, 32 random tokens in one sequence): random q and k make
 * attention nearly uniform, so every position's attention output is about the mean of its
 * context's values, a part of the residual stream all tokens of a sequence share, and it
 * grows with depth (rank collapse of random attention). Next to it an embedding of norm 1 is
 * small: the router inputs of different tokens had a mean pairwise cosine of 0.31, 0.49, 0.64,
 * 0.71 in layers 0-3 (0.01 for the same tokens each alone at position 0), and one expert was
 * picked by 31 of 32 tokens. The Qwen3-30B-A3B synth at 25% hit its expert cache 93% of the
 * time over 12 different sampled tokens (uniform routing: ~19%). With unit-RMS embeddings the
 * token's own part dominates: cosines 0.01-0.04, routing as spread as uniform routing (see
 * routing.test.ts), as a real model's routers, whose logits depend on the token.
 * (Dense presets keep their files: nothing routes there, and their tests compare with
 * llama.cpp on the bytes they have.)
 */
export const MOE_EMBEDDING_STD = 1;

/** A preset by name, or InvalidOptionError listing the known ones. */
export function synthPreset(name: string): SynthPreset {
  const p = SYNTH_PRESETS[name];
  if (!p) throw new InvalidOptionError('--preset', `unknown preset '${name}'; known: ${SYNTH_PRESET_NAMES.join(', ')}`);
  return p;
}

/** Validates a --type value. */
export function synthType(name: string): SynthType {
  return quantMix(name);
}

/** GGUF metadata of a vocabulary, typed as llama.cpp's converter writes it. */
function tokenizerMetadata(v: VocabSource): Array<[string, GgufValue]> {
  const m: Array<[string, GgufValue]> = [['tokenizer.ggml.model', gv.str(v.model)]];
  if (v.pre !== undefined) m.push(['tokenizer.ggml.pre', gv.str(v.pre)]);
  m.push(['tokenizer.ggml.tokens', gv.strArr(v.tokens)]);
  if (v.scores !== undefined) m.push(['tokenizer.ggml.scores', gv.f32Arr(v.scores)]);
  m.push(['tokenizer.ggml.token_type', gv.i32Arr(v.tokenTypes)]);
  if (v.merges !== undefined) m.push(['tokenizer.ggml.merges', gv.strArr(v.merges)]);
  m.push(['tokenizer.ggml.bos_token_id', gv.u32(v.bosId)], ['tokenizer.ggml.eos_token_id', gv.u32(v.eosId)]);
  if (v.eotId !== undefined) m.push(['tokenizer.ggml.eot_token_id', gv.u32(v.eotId)]);
  if (v.unkId !== undefined) m.push(['tokenizer.ggml.unknown_token_id', gv.u32(v.unkId)]);
  if (v.padId !== undefined) m.push(['tokenizer.ggml.padding_token_id', gv.u32(v.padId)]);
  m.push(['tokenizer.ggml.add_bos_token', gv.bool(v.addBos)], ['tokenizer.ggml.add_eos_token', gv.bool(v.addEos)]);
  if (v.addSpacePrefix !== undefined) m.push(['tokenizer.ggml.add_space_prefix', gv.bool(v.addSpacePrefix)]);
  if (v.chatTemplate !== undefined) m.push(['tokenizer.chat_template', gv.str(v.chatTemplate)]);
  return m;
}

/**
 * The tensors and metadata of a synthetic `preset` model in `type`, with `alignment` (default
 * 4096: page-aligned tensors, so they can be mapped and streamed directly).
 *
 * Initialization keeps activations O(1) through every layer: matrices ~ N(0, 1/fan_in), the
 * residual-writing ones (attn_output, ffn_down) further divided by sqrt(2 * layers) so the
 * residual stream, a sum of 2 * layers such terms, stays O(1); norm weights 1 + N(0, 0.02^2);
 * embeddings and output N(0, 1/dim), which also keeps tied logits at unit scale.
 *
 * Mixture-of-Experts presets differ in the token embeddings (see MOE_EMBEDDING_STD): their
 * routers must see each token, not what every token of a sequence shares.
 */
export function planSynth(preset: SynthPreset | string, type: SynthType | string, alignment = 4096): SynthPlan {
  const p = typeof preset === 'string' ? synthPreset(preset) : preset;
  const t = synthType(type);
  const headDim = headDimOf(p);
  const vocab = loadVocabSource(p.vocab);
  if (vocab.tokens.length !== p.nVocab) {
    throw new Error(`preset ${p.name}: vocabulary '${p.vocab}' has ${vocab.tokens.length} tokens, the model ${p.nVocab} rows`);
  }

  // The tensors as converted from HF (matrices and vectors in f32), then each in the type
  // llama-quantize gives it for this file type (vectors and norms stay f32).
  const specs: Array<{ name: string; dims: number[]; init: SynthInit }> = [];
  const add = (name: string, dims: number[], init: SynthInit) => specs.push({ name, dims, init });
  // (the role and layer arch-tensors.ts passes are not needed: mixes.ts reads the names, as llama.cpp)
  const matrix = (name: string, _role: string, _layer: number, dims: number[], std: number, rowScale?: Float32Array) =>
    add(name, dims, { kind: 'normal', mean: 0, std, ...(rowScale ? { rowScale } : {}) });
  const vector = (name: string, n: number, mean: number, std: number) => add(name, [n], { kind: 'normal', mean, std });

  if (p.ropeScaling) {
    add('rope_freqs.weight', [headDim / 2], { kind: 'values', values: llama3RopeFactors(headDim, p.ropeBase, p.ropeScaling) });
  }
  addGlobalTensors(p, (name, values) => add(name, [values.length], { kind: 'values', values }));
  const embStd = p.moe ? MOE_EMBEDDING_STD : 1 / Math.sqrt(p.dim);
  matrix('token_embd.weight', 'token_embd', 0, [p.dim, p.nVocab], embStd);
  for (let i = 0; i < p.nLayers; i++) addLayerTensors(p, i, { matrix, vector });
  // Tied logits are output_norm(h) · token_embd: the norm's weights bring them back to unit
  // scale when the embeddings are wider than N(0, 1/dim).
  const outNorm = p.tiedOutput ? 1 / (embStd * Math.sqrt(p.dim)) : 1;
  vector('output_norm.weight', p.dim, outNorm, 0.02 * outNorm);
  if (!p.tiedOutput) matrix('output.weight', 'output', p.nLayers, [p.dim, p.nVocab], 1 / Math.sqrt(p.dim));

  const types = mixTypes(t, { arch: p.arch, nLayers: p.nLayers, nHeads: p.nHeads, nKvHeads: p.nKvHeads, ...(p.moe ? { nExperts: p.moe.experts } : {}) }, specs);
  const tensors: SynthTensor[] = specs.map((x, i) => {
    const type = types[i] ?? GgmlType.F32;
    const n = x.dims.reduce((a, b) => a * b, 1);
    return { ...x, type, numElements: n, byteSize: quantizedBytes(type, n) };
  });

  const a = p.arch;
  const metadata: Array<[string, GgufValue]> = [
    ['general.architecture', gv.str(a)],
    ['general.name', gv.str(p.modelName)],
    ['general.file_type', gv.u32(QUANT_MIXES[t].ftype)],
    ['general.alignment', gv.u32(alignment)],
  ];
  if (t !== 'f32' && t !== 'f16' && t !== 'bf16') metadata.push(['general.quantization_version', gv.u32(2)]);
  metadata.push(
    [`${a}.vocab_size`, gv.u32(p.nVocab)],
    [`${a}.context_length`, gv.u32(p.context)],
    [`${a}.embedding_length`, gv.u32(p.dim)],
    [`${a}.block_count`, gv.u32(p.nLayers)],
    [`${a}.feed_forward_length`, gv.u32(p.ffn)],
    [`${a}.attention.head_count`, gv.u32(p.nHeads)],
    [`${a}.attention.head_count_kv`, gv.u32(p.nKvHeads)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.f32(p.rmsEps)],
    [`${a}.rope.freq_base`, gv.f32(p.ropeBase)],
    [`${a}.rope.dimension_count`, gv.u32(p.ropeDim ?? headDim)],
    ...archMetadata(p),
    ...tokenizerMetadata(vocab),
  );

  const layout = layoutGguf(metadata, tensors, { alignment });
  const numParams = tensors.reduce((s, x) => s + x.numElements, 0);
  return { preset: p, type: t, alignment, metadata, tensors, numParams, fileSize: layout.fileSize };
}
