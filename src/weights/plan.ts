/**
 * The FlexInfer residency planner: a pure function from (tensors, budget, hardware figures)
 * to a Plan saying, for every tensor, resident (loaded once, locked) or streamed (read every
 * token into a ring of `window + 1` layer slots, `window` layers ahead of compute).
 *
 * NOTE: how the plan is built.
 *  - Always resident: norms, biases, small global tensors and the output matrix (streaming
 *    the output would need a buffer of its own size, so it would save no memory). Token
 *    embeddings are never resident under a budget: the rows of the batch's tokens are read.
 *  - Layer matrices are made resident one (kind, layer) at a time in a fixed step sequence
 *    per candidate order of kinds. Within a kind the next layer is the one with the most
 *    streamed bytes left (ties: a well-spread order of layers), which is balanced memory
 *    locking: every kind is resident in all layers or in evenly spread layers, and per-layer
 *    streamed bytes stay within one tensor's size of each other. Never "the first N layers".
 *  - For a budget, each candidate takes the longest prefix of its steps that fits (resident +
 *    ring + KV + scratch <= budget; the ring shrinks as the largest layer's streamed bytes
 *    shrink, so the memory of a prefix is not monotone and every prefix is checked).
 *  - Flexible tensor preservation: candidates differ in which kinds come first (attention
 *    first, FFN first, smallest first, largest first). With a small budget the small
 *    attention tensors (K/V smallest under GQA) fill it with fine granularity; with a larger
 *    one, FFN-first plans leave a small partial kind. The cost model picks:
 *
 *      t_token = sum_l max(compute_l, streamed_l / readBandwidth) + output compute + embedding rows
 *
 *    ties go to fewer bytes read per token.
 */
import { InsufficientMemoryError } from '../errors.js';
import type { TensorKind } from './tensors.js';

/** One tensor as the planner needs it (see listTensors for a GGUF file's). */
export interface PlanTensorInput {
  name: string;
  /** Block index, -1 outside the blocks. */
  layer: number;
  kind: TensorKind;
  bytes: number;
  /** For token_embd: bytes of one row (read per token). Default bytes / 32000. */
  rowBytes?: number;
}

/** Measured (or assumed) speeds of this machine. */
export interface HardwareFigures {
  /** Sustained read bandwidth of the model's storage (bytes/s). */
  readBytesPerSec: number;
  /** Compute time of one layer for one token; overrides computeBytesPerSec. */
  computeSecPerLayer?: number;
  /** Weight bytes the kernels get through per second (decode is memory-bound); default 8e9. */
  computeBytesPerSec?: number;
}

/** Planner inputs besides the tensors. */
export interface PlanOptions {
  /** The whole footprint allowed (bytes); Infinity = no budget, everything resident. */
  budget: number;
  /** KV cache pool bytes (a tenant of the same budget). */
  kvBytes?: number;
  /** Activation scratch bytes. */
  scratchBytes?: number;
  hardware: HardwareFigures;
  /** Prefetch window in layers (default 3); the ring has window + 1 layer slots. */
  window?: number;
}

export type Placement = 'resident' | 'streamed' | 'rows';

/** Where one tensor lives. */
export interface TensorPlacement {
  name: string;
  layer: number;
  kind: TensorKind;
  bytes: number;
  /** rows = token embeddings, read by row per token. */
  placement: Placement;
}

/** Per-layer totals. */
export interface LayerPlan {
  layer: number;
  residentBytes: number;
  streamedBytes: number;
  /** Resident and streamed bytes by tensor kind. */
  byKind: Partial<Record<TensorKind, { resident: number; streamed: number }>>;
}

/** The planner's answer. */
export interface Plan {
  budget: number;
  window: number;
  numLayers: number;
  tensors: TensorPlacement[];
  layers: LayerPlan[];
  /** Bytes of one ring slot (the largest layer's streamed tensors, each rounded to 4096). */
  slotBytes: number;
  /** min(window + 1, numLayers) (a ring never needs more slots than layers), 0 when nothing is streamed. */
  numSlots: number;
  streamBufferBytes: number;
  /** How the budget is spent. */
  split: { weights: number; buffers: number; kv: number; scratch: number; total: number };
  residentBytes: number;
  streamedBytesPerToken: number;
  /** Streamed bytes plus one embedding row. */
  bytesReadPerToken: number;
  predictedSecPerToken: number;
  predictedTokensPerSec: number;
  /** Name of the candidate order that won ("attention-first", ...), or "all-resident". */
  strategy: string;
  hardware: HardwareFigures;
}

