/**
 * llama.cpp's quantization mixes: the ggml type llama-quantize gives each tensor of a model for a
 * file type ("Q4_K_M", "IQ4_XS", ...), ported from llama_tensor_get_type (src/llama-quant.cpp of
 * the llama.cpp that node-llama-cpp 3.21.1 ships), fallbacks included.
 *
 * The rules go by tensor *category*, read from the name as llama.cpp reads it (output.weight,
 * token_embd.weight, attn_v / attn_qkv / attn_kv_b, attn_k, attn_q, attn_output, ffn_down*,
 * ffn_gate*, ffn_up*: expert and shared-expert tensors included), by layer (use_more_bits: the
 * first and last eighth of the layers and every third between), and by the model's n_gqa and
 * n_expert; so a new architecture's tensors get llama.cpp's types without this file knowing it.
 * Then every matrix whose rows are not whole blocks of its type falls back (Q4_K -> Q5_0, Q5_K ->
 * Q5_1, Q6_K -> Q8_0, Q2_K / Q3_K -> Q4_0, IQ4_XS -> IQ4_NL, then F16): a small model's "Q4_K_M"
 * is mostly Q5_0.
 *
 * Checked against libllama's own llama_model_quantize on the same F16 files (mixes.test.ts).
 * Not ported: importance-matrix variants, the IQ1/IQ2/IQ3/TQ/MXFP4 file types, user overrides.
 */
import { InvalidOptionError } from '../errors.js';
import { GgmlType, ggmlTypeInfo } from '../gguf/ggml-type.js';

const G = GgmlType;

/** llama.cpp file types (llama_ftype) flexinfer can write, by their llama-quantize names. */
export const QUANT_MIXES = {
  f32: { ftype: 0, base: G.F32 },
  f16: { ftype: 1, base: G.F16 },
  bf16: { ftype: 32, base: G.BF16 },
  q8_0: { ftype: 7, base: G.Q8_0 },
  q6_k: { ftype: 18, base: G.Q6_K },
  q5_k_m: { ftype: 17, base: G.Q5_K },
  q5_k_s: { ftype: 16, base: G.Q5_K },
  q5_1: { ftype: 9, base: G.Q5_1 },
  q5_0: { ftype: 8, base: G.Q5_0 },
  q4_k_m: { ftype: 15, base: G.Q4_K },
  q4_k_s: { ftype: 14, base: G.Q4_K },
  q4_1: { ftype: 3, base: G.Q4_1 },
  q4_0: { ftype: 2, base: G.Q4_0 },
  iq4_xs: { ftype: 30, base: G.IQ4_XS },
  iq4_nl: { ftype: 25, base: G.IQ4_NL },
  q3_k_l: { ftype: 13, base: G.Q3_K },
  q3_k_m: { ftype: 12, base: G.Q3_K },
  q3_k_s: { ftype: 11, base: G.Q3_K },
  q2_k: { ftype: 10, base: G.Q2_K },
  /** llama-quantize --pure Q4_K_S: every matrix Q4_K (fallbacks still apply). */
  q4_k: { ftype: 14, base: G.Q4_K, pure: true },
} as const satisfies Record<string, { ftype: number; base: GgmlType; pure?: boolean }>;

export type QuantMix = keyof typeof QUANT_MIXES;
export const QUANT_MIX_NAMES = Object.keys(QUANT_MIXES) as QuantMix[];

/** The model facts the rules read (llama.cpp's hparams). */
export interface MixModel {
  /** general.architecture ("llama", "qwen2", ...). */
  arch: string;
  /** block_count */
  nLayers: number;
  /** attention.head_count */
  nHeads: number;
  /** attention.head_count_kv */
  nKvHeads: number;
  /** expert_count (0 or absent: dense) */
  nExperts?: number;
}

/** A tensor as the rules see it: its GGUF name and dims in ggml order (innermost, the row, first). */
export interface MixTensor {
  name: string;
  dims: readonly number[];
}

type Category =
  | 'output' | 'token_embd' | 'attn_qkv' | 'attn_kv_b' | 'attn_v' | 'attn_k' | 'attn_q' | 'attn_output'
  | 'ffn_up' | 'ffn_gate' | 'ffn_down' | 'other';

/** tensor_get_category: by name, first match wins (llama.cpp's order). */
function category(name: string): Category {
  if (name === 'output.weight') return 'output';
  if (name === 'token_embd.weight' || name === 'per_layer_token_embd.weight') return 'token_embd';
  if (name.includes('attn_qkv.weight')) return 'attn_qkv';
  if (name.includes('attn_kv_b.weight')) return 'attn_kv_b';
  if (name.includes('attn_v.weight')) return 'attn_v';
  if (name.includes('attn_k.weight')) return 'attn_k';
  if (name.includes('attn_q.weight')) return 'attn_q';
  if (name.includes('attn_output.weight')) return 'attn_output';
  if (name.includes('ffn_up')) return 'ffn_up';
  if (name.includes('ffn_gate')) return 'ffn_gate';
  if (name.includes('ffn_down')) return 'ffn_down';
  return 'other';
}

