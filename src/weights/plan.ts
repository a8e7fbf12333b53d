/**
 * The FlexInfer residency planner: a pure function from (tensors, budget, hardware figures)
 * to a Plan saying, for every tensor, resident (loaded once, locked) or streamed (read every
 * token into a ring of `window + 1` layer slots, `window` layers ahead of compute).
 *
 * NOTE: how the plan is built.
 *  - Always resident: norms, biases and small global tensors. The output matrix is resident,
 *    or, where its vocabulary makes it large (output-slices.ts: Gemma 3's is 40% of the file),
 *    streamed in row slices through two slice buffers: the planner tries both and the cost
 *    model picks (slicing only wins where the budget cannot hold it otherwise). Token
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
 *    one, FFN-first plans leave a small partial kind. The cost model picks.
 *  - The cost model (costOf) simulates the streaming pipeline for SIM_TOKENS tokens: reads run
 *    back to back at the engine's achieved parallel read rate, a layer's reads start only when
 *    its ring slot is free (the layer numSlots earlier was released), a layer computes when its
 *    reads are done and the previous layer computed, and each token ends with the output
 *    matrix and the embedding rows:
 *
 *      readEnd(s)    = max(readEnd(s-1), computeEnd(s - numSlots)) + streamed(s) / readRate
 *      computeEnd(s) = max(readEnd(s), computeEnd(s-1) [+ tail at a token boundary]) + compute(s)
 *      predicted     = computeEnd(last) / SIM_TOKENS
 *                      + WINDOW_JITTER * sum_l min(readTime_l, compute_l) / window
 *
 *    The last term is an allowance for read-time jitter, which a deeper ring absorbs (it is
 *    what makes a deeper window win when the window does not change the simulated time).
 *    Ties go to the larger window, then to fewer bytes read per token.
 *  - A larger budget never loses to a smaller one (by the cost model): every plan that fits a
 *    budget fits a larger one, the search at a budget covers every (candidate, window) and, per
 *    pair, its longest fitting prefix, and the cost is a max-plus expression of the per-layer
 *    streamed bytes, so making one more tensor resident never raises it. Hence the best plan at
 *    budget B is at least as good as the best plan of any smaller budget; plan.test.ts checks it
 *    as a property over random models and budgets.
 */
import { InsufficientMemoryError } from '../errors.js';
import { outputSliceLayout, type OutputSliceLayout } from './output-slices.js';
import type { TensorKind } from './tensors.js';

/** One tensor as the planner needs it (see listTensors for a GGUF file's). */
export interface PlanTensorInput {
  name: string;
  /** Block index, -1 outside the blocks. */
  layer: number;
  kind: TensorKind;
  bytes: number;
  /**
   * For token_embd: bytes of one row (read per token; default bytes / 32000). For the output
   * matrix: bytes of one row, which lets the planner stream it in slices (output-slices.ts).
   */
  rowBytes?: number;
}

