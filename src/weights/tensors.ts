/**
 * What the weight stores and the planner know about a model file's tensors: which block a
 * tensor belongs to (`blk.N.<shortName>`), what kind it is, and where its bytes are.
 */
import { InvalidModelError } from '../errors.js';
import type { GgufFile, GgufTensorInfo } from '../gguf/reader.js';
import type { WeightTensor } from './store.js';

/**
 * Tensor kinds the planner distinguishes (llama.cpp names without "blk.N." and ".weight");
 * attn_qkv is phi3's fused q/k/v projection (its ffn_up holds gate and up).
 * Mixture-of-Experts blocks have a router (ffn_gate_inp, [dim, numExperts]) and the experts'
 * matrices stacked in ffn_{gate,up,down}_exps ([dim, ffnExp, numExperts] in ggml order: expert
 * e is one contiguous byte range of each).
 */
export type TensorKind =
  | 'attn_q'
  | 'attn_k'
  | 'attn_v'
  | 'attn_qkv'
  | 'attn_output'
  | 'ffn_gate'
  | 'ffn_up'
  | 'ffn_down'
  | 'ffn_gate_inp'
  | 'ffn_gate_exps'
  | 'ffn_up_exps'
  | 'ffn_down_exps'
  | 'norm'
  | 'bias'
  | 'token_embd'
  | 'output'
  | 'other';

/** One tensor as the planner and the stores see it. */
export interface TensorEntry {
  /** Full GGUF name, e.g. "blk.3.attn_q.weight". */
  name: string;
  /** Block index, or -1 for tensors outside the blocks. */
  layer: number;
  /** Name within the block ("attn_q.weight"), or the full name for globals. */
  shortName: string;
  kind: TensorKind;
  /** Bytes of tensor data. */
  bytes: number;
  /** Absolute offset of the data in the file. */
  fileOffset: number;
  info: GgufTensorInfo;
}

const BLOCK = /^blk\.(\d+)\.(.+)$/;
const MATRIX_KINDS: ReadonlySet<string> = new Set([
  'attn_q', 'attn_k', 'attn_v', 'attn_qkv', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down', 'ffn_gate_inp', 'ffn_gate_exps', 'ffn_up_exps', 'ffn_down_exps',
]);

/** The stacked expert tensors of a MoE block. */
export const EXPERT_KINDS: readonly TensorKind[] = ['ffn_gate_exps', 'ffn_up_exps', 'ffn_down_exps'];

/**
 * The kind of a tensor from its name. `tiedOutput` marks token_embd as the output matrix too
 * (files without output.weight reuse the embeddings for the logits, so they are read whole
 * every token).
 */
export function tensorKind(name: string, tiedOutput = false): TensorKind {
  const m = BLOCK.exec(name);
  const short = m ? m[2]! : name;
  if (short.endsWith('.bias')) return 'bias';
  if (short.endsWith('_norm.weight') || short === 'norm.weight') return 'norm';
  if (!m) {
    if (name === 'token_embd.weight') return tiedOutput ? 'output' : 'token_embd';
    if (name === 'output.weight') return 'output';
    return 'other';
  }
  const base = short.replace(/\.weight$/, '');
  return MATRIX_KINDS.has(base) ? (base as TensorKind) : 'other';
}

/** Every tensor of a GGUF file as a TensorEntry, in file order. */
export function listTensors(file: GgufFile): TensorEntry[] {
  const tied = file.tensor('output.weight') === undefined;
  return file.tensors.map((info) => {
    const m = BLOCK.exec(info.name);
    return {
      name: info.name,
      layer: m ? Number(m[1]) : -1,
      shortName: m ? m[2]! : info.name,
      kind: tensorKind(info.name, tied),
      bytes: info.byteSize,
      fileOffset: info.fileOffset,
      info,
    };
  });
}

/** Number of blocks: `<arch>.block_count`, else one more than the highest `blk.N`. */
export function countLayers(file: GgufFile, tensors: readonly TensorEntry[] = listTensors(file)): number {
  const arch = file.architecture;
  const fromMeta = arch ? file.getNumber(`${arch}.block_count`) : undefined;
  const fromNames = tensors.reduce((m, t) => Math.max(m, t.layer + 1), 0);
  return fromMeta !== undefined ? Math.max(fromMeta, fromNames) : fromNames;
}

/** LayerWeights over a map of short names to tensors. @internal */
export class MapLayerWeights {
  constructor(
    readonly layer: number,
    private readonly tensors: ReadonlyMap<string, WeightTensor>,
  ) {}

  get(shortName: string): WeightTensor {
    const t = this.tensors.get(shortName);
    if (!t) {
      throw new InvalidModelError(`tensor 'blk.${this.layer}.${shortName}' is missing from the model file`);
    }
    return t;
  }

  find(shortName: string): WeightTensor | undefined {
    return this.tensors.get(shortName);
  }
}