const isAttnV = (c: Category): boolean => c === 'attn_v' || c === 'attn_qkv' || c === 'attn_kv_b';

/**
 * tensor_allows_quantization (the parts that apply to text models): 2-D and 3-D tensors whose
 * name ends in "weight", except norms, MoE routers and a few small special tensors.
 */
export function mixQuantizes(t: MixTensor): boolean {
  const n = t.name;
  let nDims = 1; // ggml_n_dims: trailing 1s do not count
  t.dims.forEach((d, i) => {
    if (d > 1) nDims = Math.max(nDims, i + 1);
  });
  if (nDims < 2 || !n.endsWith('weight') || n.includes('_norm.weight')) return false;
  if (n === 'position_embd.weight' || n === 'token_types.weight') return false;
  return !['ffn_gate_inp.weight', 'ffn_gate_tid2eid.weight', 'altup', 'laurel', 'per_layer_model_proj', 'ssm_conv1d',
    'shortconv.conv.weight', 'attn_rel_b.weight', '.position_embd', '.rel_pos', '.patch_embd'].some((s) => n.includes(s));
}

/** use_more_bits(i, n): the first and last eighth of the layers and every third layer between. */
export function useMoreBits(i: number, n: number): boolean {
  return i < Math.trunc(n / 8) || i >= Math.trunc((7 * n) / 8) || (i - Math.trunc(n / 8)) % 3 === 2;
}

/** Layer of a "blk.N...." name, or -1 (llama.cpp's weight_name_comparer). */
function layerOf(name: string): number {
  const m = /^blk\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : -1;
}

/** The order llama-quantize visits tensors in (by layer, then by name): its counters follow it. */
function quantizeOrder(tensors: readonly MixTensor[]): number[] {
  return tensors
    .map((_, i) => i)
    .sort((a, b) => {
      const la = layerOf(tensors[a]!.name);
      const lb = layerOf(tensors[b]!.name);
      if (la !== lb) return la - lb;
      const na = tensors[a]!.name;
      const nb = tensors[b]!.name;
      return na < nb ? -1 : na > nb ? 1 : 0;
    });
}

/**
 * tensor_type_fallback: a type whose block does not divide the row length `ncols` becomes its
 * legacy 32-block counterpart, and F16 where even that does not divide it.
 */
export function fallbackType(type: GgmlType, ncols: number): GgmlType {
  const bs = ggmlTypeInfo(type)!.blockSize;
  if (ncols % bs === 0) return type;
  let t: GgmlType;
  switch (type) {
    case G.IQ4_XS: t = G.IQ4_NL; break;
    case G.Q2_K: case G.Q3_K: t = G.Q4_0; break;
    case G.Q4_K: t = G.Q5_0; break;
    case G.Q5_K: t = G.Q5_1; break;
    case G.Q6_K: t = G.Q8_0; break;
    default: t = type; // a 32-block type: only F16 is left
  }
  return ncols % ggmlTypeInfo(t)!.blockSize === 0 ? t : G.F16;
}

/**
 * The ggml type llama-quantize writes for each tensor of `tensors` (same order) in file type
 * `mix`, or null for a tensor it leaves as it is (1-D tensors, norms, routers: F32 in a file
 * converted from HF).
 */