/** Alignment of resident tensors in their buffer (SIMD rows). */
export const RESIDENT_ALIGN = 64;
/** Alignment of streamed tensors in a ring slot (O_DIRECT). */
export const STREAM_ALIGN = 4096;
const DEFAULT_COMPUTE_BYTES_PER_SEC = 8e9;
const DEFAULT_WINDOW = 3;

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;
/** Tensors from this size up are resident at 4096-aligned offsets, so they load with O_DIRECT. */
export const DIRECT_LOAD_MIN_BYTES = 1 << 20;
/** Memory a resident tensor takes in the store (large ones padded to 4096: under 0.4%). */
export const residentFootprint = (bytes: number) => roundUp(bytes, bytes >= DIRECT_LOAD_MIN_BYTES ? STREAM_ALIGN : RESIDENT_ALIGN);
/** Memory a streamed tensor takes in a ring slot. */
export const streamFootprint = (bytes: number) => roundUp(bytes, STREAM_ALIGN);

const ATTENTION: TensorKind[] = ['attn_q', 'attn_k', 'attn_v', 'attn_output'];
const FFN: TensorKind[] = ['ffn_gate', 'ffn_up', 'ffn_down'];

/** Tensors that are always resident under a budget. */
function alwaysResident(t: PlanTensorInput): boolean {
  if (t.kind === 'norm' || t.kind === 'bias' || t.kind === 'output') return true;
  return t.layer < 0 && t.kind === 'other';
}

interface Candidate {
  name: string;
  /** Step i makes streamable tensor steps[i] resident. */
  steps: number[];
}

