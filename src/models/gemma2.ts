/**
 * gemma2 (Gemma 2): pre- and post-norms around attention and the FFN, a GELU-gated FFN,
 * soft-capped attention logits and final logits, and layers alternating between a sliding
 * window (even layers, "local") and the whole context (odd layers, "global").
 *
 *   x = token_embd[tokens] * sqrt(dim)
 *   for each block:
 *     q, k, v = Wq · rmsnorm(x), Wk · rmsnorm(x), Wv · rmsnorm(x)
 *     att = attention(rope(q) * queryScale, rope(k), v; softcap, window if local)
 *     h = x + rmsnorm(Wo · att) * post_attention_norm
 *     x = h + rmsnorm(Wdown · (gelu(Wgate · rmsnorm(h)) * Wup · rmsnorm(h))) * post_ffw_norm
 *   logits = tanh(Wout · rmsnorm(x) / cap) * cap
 *
 * Norm weights are used as stored: llama.cpp's converter has already added Gemma's 1 to them.
 * RoPE in the NeoX layout. The query scale is 1/sqrt(headDim), except for the 27B
 * (46 layers), which uses 1/sqrt(dim / heads) as llama.cpp does.
 */
import type { Architecture } from './registry.js';
import { readModelConfig, type GgufMetadataSource, type ModelConfig } from './config.js';
import { Transformer, type Batch, type SeqRun, type TransformerOptions } from './transformer.js';
import type { LayerWeights, WeightStore } from '../weights/store.js';
import type { KvCache } from '../kv/cache.js';
import { linear } from './blocks/linear.js';
import { rmsNorm } from './blocks/norm.js';
import { attention, rope, type AttentionOptions, type RopeOptions } from './blocks/attention.js';
import { geglu } from './blocks/ffn.js';
import { add, scale, softcap } from '../native/index.js';
import { InvalidModelError } from '../errors.js';

/** Gemma's hyperparameters beyond the common ones. */
export interface GemmaConfig extends ModelConfig {
  /** Attention-logit soft-capping (attn_logit_softcapping); 0 = off (gemma3). */
  attnSoftcap: number;
  /** Final-logit soft-capping (final_logit_softcapping); 0 = off. */
  finalSoftcap: number;
  /** Tokens a local layer sees (attention.sliding_window); 0 = no local layers. */
  slidingWindow: number;
  /** Per layer: true if it is a local (sliding-window) layer. */
  isLocal: boolean[];
  /** RoPE base of the local layers (rope.freq_base_swa; default 10000), unscaled. */
  ropeBaseLocal: number;
  /** Factor on q after RoPE (q·k is not scaled again). */
  queryScale: number;
}

function num(file: GgufMetadataSource, key: string, fallback: number): number {
  const v = file.get(key);
  if (v === undefined || v === null) return fallback;
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw new InvalidModelError(`metadata key '${key}' should be a non-negative number, got ${String(v)}`);
  return n;
}

/**
 * Gemma 2/3 config: llama.cpp's gemma2 / gemma3 hparams. Local layers follow the sliding-window
 * pattern: layer l is local when l % period < period - 1 (period 2 for gemma2, 6 for gemma3,
 * or attention.sliding_window_pattern).
 */
export function readGemmaConfig(file: GgufMetadataSource, arch: 'gemma2' | 'gemma3'): GemmaConfig {
  const c = readModelConfig(file, arch);
  const gemma2 = arch === 'gemma2';
  const slidingWindow = num(file, `${arch}.attention.sliding_window`, gemma2 ? 4096 : 0);
  const pattern = file.get(`${arch}.attention.sliding_window_pattern`);
  if (Array.isArray(pattern)) throw new InvalidModelError(`per-layer ${arch}.attention.sliding_window_pattern arrays are not supported`);
  const period = num(file, `${arch}.attention.sliding_window_pattern`, gemma2 ? 2 : 6);
  const isLocal = Array.from({ length: c.numLayers }, (_, l) => slidingWindow > 0 && (period === 0 || l % period < period - 1));
  // ref: llama.cpp gemma2/gemma3 load_arch_hparams: the 27B scales queries by 1/sqrt(n_embd / n_head)
  const is27b = (gemma2 && c.numLayers === 46) || (!gemma2 && c.numLayers === 62);
  const queryScale = Math.fround(1 / Math.fround(Math.sqrt(is27b ? Math.floor(c.dim / c.numHeads) : c.headDim)));
  return {
    ...c,
    attnSoftcap: gemma2 ? num(file, `${arch}.attn_logit_softcapping`, 50) : 0,
    finalSoftcap: num(file, `${arch}.final_logit_softcapping`, gemma2 ? 30 : 0),
    slidingWindow,
    isLocal,
    layerWindows: isLocal.map((local) => (local ? slidingWindow : 0)),
    ropeBaseLocal: num(file, `${arch}.rope.freq_base_swa`, gemma2 ? c.ropeFreqBase : 10000),
    queryScale,
  };
}

export class Gemma2Model extends Transformer {
  declare readonly config: GemmaConfig;
  private readonly ropeGlobal: RopeOptions;
  private readonly ropeLocal: RopeOptions;
  private readonly attnGlobal: AttentionOptions;
  private readonly attnLocal: AttentionOptions;