/** Measured (or assumed) speeds of this machine. */
export interface HardwareFigures {
  /**
   * Read rate the streaming engine achieves on the model's storage (bytes/s): many reads in
   * flight on the fastest path, as measured by the calibration or by the run's own reads.
   */
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

/**
 * rows = token embeddings read by row; experts = MoE experts in the expert cache
 * (expert-plan.ts); slices = the output matrix read in row slices every token (output-slices.ts).
 */
export type Placement = 'resident' | 'streamed' | 'rows' | 'experts' | 'slices';

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
  /** The output matrix's slicing when it is streamed (placement 'slices'); its buffers are in streamBufferBytes. */
  outputSlices?: OutputSliceLayout;
  /** min(window + 1, numLayers) (a ring never needs more slots than layers), 0 when nothing is streamed. */
  numSlots: number;
  /** The ring (numSlots * slotBytes) and the output slices' buffers. */
  streamBufferBytes: number;
  /** How the budget is spent. */
  split: { weights: number; buffers: number; kv: number; scratch: number; total: number };
  residentBytes: number;
  /** File bytes streamed per token: the layers' streamed tensors and a sliced output matrix. */
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
/**
 * Memory a layer tensor takes when resident: whole pages (4096), so the elastic memory pool can
 * give each back on its own (weights/arena.ts). Tensors of 1 MiB and more are whole pages
 * anyway; the rounding adds under 4 KiB to a small one.
 */
export const demotableFootprint = (bytes: number) => roundUp(bytes, STREAM_ALIGN);
/** Memory a streamed tensor takes in a ring slot. */
export const streamFootprint = (bytes: number) => roundUp(bytes, STREAM_ALIGN);

const ATTENTION: TensorKind[] = ['attn_q', 'attn_k', 'attn_v', 'attn_qkv', 'attn_output'];
const FFN: TensorKind[] = ['ffn_gate', 'ffn_up', 'ffn_down'];

/** Tensors that are always resident under a budget (MoE routers: small, needed every token). */
function alwaysResident(t: PlanTensorInput): boolean {
  if (t.kind === 'norm' || t.kind === 'bias' || t.kind === 'output' || t.kind === 'ffn_gate_inp') return true;
  return t.layer < 0 && t.kind === 'other';
}

/** How a plan holds the output matrix: resident ({}), or streamed in slices (tensor `index`). */
interface OutputMode {
  sliced?: { index: number; layout: OutputSliceLayout };
}

/** Output modes to try: resident always; sliced where the matrix is large (outputSliceLayout). */
function outputModes(tensors: readonly PlanTensorInput[]): OutputMode[] {
  const outputs = tensors.map((t, i) => [t, i] as const).filter(([t]) => t.kind === 'output');
  if (outputs.length !== 1) return [{}];
  const [t, index] = outputs[0]!;
  const layout = t.rowBytes !== undefined ? outputSliceLayout(t.bytes, t.rowBytes) : undefined;
  return layout ? [{}, { sliced: { index, layout } }] : [{}];
}

/**
 * Streamable tensors (layer matrices) and the fixed memory of a mode: the always-resident
 * tensors' footprints, with a sliced output matrix's slice buffers in place of its footprint.
 */
function fixedAndStreamable(tensors: readonly PlanTensorInput[], mode: OutputMode): { fixedBytes: number; streamable: number[] } {
  const streamable: number[] = [];
  let fixedBytes = mode.sliced?.layout.bufferBytes ?? 0;
  tensors.forEach((t, i) => {
    if (t.kind === 'token_embd' || i === mode.sliced?.index) return;
    if (alwaysResident(t)) fixedBytes += residentFootprint(t.bytes);
    else streamable.push(i);
  });
  return { fixedBytes, streamable };
}

interface Candidate {
  name: string;
  /** Step i makes streamable tensor steps[i] resident. */
  steps: number[];
}

/**
 * Plans residency for `tensors` under `options.budget` with a ring of `options.window` + 1
 * slots (default 3). Throws InsufficientMemoryError.
 */
export function planResidency(tensors: readonly PlanTensorInput[], options: PlanOptions): Plan {
  return searchPlans(tensors, options, [options.window ?? DEFAULT_WINDOW]);
}

/** Prefetch windows the planner chooses from when the caller gives none. */
export const WINDOW_CHOICES: readonly number[] = [3, 2, 1];

/**
 * planResidency with the given window; without one, the planner picks the window too: the
 * best plan over windows 3, 2 and 1 by the cost model. When reads are the bottleneck, one
 * layer ahead already keeps the device busy and the ring memory a smaller window frees keeps
 * more weights resident (Llama-2-7B Q4_0 at 25%: window 3 -> 1 moves 217 MiB from the ring to
 * resident tensors, 6% fewer bytes read per token); when compute is, the deeper ring wins on
 * the jitter allowance. The error, when none fits, is window 1's.
 */
export function planWithWindow(tensors: readonly PlanTensorInput[], options: Omit<PlanOptions, 'window'>, window?: number): Plan {
  return searchPlans(tensors, options, window !== undefined ? [window] : WINDOW_CHOICES);
}

/** The best plan over `windows` x candidate orders (see NOTE). */
function searchPlans(tensors: readonly PlanTensorInput[], options: Omit<PlanOptions, 'window'>, windows: readonly number[]): Plan {
  const kv = options.kvBytes ?? 0;
  const scratch = options.scratchBytes ?? 0;
  for (const w of windows) if (!(Number.isInteger(w) && w >= 1)) throw new RangeError(`window must be an integer >= 1, got ${w}`);
  if (!(options.hardware.readBytesPerSec > 0)) throw new RangeError('hardware.readBytesPerSec must be > 0');
  const numLayers = tensors.reduce((m, t) => Math.max(m, t.layer + 1), 0);

  if (options.budget === Infinity) return allResident(tensors, numLayers, options, Math.max(...windows), kv, scratch);

  let best: Plan | undefined;
  // The error names the smallest window's minimum over the output modes: the least memory that works at all.
  const minWindow = Math.min(...windows);
  let least: { minimum: number; mode: OutputMode; fixedBytes: number; baseStreamed: number[] } | undefined;
  for (const mode of outputModes(tensors)) {
    // Streamable = layer matrices (and other layer tensors); fixed = always resident.
    const { fixedBytes, streamable } = fixedAndStreamable(tensors, mode);
    const candidates = buildCandidates(tensors, streamable, numLayers);
    const baseStreamed = new Array<number>(numLayers).fill(0);
    for (const i of streamable) baseStreamed[tensors[i]!.layer]! += streamFootprint(tensors[i]!.bytes);
    const model = costModel(tensors, numLayers, options.hardware, mode);
    for (const window of windows) {
      const slots = Math.min(window + 1, numLayers);
      for (const c of candidates) {
        const curve = memoryCurve(tensors, c, baseStreamed, fixedBytes, slots, kv + scratch);
        if (window === minWindow) {
          const minimum = curve.reduce((m, x) => Math.min(m, x), Infinity);
          if (!least || minimum < least.minimum) least = { minimum, mode, fixedBytes, baseStreamed };
        }
        // The longest fitting prefix: every shorter one keeps a subset resident, so it costs as much or more.
        let n = -1;
        for (let k = curve.length - 1; k >= 0; k--) {
          if (curve[k]! <= options.budget) {
            n = k;
            break;
          }
        }
        if (n < 0) continue;
        const residentSet = new Set(c.steps.slice(0, n));
        const plan = buildPlan(tensors, numLayers, (i) => residentSet.has(i), window, c.name, options, kv, scratch, model, mode);
        if (!best || better(plan, best)) best = plan;
      }
    }
  }
  if (!best) {
    const slots = Math.min(minWindow + 1, numLayers);
    const { minimum, mode, fixedBytes, baseStreamed } = least!;
    const fixed = mode.sliced
      ? `the norms (${mib(fixedBytes - mode.sliced.layout.bufferBytes)}), the output matrix's slice buffers (${mib(mode.sliced.layout.bufferBytes)}; it is streamed in ${mode.sliced.layout.numSlices} slices)`
      : `the norms and output matrix (${mib(fixedBytes)})`;
    throw new InsufficientMemoryError(
      options.budget,
      minimum,
      `it must hold ${fixed}, ${slots} layer stream buffers (prefetch window ${minWindow} + 1) of up to ${mib(Math.max(0, ...baseStreamed))} each, the KV cache (${mib(kv)}) and scratch (${mib(scratch)}); raise --memory-budget, lower --ctx-size or use a smaller prefetch window`,
    );
  }
  return best;
}

/** Memory of a prefix of n steps of a candidate, for every n (resident + ring + kv + scratch). */
function memoryCurve(tensors: readonly PlanTensorInput[], c: Candidate, baseStreamed: number[], fixedBytes: number, slots: number, other: number): number[] {
  const streamed = baseStreamed.slice();
  let resident = fixedBytes;
  const out: number[] = [];
  const total = () => {
    const max = streamed.reduce((m, s) => Math.max(m, s), 0);
    return resident + (max > 0 ? slots * max : 0) + other;
  };
  out.push(total());
  for (const i of c.steps) {
    const t = tensors[i]!;
    streamed[t.layer]! -= streamFootprint(t.bytes);
    resident += demotableFootprint(t.bytes);
    out.push(total());
  }
  return out;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** Lower predicted time wins; near-ties (1e-9 relative) go to the larger window, then to fewer bytes read. */
function better(a: Plan, b: Plan): boolean {
  const tol = 1e-9 * Math.max(a.predictedSecPerToken, b.predictedSecPerToken);
  if (a.predictedSecPerToken < b.predictedSecPerToken - tol) return true;
  if (a.predictedSecPerToken > b.predictedSecPerToken + tol) return false;
  if (a.window !== b.window) return a.window > b.window;
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

/** What the cost model needs besides the placements: compute times and the read rate. */
interface CostModel {
  /** Compute seconds of each layer for one token. */
  computePerLayer: number[];
  /** Compute seconds of the output matrix for one token. */
  outputSec: number;
  /**
   * Read seconds of a sliced output matrix per token (0 when resident): the pipeline reads it
   * after the last layer, on the same device, as one more layer (its own buffers, so it never
   * waits for a ring slot; the slices overlap their own compute).
   */
  outputReadSec: number;
  readBytesPerSec: number;
}

function costModel(tensors: readonly PlanTensorInput[], numLayers: number, hw: HardwareFigures, mode: OutputMode = {}): CostModel {
  const rate = hw.computeBytesPerSec ?? DEFAULT_COMPUTE_BYTES_PER_SEC;
  const computePerLayer = new Array<number>(numLayers).fill(0);
  let outputSec = 0;
  for (const t of tensors) {
    if (t.layer >= 0) computePerLayer[t.layer]! += t.bytes / rate;
    else if (t.kind === 'output') outputSec += t.bytes / rate;
  }
  if (hw.computeSecPerLayer !== undefined) computePerLayer.fill(hw.computeSecPerLayer);
  const outputReadSec = mode.sliced ? tensors[mode.sliced.index]!.bytes / hw.readBytesPerSec : 0;
  return { computePerLayer, outputSec, outputReadSec, readBytesPerSec: hw.readBytesPerSec };
}

/** Tokens the cost model simulates (the ring's first fill is spread over them). */
export const SIM_TOKENS = 4;

/**
 * Read-time jitter allowance: a layer's read time varies by about this fraction from one
 * layer to the next on our virtual disk (1.2-2.7 GB/s within minutes, DESIGN.md), which stalls
 * compute where a read just fits behind it; a ring `window` layers deep spreads the slack over
 * `window` reads. Charged on sum over layers of min(read time, compute time) / window.
 */
export const WINDOW_JITTER = 0.2;

/**
 * Seconds per token of the streaming pipeline (the NOTE's recurrence), averaged over
 * SIM_TOKENS tokens. `readSec[l]` is layer l's streamed bytes / read rate; `tailSec` is what
 * ends a token (output matrix, embedding rows). A pure max-plus expression: no duration that
 * shrinks can make it grow.
 */
export function simulatePipeline(readSec: readonly number[], computeSec: readonly number[], tailSec: number, numSlots: number, tokens = SIM_TOKENS): number {
  const L = readSec.length;
  if (L === 0) return tailSec;
  if (numSlots === 0) return computeSec.reduce((a, b) => a + b, 0) + tailSec;
  const computeEnd = new Float64Array(numSlots); // ring of computeEnd(s) for the last numSlots sequences
  let readEnd = 0;
  let lastCompute = 0;
  for (let s = 0; s < tokens * L; s++) {
    const l = s % L;
    const slotFree = s >= numSlots ? computeEnd[s % numSlots]! : 0;
    readEnd = Math.max(readEnd, slotFree) + readSec[l]!;
    const ready = l === 0 && s > 0 ? lastCompute + tailSec : lastCompute;
    lastCompute = Math.max(readEnd, ready) + computeSec[l]!;
    computeEnd[s % numSlots] = lastCompute;
  }
  return (lastCompute + tailSec) / tokens;
}

/** predictedSecPerToken of placements: see the NOTE. */
function predictTime(layers: readonly LayerPlan[], numSlots: number, window: number, embedRow: number, model: CostModel): number {
  const bw = model.readBytesPerSec;
  const readSec = layers.map((l) => l.streamedBytes / bw);
  // A sliced output matrix: one more stage after the last layer, read then computed. The
  // simulation keeps the window's ring depth when no layer is streamed (a ring that vanished
  // would make the fewer reads of a larger budget look slower).
  const sim =
    model.outputReadSec > 0
      ? simulatePipeline([...readSec, model.outputReadSec], [...model.computePerLayer, model.outputSec], embedRow / bw, Math.min(window + 1, layers.length))
      : simulatePipeline(readSec, model.computePerLayer, model.outputSec + embedRow / bw, numSlots);
  let overlap = 0;
  for (let l = 0; l < layers.length; l++) overlap += Math.min(readSec[l]!, model.computePerLayer[l]!);
  return sim + (numSlots > 0 ? (WINDOW_JITTER * overlap) / window : 0);
}

function buildPlan(
  tensors: readonly PlanTensorInput[],
  numLayers: number,
  isResident: (i: number) => boolean,
  window: number,
  strategy: string,
  options: Omit<PlanOptions, 'window'>,
  kv: number,
  scratch: number,
  model: CostModel,
  mode: OutputMode = {},
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
    else if (i === mode.sliced?.index) placement = 'slices';
    else if (alwaysResident(t) || isResident(i)) placement = 'resident';
    else placement = 'streamed';
    placements.push({ name: t.name, layer: t.layer, kind: t.kind, bytes: t.bytes, placement });
    if (placement === 'rows') embedRow = t.rowBytes ?? Math.ceil(t.bytes / 32000);
    if (placement === 'resident') {
      residentBytes += t.bytes;
      weights += alwaysResident(t) ? residentFootprint(t.bytes) : demotableFootprint(t.bytes);
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
  const buffers = numSlots * slotBytes + (mode.sliced?.layout.bufferBytes ?? 0);
  const streamed = layers.reduce((a, l) => a + l.streamedBytes, 0) + (mode.sliced ? tensors[mode.sliced.index]!.bytes : 0);
  const t = predictTime(layers, numSlots, window, embedRow, model);
  return {
    budget: options.budget,
    window,
    numLayers,
    tensors: placements,
    layers,
    slotBytes,
    ...(mode.sliced ? { outputSlices: mode.sliced.layout } : {}),
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
function allResident(tensors: readonly PlanTensorInput[], numLayers: number, options: Omit<PlanOptions, 'window'>, window: number, kv: number, scratch: number): Plan {
  const model = costModel(tensors, numLayers, options.hardware);
  const plan = buildPlan(tensors, numLayers, () => true, window, 'all-resident', options, kv, scratch, model);
  for (const p of plan.tensors) if (p.placement === 'rows') p.placement = 'resident';
  const embd = tensors.filter((t) => t.kind === 'token_embd');
  for (const t of embd) {
    plan.residentBytes += t.bytes;
    plan.split.weights += residentFootprint(t.bytes);
    plan.split.total += residentFootprint(t.bytes);
  }
  plan.bytesReadPerToken = 0;
  plan.predictedSecPerToken = model.outputSec + model.computePerLayer.reduce((a, b) => a + b, 0);
  plan.predictedTokensPerSec = plan.predictedSecPerToken > 0 ? 1 / plan.predictedSecPerToken : Infinity;
  return plan;
}

/**
 * Nested residency plans for the elastic memory pool (engine/memory-pool.ts): one candidate
 * order and one window, and for every k the plan with the first k steps of that order
 * resident. Moving down the ladder demotes the last resident steps (the ones the cost model
 * ranked last, taken back layer by layer, so the layers stay balanced: flexible tensor
 * preservation run in reverse); moving up promotes them again. Prefixes are nested, so a
 * level change only ever demotes or only ever promotes.
 */
export interface PlanLadder {
  /** The candidate order and window the planner chose at the ladder's budget. */
  strategy: string;
  window: number;
  /** Streamable tensors (indices into the planner's input) in promotion order. */
  steps: readonly number[];
  /** Weight memory (resident footprints + ring) with the first k steps resident, k = 0..steps.length. */
  weightBytes: readonly number[];
  /** Smallest k of least weight memory: the minimum resident set. */
  minLevel: number;
  /**
   * The lowest level a read cache may hold the weights at (weights/read-cache.ts): 1 when the
   * output matrix is step 0, which only KV pushes down to; else 0.
   */
  cacheFloor: number;
  /** The level the planner's rule gives `bytes` of weight memory (longest fitting prefix), or -1. */
  levelFor(bytes: number): number;
  /** The Plan with the first k steps resident. */
  planAt(k: number): Plan;
}

/** The largest k with bytesAt[k] <= bytes (the planner's rule: longest fitting prefix), or -1. */
function lastFitting(bytesAt: readonly number[], bytes: number): number {
  for (let k = bytesAt.length - 1; k >= 0; k--) if (bytesAt[k]! <= bytes) return k;
  return -1;
}

/**
 * The ladder through the plan planWithWindow picks for `options` (the budget with the KV
 * cache at its floor): same candidate order, same window (level 0 excepted: the smallest ring,
 * see below). Throws InsufficientMemoryError as
 * planWithWindow does.
 */
export function planLadder(tensors: readonly PlanTensorInput[], options: Omit<PlanOptions, 'window'>, window?: number): PlanLadder {
  const top = planWithWindow(tensors, options, window);
  const numLayers = tensors.reduce((m, t) => Math.max(m, t.layer + 1), 0);
  // The top plan's output mode; a sliced output matrix stays sliced at every level.
  const modes = outputModes(tensors);
  const mode = modes.find((m) => (m.sliced !== undefined) === (top.outputSlices !== undefined)) ?? {};
  const { fixedBytes, streamable } = fixedAndStreamable(tensors, mode);
  // Without a budget the planner keeps everything resident: the ladder is the first order.
  const c = buildCandidates(tensors, streamable, numLayers).find((x) => x.name === top.strategy) ?? buildCandidates(tensors, streamable, numLayers)[0]!;
  const baseStreamed = new Array<number>(numLayers).fill(0);
  for (const i of streamable) baseStreamed[tensors[i]!.layer]! += streamFootprint(tensors[i]!.bytes);
  const slots = Math.min(top.window + 1, numLayers);
  const curve = memoryCurve(tensors, c, baseStreamed, fixedBytes, slots, 0);
  // A resident output matrix the planner could slice becomes the ladder's first step: promoted
  // first and demoted last (it saves more read time per byte than any layer tensor: its whole
  // size per token for its size less the slice buffers), so at the bottom of the ladder it
  // streams in slices as a static split's would, and the pool's minimum is that much lower
  // (tinyllama Q4_0 at 50%, --parallel 16, plan in a budget + 64 MiB cgroup: 98.9 -> 64.4 MiB;
  // the serve bench of 2026-12-06 had the elastic pool hold 5 sequences of 1056 tokens at once
  // where the static split held 6, and 6 with this step).
  //
  // Level 0 streams through the smallest ring (window 1, two layer slots) unless a window was
  // asked for or level 0 is the planner's own plan (the weights load there): below the level
  // the weights load at, the pool goes only for KV's sake, and a static split at that load
  // picks the small ring too (its planner, with the KV reserved). With the top plan's window
  // (2 when the calibration favoured it) level 0 kept a third 23.6 MiB slot: the elastic pool
  // then ran 5 sequences of 1056 tokens at once where the static split (window 1) ran 6, in the
  // 2 of 10 serve-bench runs whose calibration gave window 2 (tinyllama Q4_0 at 50%, 2026-12-06).
  const slicedMode = mode.sliced === undefined ? modes.find((m) => m.sliced !== undefined) : undefined;
  const lowWindow = window ?? 1;
  const lowStreams = Math.min(lowWindow + 1, numLayers) * Math.max(0, ...baseStreamed);
  const bottom = slicedMode ? fixedAndStreamable(tensors, slicedMode).fixedBytes + lowStreams : Infinity;
  const outputStep = slicedMode && bottom < curve[0]! ? slicedMode.sliced!.index : undefined;
  const steps = outputStep !== undefined ? [outputStep, ...c.steps] : c.steps;
  const room = options.budget - (options.kvBytes ?? 0) - (options.scratchBytes ?? 0);
  // Without an output step the top plan's level is the longest prefix that fits its room.
  const lowWindowAtZero = outputStep !== undefined || lastFitting(curve, room) > 0;
  const weightBytes = outputStep !== undefined ? [bottom, ...curve] : lowWindowAtZero ? [fixedBytes + lowStreams, ...curve.slice(1)] : curve;
  let minLevel = 0;
  for (let k = 1; k < weightBytes.length; k++) if (weightBytes[k]! < weightBytes[minLevel]!) minLevel = k;
  const model = costModel(tensors, numLayers, options.hardware, mode);
  const slicedModel = outputStep !== undefined ? costModel(tensors, numLayers, options.hardware, slicedMode) : model;
  const kv = options.kvBytes ?? 0;
  const scratch = options.scratchBytes ?? 0;
  const plans = new Map<number, Plan>();
  return {
    strategy: c.name,
    window: top.window,
    steps,
    weightBytes,
    minLevel,
    cacheFloor: outputStep !== undefined ? 1 : 0,
    levelFor(bytes: number): number {
      return lastFitting(weightBytes, bytes);
    },
    planAt(k: number): Plan {
      if (!(Number.isInteger(k) && k >= 0 && k <= steps.length)) throw new RangeError(`ladder level must be an integer in [0, ${steps.length}], got ${k}`);
      let p = plans.get(k);
      if (!p) {
        const resident = new Set(steps.slice(0, k));
        const sliced = outputStep !== undefined && k === 0;
        p = buildPlan(tensors, numLayers, (i) => resident.has(i), k === 0 && lowWindowAtZero ? lowWindow : top.window, c.name, { ...options, budget: options.budget }, kv, scratch, sliced ? slicedModel : model, sliced ? slicedMode! : mode);
        plans.set(k, p);
      }
      return p;
    },
  };
}