/** Plans residency for `tensors` under `options.budget`. Throws InsufficientMemoryError. */
export function planResidency(tensors: readonly PlanTensorInput[], options: PlanOptions): Plan {
  const kv = options.kvBytes ?? 0;
  const scratch = options.scratchBytes ?? 0;
  const window = options.window ?? DEFAULT_WINDOW;
  if (!(Number.isInteger(window) && window >= 1)) throw new RangeError(`window must be an integer >= 1, got ${window}`);
  if (!(options.hardware.readBytesPerSec > 0)) throw new RangeError('hardware.readBytesPerSec must be > 0');
  const numLayers = tensors.reduce((m, t) => Math.max(m, t.layer + 1), 0);

  if (options.budget === Infinity) return allResident(tensors, numLayers, options, kv, scratch);

  // Streamable = layer matrices (and other layer tensors); fixed = always resident.
  const streamable: number[] = [];
  let fixedBytes = 0;
  tensors.forEach((t, i) => {
    if (t.kind === 'token_embd') return;
    if (alwaysResident(t)) fixedBytes += residentFootprint(t.bytes);
    else streamable.push(i);
  });
  const candidates = buildCandidates(tensors, streamable, numLayers);

  // Memory of a prefix of n steps of a candidate, for every n (resident + ring + kv + scratch).
  const baseStreamed = new Array<number>(numLayers).fill(0);
  for (const i of streamable) baseStreamed[tensors[i]!.layer]! += streamFootprint(tensors[i]!.bytes);
  const slots = Math.min(window + 1, numLayers);
  const memoryCurve = (c: Candidate): number[] => {
    const streamed = baseStreamed.slice();
    let resident = fixedBytes;
    const out: number[] = [];
    const total = () => {
      const max = streamed.reduce((m, s) => Math.max(m, s), 0);
      return resident + (max > 0 ? slots * max : 0) + kv + scratch;
    };
    out.push(total());
    for (const i of c.steps) {
      const t = tensors[i]!;
      streamed[t.layer]! -= streamFootprint(t.bytes);
      resident += residentFootprint(t.bytes);
      out.push(total());
    }
    return out;
  };

  let best: Plan | undefined;
  let minimum = Infinity;
  for (const c of candidates) {
    const curve = memoryCurve(c);
    minimum = curve.reduce((m, x) => Math.min(m, x), minimum);
    let n = -1;
    for (let k = curve.length - 1; k >= 0; k--) {
      if (curve[k]! <= options.budget) {
        n = k;
        break;
      }
    }
    if (n < 0) continue;
    const residentSet = new Set(c.steps.slice(0, n));
    const plan = buildPlan(tensors, numLayers, (i) => residentSet.has(i), window, c.name, options, kv, scratch);
    if (!best || better(plan, best)) best = plan;
  }
  if (!best) {
    throw new InsufficientMemoryError(
      options.budget,
      minimum,
      `it must hold the norms and output matrix (${mib(fixedBytes)}), ${slots} layer stream buffers (prefetch window ${window} + 1) of up to ${mib(Math.max(0, ...baseStreamed))} each, the KV cache (${mib(kv)}) and scratch (${mib(scratch)}); raise --memory-budget, lower --ctx-size or use a smaller prefetch window`,
    );
  }
  return best;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** Lower predicted time wins; near-ties (1e-9 relative) go to fewer bytes read. */
function better(a: Plan, b: Plan): boolean {
  const tol = 1e-9 * Math.max(a.predictedSecPerToken, b.predictedSecPerToken);
  if (a.predictedSecPerToken < b.predictedSecPerToken - tol) return true;
  if (a.predictedSecPerToken > b.predictedSecPerToken + tol) return false;
  return a.streamedBytesPerToken < b.streamedBytesPerToken;
}

/**
 * Layers in a well-spread order: the middle layer, then the middles of both halves, and so on
 * (breadth-first bisection), so every prefix is spread over the whole depth and "resident in
 * c layers" means c roughly evenly spaced layers.
 */
export function spreadOrder(numLayers: number): number[] {
  const order: number[] = [];
  const queue: [number, number][] = [[0, numLayers]];
  for (let q = 0; q < queue.length; q++) {
    const [lo, hi] = queue[q]!;
    if (lo >= hi) continue;
    const mid = Math.floor((lo + hi) / 2);
    order.push(mid);
    queue.push([lo, mid], [mid + 1, hi]);
  }
  return order;
}

/** Candidate step sequences (one per order of kinds), balanced within each kind. */
function buildCandidates(tensors: readonly PlanTensorInput[], streamable: number[], numLayers: number): Candidate[] {
  // Size of each kind (mean bytes per tensor) to order kinds by size.
  const kindBytes = new Map<TensorKind, { sum: number; n: number }>();
  for (const i of streamable) {
    const t = tensors[i]!;
    const e = kindBytes.get(t.kind) ?? { sum: 0, n: 0 };
    e.sum += t.bytes;
    e.n++;
    kindBytes.set(t.kind, e);
  }
  const present = [...kindBytes.keys()];
  const size = (k: TensorKind) => kindBytes.get(k)!.sum / kindBytes.get(k)!.n;
  const bySize = (ks: TensorKind[]) => ks.filter((k) => kindBytes.has(k)).sort((a, b) => size(a) - size(b));
  const rest = (ks: TensorKind[]) => bySize(present.filter((k) => !ks.includes(k)));
  const orders: [string, TensorKind[]][] = [
    ['attention-first', [...bySize(ATTENTION), ...bySize(FFN)]],
    ['ffn-first', [...bySize(FFN), ...bySize(ATTENTION)]],
    ['smallest-first', bySize(present)],
    ['largest-first', bySize(present).reverse()],
  ];
  const spread = spreadOrder(numLayers);
  const rank = new Array<number>(numLayers);
  spread.forEach((l, r) => (rank[l] = r));
  const seen = new Set<string>();
  const out: Candidate[] = [];
  for (const [name, head] of orders) {
    const kinds = [...head, ...rest(head)];
    const key = kinds.join(',');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ name, steps: stepsFor(tensors, streamable, kinds, numLayers, rank) });
  }
  return out;
}

/** The balanced step sequence for one order of kinds. */
function stepsFor(tensors: readonly PlanTensorInput[], streamable: number[], kinds: TensorKind[], numLayers: number, rank: number[]): number[] {
  const streamed = new Array<number>(numLayers).fill(0);
  for (const i of streamable) streamed[tensors[i]!.layer]! += streamFootprint(tensors[i]!.bytes);
  const steps: number[] = [];
  for (const kind of kinds) {
    const todo = streamable.filter((i) => tensors[i]!.kind === kind);
    while (todo.length > 0) {
      // The tensor of this kind in the layer with the most streamed bytes (ties: spread order).
      let bi = 0;
      for (let j = 1; j < todo.length; j++) {
        const a = tensors[todo[j]!]!;
        const b = tensors[todo[bi]!]!;
        const sa = streamed[a.layer]!;
        const sb = streamed[b.layer]!;
        if (sa > sb || (sa === sb && rank[a.layer]! < rank[b.layer]!)) bi = j;
      }
      const i = todo.splice(bi, 1)[0]!;
      streamed[tensors[i]!.layer]! -= streamFootprint(tensors[i]!.bytes);
      steps.push(i);
    }
  }
  return steps;
}

