/**
 * The MoE feed-forward step that MoE architectures put in place of SwiGLU (llama-moe.ts,
 * qwen3moe.ts): its scratch, the experts from the weight store, and the prediction of the next
 * layer's experts that lets the store read them while this layer computes.
 */
import { InvalidModelError } from '../errors.js';
import type { LayerWeights, WeightStore, ExpertWeights } from '../weights/store.js';
import type { ModelConfig, MoeConfig } from './config.js';
import { MoeScratch, moeFfn, predictExperts } from './blocks/moe.js';

export class MoeFeedForward {
  readonly #c: ModelConfig;
  readonly #moe: MoeConfig;
  readonly #experts: ExpertWeights;
  readonly #s: MoeScratch;

  constructor(config: ModelConfig, weights: WeightStore, maxRows: number) {
    if (!config.moe) throw new Error('MoeFeedForward: the config has no MoE part');
    if (!weights.experts) throw new InvalidModelError('this weight store does not serve experts (a MoE model needs one that does)');
    this.#c = config;
    this.#moe = config.moe;
    this.#experts = weights.experts;
    this.#s = new MoeScratch(config.moe, config.dim, maxRows);
  }

  /** Scratch bytes of the MoE step for maxRows rows. */
  static scratchBytes(c: ModelConfig, maxRows: number): number {
    return c.moe ? MoeScratch.bytes(c.moe, c.dim, maxRows) : 0;
  }

  /**
   * xb = moe(xb) in place for `layer` ([m, dim], xb normed by ffn_norm); h is the residual
   * stream that xb was normed from (the routers of the next `lookahead` layers applied to it
   * predict their experts).
   */
  run(xb: Float32Array, h: Float32Array, m: number, layer: number, w: LayerWeights): void {
    const c = this.#c;
    const ex = this.#experts;
    // later layers' experts, predicted from this layer's hidden state, for prefetch; a
    // prediction of every expert (a large batch) is not made farther than one layer
    const ahead: { layer: number; experts: Int32Array }[] = [];
    for (let d = 1; d <= ex.lookahead && layer + d < c.numLayers; d++) {
      const experts = predictExperts(h, m, layer + d, ex, this.#moe, c.dim, c.rmsEps, this.#s);
      ahead.push({ layer: layer + d, experts });
      if (experts.length === this.#moe.numExperts) break;
    }
    moeFfn(xb, xb, m, layer, w.get('ffn_gate_inp.weight'), ex, this.#moe, c.dim, this.#s, ahead);
  }
}
