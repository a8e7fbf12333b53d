/**
 * What a synthetic model file contains: metadata and the tensor list (names, ggml types,
 * dims, how to initialize), computed without generating any weight. The writer (synth.ts)
 * and the tests of the big presets use the same plan.
 */
import { InvalidOptionError } from '../errors.js';
import { GgmlType, ggmlTypeInfo } from '../gguf/ggml-type.js';
import { quantizedBytes } from '../gguf/quant.js';
import { gv, type GgufValue } from '../gguf/value.js';
import { layoutGguf } from '../gguf/writer.js';
import { loadVocabSource, type VocabSource } from '../tokenizer/vocab-sources.js';
import { SYNTH_PRESETS, SYNTH_PRESET_NAMES, llama3RopeFactors, type SynthPreset } from './presets.js';
import { addLayerTensors, archMetadata, headDimOf } from './arch-tensors.js';

/** Weight formats `flexinfer synth --type` accepts. */
export const SYNTH_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q4_k_m', 'q5_k_m'] as const;
export type SynthType = (typeof SYNTH_TYPES)[number];

/** How a tensor's values are made. */
export type SynthInit =
  | { kind: 'normal'; mean: number; std: number }
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

// llama_ftype values (llama.h) for general.file_type.
const FILE_TYPE: Record<SynthType, number> = {
  f32: 0, f16: 1, q4_0: 2, q8_0: 7, q4_k: 14 /* Q4_K_S: the closest named ftype to pure Q4_K */, q4_k_m: 15, q5_k_m: 17, bf16: 32,
};

const BASE_TYPE: Record<SynthType, GgmlType> = {
  f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16, q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0,
  q4_k: GgmlType.Q4_K, q4_k_m: GgmlType.Q4_K, q5_k_m: GgmlType.Q5_K,
};

/** A preset by name, or InvalidOptionError listing the known ones. */
export function synthPreset(name: string): SynthPreset {
  const p = SYNTH_PRESETS[name];
  if (!p) throw new InvalidOptionError('--preset', `unknown preset '${name}'; known: ${SYNTH_PRESET_NAMES.join(', ')}`);
  return p;
}

/** Validates a --type value. */
export function synthType(name: string): SynthType {
  const t = name.toLowerCase();
  if (!(SYNTH_TYPES as readonly string[]).includes(t)) {
    throw new InvalidOptionError('--type', `unknown type '${name}'; known: ${SYNTH_TYPES.join(', ')}`);
  }
  return t as SynthType;
}

/**
 * llama.cpp's use_more_bits(i, n) (llama-quant.cpp): the first and last eighth of the layers
 * and every third layer between get more bits in the _M mixes.
 */
function useMoreBits(layer: number, nLayers: number): boolean {
  return layer < nLayers / 8 || layer >= (7 * nLayers) / 8 || (layer - Math.floor(nLayers / 8)) % 3 === 2;
}

/**
 * ggml type of a 2-D weight. q4_k_m follows llama.cpp's Q4_K_M for the tensors that matter
 * most (output.weight Q6_K; attn_v and ffn_down Q6_K in the use_more_bits layers, Q4_K in the
 * others) and, unlike llama.cpp, stores attn_k as Q5_K in the use_more_bits layers: no
 * llama.cpp mix of this size uses Q5_K for these shapes, and the Q5_K kernels need a file
 * that exercises them.
 */
function matrixType(type: SynthType, role: string, layer: number, nLayers: number, tiedOutput: boolean): GgmlType {
  if (type === 'q5_k_m') return q5KmType(role, layer, nLayers, tiedOutput);
  if (type !== 'q4_k_m') return BASE_TYPE[type];
  if (role === 'output') return GgmlType.Q6_K;
  const more = useMoreBits(layer, nLayers);
  if (role === 'attn_v' || role === 'ffn_down') return more ? GgmlType.Q6_K : GgmlType.Q4_K;
  if (role === 'attn_k') return more ? GgmlType.Q5_K : GgmlType.Q4_K;
  return GgmlType.Q4_K;
}

