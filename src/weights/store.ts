/**
 * What the model sees of its weights. Model code never owns weight memory: per layer it
 * acquires the tensors (resident or streamed in by the FlexInfer streamer, it cannot tell),
 * computes, and releases them. Token embeddings are read by row on demand.
 */
import type { GgmlType } from '../gguf/ggml-type.js';
import type { OutputSlices } from './output-slices.js';

/** One weight tensor's raw bytes in ggml layout: ne[0] = dims[0] is the row length. */
export interface WeightTensor {
  /** GGUF tensor name, e.g. "blk.3.attn_q.weight". */
  readonly name: string;
  readonly type: GgmlType;
  /** ggml dims, innermost first: a matrix [n_in, n_out] has n_out rows of n_in elements. */
  readonly dims: readonly number[];
  /** The tensor's bytes (memory owned by the store; valid until release). */
  readonly data: Uint8Array;
}

/** Tensors of one transformer block, by short name ("attn_q.weight", "ffn_down.weight"). */
export interface LayerWeights {
  readonly layer: number;
  get(shortName: string): WeightTensor;
  /** Like get() but undefined when the file has no such tensor (e.g. optional biases). */
  find(shortName: string): WeightTensor | undefined;
}

/** One expert's matrices: gate and up [dim, ffnExp], down [ffnExp, dim] (ggml order). */
export interface ExpertTensors {
  readonly gate: WeightTensor;
  readonly up: WeightTensor;
  readonly down: WeightTensor;
}

/**
 * The experts of a Mixture-of-Experts model, by (layer, expert): the unit of streaming. The
 * forward pass asks for the distinct experts its batch routes to at a layer; the store calls
 * `compute` with them in memory, in one wave or, when its cache holds fewer, in several (each
 * expert exactly once per call).
 */
export interface ExpertWeights {
  readonly numExperts: number;
  /** Every expert is in memory for good: nothing is read. */
  readonly allResident: boolean;
  /** The store reads predicted experts ahead (false when all are resident or prefetch is off). */
  readonly prefetch: boolean;
  /** How many later layers' experts to predict and read ahead (0 when `prefetch` is false). */
  readonly lookahead: number;
  /**
   * Runs `compute(experts, tensors)` over waves covering `experts` (distinct ids of `layer`).
   * `ahead`: the experts later layers are predicted to need (layer + 1 first), read while this
   * one computes. Tensors are valid during the call only.
   */
  useExperts(
    layer: number,
    experts: Int32Array,
    compute: (experts: Int32Array, tensors: readonly ExpertTensors[]) => void,
    ahead?: readonly { layer: number; experts: Int32Array }[],
  ): void;
  /** Layer `layer`'s ffn_norm and router (ffn_gate_inp), resident, for predicting its experts early. */
  router(layer: number): { norm: WeightTensor; gateInp: WeightTensor };
}

/** The model-facing interface of a weight store. */
export interface WeightStore {
  readonly numLayers: number;
  /** Blocks until the layer's tensors are in memory. Pair with release(layer). */
  acquire(layer: number): LayerWeights;
  /** The model is done with this layer for this forward pass. */
  release(layer: number): void;
  /** A tensor outside the blocks ("output_norm.weight", "output.weight", "rope_freqs.weight"), or undefined. */
  global(name: string): WeightTensor | undefined;
  /** Dequantized rows of token_embd for these token ids into out: [tokens.length, dim] f32. */
  embed(tokens: Int32Array, out: Float32Array): void;
  /** The experts of a MoE model (blk.N.ffn_*_exps are served here, not by acquire). */
  readonly experts?: ExpertWeights;
  /**
   * The output matrix when the plan streams it in row slices (global() then has no output
   * matrix): the classifier computes the logits slice by slice (output-slices.ts).
   */
  readonly outputSlices?: OutputSlices | undefined;
}