function computeTimes(tensors: readonly PlanTensorInput[], numLayers: number, hw: HardwareFigures): { perLayer: number[]; output: number } {
  const rate = hw.computeBytesPerSec ?? DEFAULT_COMPUTE_BYTES_PER_SEC;
  const perLayer = new Array<number>(numLayers).fill(0);
  let output = 0;
  for (const t of tensors) {
    if (t.layer >= 0) perLayer[t.layer]! += t.bytes / rate;
    else if (t.kind === 'output') output += t.bytes / rate;
  }
  if (hw.computeSecPerLayer !== undefined) perLayer.fill(hw.computeSecPerLayer);
  return { perLayer, output };
}

function buildPlan(
  tensors: readonly PlanTensorInput[],
  numLayers: number,
  isResident: (i: number) => boolean,
  window: number,
  strategy: string,
  options: PlanOptions,
  kv: number,
  scratch: number,
): Plan {
  const layers: LayerPlan[] = Array.from({ length: numLayers }, (_, layer) => ({ layer, residentBytes: 0, streamedBytes: 0, byKind: {} }));
  const slotUse = new Array<number>(numLayers).fill(0);
  const placements: TensorPlacement[] = [];
  let residentBytes = 0;
  let weights = 0;
  let embedRow = 0;
  tensors.forEach((t, i) => {
    let placement: Placement;
    if (t.kind === 'token_embd') placement = 'rows';
    else if (alwaysResident(t) || isResident(i)) placement = 'resident';
    else placement = 'streamed';
    placements.push({ name: t.name, layer: t.layer, kind: t.kind, bytes: t.bytes, placement });
    if (placement === 'rows') embedRow = t.rowBytes ?? Math.ceil(t.bytes / 32000);
    if (placement === 'resident') {
      residentBytes += t.bytes;
      weights += residentFootprint(t.bytes);
    }
    if (t.layer < 0) return;
    const lp = layers[t.layer]!;
    const k = (lp.byKind[t.kind] ??= { resident: 0, streamed: 0 });
    if (placement === 'resident') {
      lp.residentBytes += t.bytes;
      k.resident += t.bytes;
    } else {
      lp.streamedBytes += t.bytes;
      k.streamed += t.bytes;
      slotUse[t.layer]! += streamFootprint(t.bytes);
    }
  });
  const slotBytes = slotUse.reduce((m, s) => Math.max(m, s), 0);
  const numSlots = slotBytes > 0 ? Math.min(window + 1, numLayers) : 0;
  const buffers = numSlots * slotBytes;
  const streamed = layers.reduce((a, l) => a + l.streamedBytes, 0);
  const { perLayer, output } = computeTimes(tensors, numLayers, options.hardware);
  const bw = options.hardware.readBytesPerSec;
  let t = output + embedRow / bw;
  for (let l = 0; l < numLayers; l++) t += Math.max(perLayer[l]!, layers[l]!.streamedBytes / bw);
  return {
    budget: options.budget,
    window,
    numLayers,
    tensors: placements,
    layers,
    slotBytes,
    numSlots,
    streamBufferBytes: buffers,
    split: { weights, buffers, kv, scratch, total: weights + buffers + kv + scratch },
    residentBytes,
    streamedBytesPerToken: streamed,
    bytesReadPerToken: streamed + embedRow,
    predictedSecPerToken: t,
    predictedTokensPerSec: t > 0 ? 1 / t : Infinity,
    strategy,
    hardware: options.hardware,
  };
}

/** No budget: every tensor resident, token embeddings included. */
function allResident(tensors: readonly PlanTensorInput[], numLayers: number, options: PlanOptions, kv: number, scratch: number): Plan {
  const plan = buildPlan(tensors, numLayers, () => true, options.window ?? DEFAULT_WINDOW, 'all-resident', options, kv, scratch);
  for (const p of plan.tensors) if (p.placement === 'rows') p.placement = 'resident';
  const embd = tensors.filter((t) => t.kind === 'token_embd');
  for (const t of embd) {
    plan.residentBytes += t.bytes;
    plan.split.weights += residentFootprint(t.bytes);
    plan.split.total += residentFootprint(t.bytes);
  }
  plan.bytesReadPerToken = 0;
  const { perLayer, output } = computeTimes(tensors, numLayers, options.hardware);
  plan.predictedSecPerToken = output + perLayer.reduce((a, b) => a + b, 0);
  plan.predictedTokensPerSec = plan.predictedSecPerToken > 0 ? 1 / plan.predictedSecPerToken : Infinity;
  return plan;
}