export function mixTypes(mix: QuantMix | string, model: MixModel, tensors: readonly MixTensor[]): Array<GgmlType | null> {
  const m = quantMix(mix);
  const { ftype, base } = QUANT_MIXES[m];
  const pure = 'pure' in QUANT_MIXES[m];
  const nLayers = model.nLayers;
  const nExpert = model.nExperts ?? 0;
  const nGqa = model.nKvHeads > 0 ? Math.trunc(model.nHeads / model.nKvHeads) : 0;
  const is70B = (model.arch === 'llama' && nLayers === 80 && model.nHeads !== model.nKvHeads) || (model.arch === 'qwen2' && nLayers === 80);
  const falcon = model.arch === 'falcon';
  const quantized = ggmlTypeInfo(base)!.blockSize > 1;
  const cats = tensors.map((t) => category(t.name));
  const nAttnV = cats.filter(isAttnV).length;
  const tied = !tensors.some((t) => t.name === 'output.weight');
  const F = QUANT_MIXES;
  let iAttnV = 0;
  let iFfnDown = 0;

  /** llama_tensor_get_type_impl for one tensor (counters advance as in llama.cpp). */
  const rule = (t: MixTensor, cat: Category): GgmlType => {
    let type: GgmlType = base;
    if (cat === 'output' || (tied && cat === 'token_embd')) {
      const nx = t.dims[0]!;
      if (falcon || nx % ggmlTypeInfo(base)!.blockSize !== 0) type = G.Q8_0;
      else if (type !== G.Q8_0) type = G.Q6_K;
    } else if (cat === 'token_embd') {
      // only the IQ1/IQ2/IQ3/TQ file types change an untied token_embd
    } else if (isAttnV(cat)) {
      if (ftype === F.q2_k.ftype) type = nGqa >= 4 ? G.Q4_K : G.Q3_K;
      else if (ftype === F.q3_k_m.ftype) type = iAttnV < 2 ? G.Q5_K : G.Q4_K;
      else if (ftype === F.q3_k_l.ftype) type = G.Q5_K;
      else if ((ftype === F.iq4_nl.ftype || ftype === F.iq4_xs.ftype) && nGqa >= 4) type = G.Q5_K;
      else if ((ftype === F.q4_k_m.ftype || ftype === F.q5_k_m.ftype) && useMoreBits(iAttnV, nAttnV)) type = G.Q6_K;
      else if (ftype === F.q4_k_s.ftype && iAttnV < 4) type = G.Q5_K;
      if (is70B && (type === G.Q3_K || type === G.Q4_K)) type = G.Q5_K;
      if (nExpert === 8) type = G.Q8_0;
      iAttnV++;
    } else if (cat === 'attn_k') {
      if (nExpert === 8) type = G.Q8_0;
    } else if (cat === 'ffn_down') {
      let iLayer = iFfnDown;
      if (nExpert > 1) {
        iLayer = layerOf(t.name);
        if (iLayer < 0 || iLayer >= nLayers) throw new RangeError(`cannot determine the layer of ${t.name} (model has ${nLayers})`);
      }
      const n = nLayers;
      if (ftype === F.q2_k.ftype) type = G.Q3_K;
      else if (ftype === F.q3_k_m.ftype) type = iLayer < Math.trunc(n / 16) ? G.Q5_K : !falcon || useMoreBits(iLayer, n) ? G.Q4_K : G.Q3_K;
      else if (ftype === F.q3_k_l.ftype) type = falcon ? G.Q4_K : G.Q5_K;
      else if (ftype === F.q4_k_m.ftype) {
        if (falcon) type = iLayer < Math.trunc(n / 16) ? G.Q6_K : useMoreBits(iLayer, n) ? G.Q5_K : G.Q4_K;
        else if (useMoreBits(iLayer, n)) type = G.Q6_K;
      } else if (iLayer < Math.trunc(n / 8) && (ftype === F.iq4_nl.ftype || ftype === F.iq4_xs.ftype)) type = G.Q5_K;
      else if (ftype === F.q5_k_m.ftype && useMoreBits(iLayer, n)) type = G.Q6_K;
      else if (ftype === F.q4_k_s.ftype && !falcon && iLayer < Math.trunc(n / 8)) type = G.Q5_K;
      iFfnDown++;
    } else if (cat === 'attn_output') {
      if (!falcon) {
        if (nExpert === 8) {
          const bump = [F.q2_k, F.q3_k_s, F.q3_k_m, F.iq4_nl, F.q4_k_s, F.q4_k_m, F.iq4_xs].some((x) => x.ftype === ftype);
          if (bump) type = G.Q5_K;
        } else if (ftype === F.q2_k.ftype) type = G.Q3_K;
        else if (ftype === F.q3_k_m.ftype) type = G.Q4_K;
        else if (ftype === F.q3_k_l.ftype) type = G.Q5_K;
      } else if (ftype === F.q3_k_l.ftype) type = G.Q4_K;
    }
    // (attn_q, ffn_gate, ffn_up: only the IQ3 file types change them; attn_qkv is taken by the
    // attn_v branch above, as in llama.cpp, whose own attn_qkv branch cannot be reached)
    return type;
  };

  const out: Array<GgmlType | null> = tensors.map(() => null);
  for (const i of quantizeOrder(tensors)) {
    const t = tensors[i]!;
    if (!mixQuantizes(t)) continue;
    if (!quantized) {
      out[i] = base; // F32 / F16 / BF16: every matrix in that type
      continue;
    }
    const type = pure ? base : rule(t, cats[i]!);
    out[i] = fallbackType(type, t.dims[0]!);
  }
  return out;
}

/** Validates a mix name (case-insensitive), else InvalidOptionError listing the known ones. */
export function quantMix(name: string): QuantMix {
  const t = name.toLowerCase();
  if (!(t in QUANT_MIXES)) throw new InvalidOptionError('--type', `unknown type '${name}'; known: ${QUANT_MIX_NAMES.join(', ')}`);
  return t as QuantMix;
}