  constructor(config: ModelConfig, weights: WeightStore, kv: KvCache, options: TransformerOptions) {
    super(config, weights, kv, options);
    const c = this.config;
    this.ropeGlobal = { mode: 'neox', freqBase: c.ropeFreqBase, freqScale: 1 / c.ropeScale, freqFactors: null };
    this.ropeLocal = { mode: 'neox', freqBase: c.ropeBaseLocal, freqScale: c.architecture === 'gemma2' ? 1 / c.ropeScale : 1, freqFactors: null };
    // q arrives scaled (queryScale), so the scores are not scaled again
    this.attnGlobal = { numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim, scale: 1, ...(c.attnSoftcap > 0 ? { softcap: c.attnSoftcap } : {}) };
    this.attnLocal = { ...this.attnGlobal, window: c.slidingWindow };
  }

  forward(batch: Batch): Float32Array {
    const c = this.config;
    const s = this.s;
    const m = batch.numRows;
    const runs = this.begin(batch);

    // token embeddings, scaled: x = token_embd[tokens] * sqrt(dim)  [m, dim]
    this.embed(batch);
    scale(s.x, m * c.dim, Math.fround(Math.sqrt(c.dim)));

    for (let l = 0; l < c.numLayers; l++) {
      const w = this.weights.acquire(l);

      // attention rmsnorm: xb = rmsnorm(x) * attn_norm  [m, dim]
      rmsNorm(s.xb, s.x, w.get('attn_norm.weight'), m, c.rmsEps);
      // self-attention (local layers within the sliding window): att  [m, qDim]
      this.selfAttention(l, w, batch, runs);
      // output projection, post-norm and residual: x += rmsnorm(att·Wo^T) * post_attention_norm
      linear(s.xb, w.get('attn_output.weight'), s.att, m);
      rmsNorm(s.xb, s.xb, w.get('post_attention_norm.weight'), m, c.rmsEps);
      add(s.x, s.x, s.xb, m * c.dim);

      // ffn rmsnorm, GEGLU, post-norm and residual: x += rmsnorm(ffn(rmsnorm(x))) * post_ffw_norm
      rmsNorm(s.xb, s.x, w.get('ffn_norm.weight'), m, c.rmsEps);
      geglu(s.xb, w, s.xb, m, s);
      rmsNorm(s.xb, s.xb, w.get('post_ffw_norm.weight'), m, c.rmsEps);
      add(s.x, s.x, s.xb, m * c.dim);

      this.weights.release(l);
    }

    // final rmsnorm, classifier, soft-capping: logits = tanh(rmsnorm(x)·Wout^T / cap) * cap
    const outputNorm = this.global('output_norm.weight');
    const logits = this.head(batch, (x, rows) => rmsNorm(x, x, outputNorm, rows, c.rmsEps));
    if (c.finalSoftcap > 0) softcap(logits, logits.length, c.finalSoftcap);
    return logits;
  }

  /** q, k, v from s.xb, rotated with the layer's RoPE, q scaled, then attention into s.att. */
  protected selfAttention(layer: number, w: LayerWeights, batch: Batch, runs: readonly SeqRun[]): void {
    const c = this.config;
    const s = this.s;
    const m = batch.numRows;
    const local = c.isLocal[layer]!;
    // q = xb·Wq^T [m, qDim], k = xb·Wk^T, v = xb·Wv^T [m, kvDim]
    this.qkv(w, m);
    // rotary embedding: local layers use their own base, unscaled
    const r = local ? this.ropeLocal : this.ropeGlobal;
    rope(s.q, m, c.numHeads, c.headDim, batch.positions, r);
    rope(s.k, m, c.numKvHeads, c.headDim, batch.positions, r);
    // q *= queryScale (after RoPE, as llama.cpp)
    scale(s.q, m * c.numHeads * c.headDim, c.queryScale);
    attention(this.kv, layer, runs, local ? this.attnLocal : this.attnGlobal);
  }

  /** The q, k, v projections of s.xb. */
  protected qkv(w: LayerWeights, m: number): void {
    const s = this.s;
    linear(s.q, w.get('attn_q.weight'), s.xb, m);
    linear(s.k, w.get('attn_k.weight'), s.xb, m);
    linear(s.v, w.get('attn_v.weight'), s.xb, m);
  }
}

/** Tensors of a Gemma 2 block. */
export const GEMMA2_LAYER_TENSORS: readonly string[] = [
  'attn_norm.weight', 'attn_q.weight', 'attn_k.weight', 'attn_v.weight', 'attn_output.weight', 'post_attention_norm.weight',
  'ffn_norm.weight', 'ffn_gate.weight', 'ffn_up.weight', 'ffn_down.weight', 'post_ffw_norm.weight',
];

export const gemma2: Architecture = {
  name: 'gemma2',
  readConfig: (file) => readGemmaConfig(file, 'gemma2'),
  requiredLayerTensors: GEMMA2_LAYER_TENSORS,
  create: (config, weights, kv, options) => new Gemma2Model(config, weights, kv, options),
};
