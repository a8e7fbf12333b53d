/**
 * Gated feed-forward blocks: out = down(act(gate(x)) * up(x)). SwiGLU (act = SiLU) is the
 * llama family's FFN, GEGLU (act = GELU, tanh approximation) gemma's.
 */
import type { LayerWeights } from '../../weights/store.js';
import { geluMul, siluMul } from '../../native/index.js';
import { linear } from './linear.js';

/** Scratch a gated FFN computes in: two [m, ffnDim] buffers. */
export interface FfnScratch {
  hb: Float32Array;
  hb2: Float32Array;
}

/**
 * SwiGLU over m rows with the layer's ffn_gate / ffn_up / ffn_down:
 * hb = silu(x·Wgate^T) * (x·Wup^T) [m, ffnDim]; out = hb·Wdown^T [m, dim]. out may be x.
 */
export function swiglu(out: Float32Array, w: LayerWeights, x: Float32Array, m: number, s: FfnScratch): void {
  gated(out, w, x, m, s, siluMul);
}

/**
 * SwiGLU over a fused gate | up projection (phi3's ffn_up [dim, 2 * ffnDim], gate rows first,
 * as ggml_swiglu splits it): hb = silu(x·Wgate^T) * (x·Wup^T); out = hb·Wdown^T. out may be x.
 */
export function swigluFused(out: Float32Array, w: LayerWeights, x: Float32Array, m: number, s: FfnScratch): void {
  const gateUp = w.get('ffn_up.weight');
  const ffnDim = gateUp.dims[1]! / 2;
  linear(s.hb, gateUp, x, m, { start: 0, count: ffnDim });
  linear(s.hb2, gateUp, x, m, { start: ffnDim, count: ffnDim });
  siluMul(s.hb, s.hb, s.hb2, m * ffnDim);
  linear(out, w.get('ffn_down.weight'), s.hb, m);
}

/** GEGLU over m rows: hb = gelu(x·Wgate^T) * (x·Wup^T); out = hb·Wdown^T. out may be x. */
export function geglu(out: Float32Array, w: LayerWeights, x: Float32Array, m: number, s: FfnScratch): void {
  gated(out, w, x, m, s, geluMul);
}

/** The gate's activation times up, over n values in rows of rowLength (siluMul computes a row's tail as ggml). */
type GateKernel = (out: Float32Array, gate: Float32Array, up: Float32Array, n: number, rowLength: number) => void;

function gated(out: Float32Array, w: LayerWeights, x: Float32Array, m: number, s: FfnScratch, act: GateKernel): void {
  const up = w.get('ffn_up.weight');
  const ffnDim = up.dims[1]!;
  linear(s.hb, w.get('ffn_gate.weight'), x, m);
  linear(s.hb2, up, x, m);
  act(s.hb, s.hb, s.hb2, m * ffnDim, ffnDim);
  linear(out, w.get('ffn_down.weight'), s.hb, m);
}