/**
 * llama.cpp's Q5_K_M (llama_tensor_get_type, non-MoE, not 70B): Q5_K everywhere except
 * output.weight -> Q6_K, and attn_v / ffn_down -> Q6_K in the use_more_bits layers. A tied
 * token_embd (no output.weight) doubles as the output, so llama.cpp gives it the output's type
 * (Q6_K); an untied one keeps Q5_K. Rows that are not whole 256-blocks fall back in fitRows
 * (llama.cpp: Q8_0 for the output, Q5_1 / Q8_0 elsewhere).
 */
function q5KmType(role: string, layer: number, nLayers: number, tiedOutput: boolean): GgmlType {
  if (role === 'output' || (role === 'token_embd' && tiedOutput)) return GgmlType.Q6_K;
  if ((role === 'attn_v' || role === 'ffn_down') && useMoreBits(layer, nLayers)) return GgmlType.Q6_K;
  return GgmlType.Q5_K;
}

/**
 * K-quants need rows that are whole 256-blocks; llama.cpp then falls back to a legacy type
 * (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). flexinfer computes with Q4_0 and Q8_0 only among
 * legacy types, so the fallbacks here are Q4_0 for Q4_K and Q8_0 for Q5_K / Q6_K (e.g. every
 * [896, ...] matrix of qwen2.5-0.5b, every [288, ...] one of tiny-15m).
 */
function fitRows(type: GgmlType, rowLen: number): GgmlType {
  const info = ggmlTypeInfo(type)!;
  if (rowLen % info.blockSize === 0) return type;
  if (type === GgmlType.Q4_K) return rowLen % 32 === 0 ? GgmlType.Q4_0 : GgmlType.F16;
  if (type === GgmlType.Q5_K || type === GgmlType.Q6_K) return rowLen % 32 === 0 ? GgmlType.Q8_0 : GgmlType.F16;
  return rowLen % 32 === 0 ? type : GgmlType.F16;
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
 */
export function planSynth(preset: SynthPreset | string, type: SynthType | string, alignment = 4096): SynthPlan {
  const p = typeof preset === 'string' ? synthPreset(preset) : preset;
  const t = synthType(type);
  const headDim = headDimOf(p);
  const vocab = loadVocabSource(p.vocab);
  if (vocab.tokens.length !== p.nVocab) {
    throw new Error(`preset ${p.name}: vocabulary '${p.vocab}' has ${vocab.tokens.length} tokens, the model ${p.nVocab} rows`);
  }

  const tensors: SynthTensor[] = [];
  const add = (name: string, ggmlType: GgmlType, dims: number[], init: SynthInit) => {
    const n = dims.reduce((a, b) => a * b, 1);
    tensors.push({ name, type: ggmlType, dims, init, numElements: n, byteSize: quantizedBytes(ggmlType, n) });
  };
  const matrix = (name: string, role: string, layer: number, dims: number[], std: number) =>
    add(name, fitRows(matrixType(t, role, layer, p.nLayers, p.tiedOutput), dims[0]!), dims, { kind: 'normal', mean: 0, std });
  const vector = (name: string, n: number, mean: number, std: number) => add(name, GgmlType.F32, [n], { kind: 'normal', mean, std });

  if (p.ropeScaling) {
    add('rope_freqs.weight', GgmlType.F32, [headDim / 2], { kind: 'values', values: llama3RopeFactors(headDim, p.ropeBase, p.ropeScaling) });
  }
  matrix('token_embd.weight', 'token_embd', 0, [p.dim, p.nVocab], 1 / Math.sqrt(p.dim));
  for (let i = 0; i < p.nLayers; i++) addLayerTensors(p, i, { matrix, vector });
  vector('output_norm.weight', p.dim, 1, 0.02);
  if (!p.tiedOutput) matrix('output.weight', 'output', p.nLayers, [p.dim, p.nVocab], 1 / Math.sqrt(p.dim));

  const a = p.arch;
  const metadata: Array<[string, GgufValue]> = [
    ['general.architecture', gv.str(a)],
    ['general.name', gv.str(p.modelName)],
    ['general.file_type', gv.u32(FILE_TYPE[t])],
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
    [`${a}.rope.dimension_count`, gv.u32(headDim)],
    ...archMetadata(p),
    ...tokenizerMetadata(vocab),
  );

  const layout = layoutGguf(metadata, tensors, { alignment });
  const numParams = tensors.reduce((s, x) => s + x.numElements, 0);
  return { preset: p, type: t, alignment, metadata, tensors, numParams, fileSize: layout.fileSize };
}
