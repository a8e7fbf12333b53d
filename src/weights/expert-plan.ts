/**
 * The FlexInfer planner for Mixture-of-Experts models: experts are the unit of streaming.
 *
 * NOTE: how the budget is spent (pure function, like planResidency).
 *  1. Dense first: attention, norms, routers (ffn_gate_inp) and the output matrix, through
 *     planWithWindow (planResidency, window chosen) over every tensor but the stacked experts, with the budget minus the
 *     smallest expert cache. A dense byte kept resident saves one byte of reads per token; an
 *     expert-cache byte saves k / E of one (uniform routing), so the dense tensors come first.
 *     Token embeddings are read by row, as for dense models.
 *  2. The rest of the budget is an expert cache of slots; a slot holds one expert's three
 *     slices (gate, up, down), each rounded up to 4096 bytes for O_DIRECT. Two layouts:
 *       per-layer  layer l owns s_l slots of its own expert size (at least k, so one row's
 *                  experts fit at once; the remainder spread over the layers);
 *       global     one pool of N slots of the largest expert size (at least 2k), any layer.
 *     The cost model predicts both and the faster wins (ties: per-layer, which cannot suffer
 *     collision misses). Under uniform routing both hit slots / experts; per-layer wastes no
 *     memory when layers' experts differ in size (the _M mixes give some layers Q6_K
 *     ffn_down), global is the only layout when the budget is below k slots per layer.
 *  3. Cost model per token (one row, uniform routing: hit rate h_l = slots_l / E):
 *       t = output + embedding row / bw
 *         + sum_l max(compute(dense_l) + compute(k experts_l),
 *                     (streamed dense_l + k (1 - h_l) expertBytes_l) / bw)
 *     The layout is chosen on the same model for a step of `rows` rows (the server's parallel):
 *     a layer step then needs n = E (1 - (1 - k/E)^rows) distinct experts (uniform routing), and
 *     the reads overlap the compute (max) only when the layout holds the step and the next
 *     layer's prefetch: per-layer s_l >= n (the next layer's prefetch has its own slots), global
 *     N >= 2n. Otherwise the step runs in waves as slots free and the reads and compute add up.
 *     Measured (12-layer Qwen3-30B-A3B Q5_K_M at 25%, 8 streams, uniform): per-layer 19-20
 *     slots against 53 distinct experts per step; a pass spent 323 ms waiting on reads and
 *     218 ms computing, with reads in flight only 361 of its 541 ms.
 */
import { InsufficientMemoryError } from '../errors.js';
import { planWithWindow, spreadOrder, streamFootprint, type Plan, type PlanOptions, type PlanTensorInput } from './plan.js';
import { EXPERT_KINDS } from './tensors.js';
import type { ExpertPolicyName } from './expert-cache.js';

/** Expert-cache layout choice. */
export type ExpertCacheMode = 'global' | 'per-layer';

/** MoE facts the planner needs besides the tensors. */
export interface MoePlanOptions extends PlanOptions {
  numExperts: number;
  /** Experts per row (k). */
  numExpertsUsed: number;
  /** Force a layout (default: the cost model's choice). */
  expertCache?: ExpertCacheMode | 'auto';
  /** Eviction policy recorded in the plan (default least-stale). */
  expertPolicy?: ExpertPolicyName;
  /** Rows a forward pass runs at once (the server's parallel; default 1): the layout is chosen for it. */
  rows?: number;
}

/** One expert-cache layout as the cost model saw it. */
export interface ExpertCacheOption {
  mode: ExpertCacheMode;
  feasible: boolean;
  numSlots: number;
  cacheBytes: number;
  expectedHitRate: number;
  predictedSecPerToken: number;
  /** Seconds per token at `rows` rows per pass (the layout is chosen on this; = predictedSecPerToken for one row). */
  batchSecPerToken: number;
}

/** The expert cache of a MoE plan. */
export interface ExpertCachePlan {
  mode: ExpertCacheMode;
  policy: ExpertPolicyName;
  numLayers: number;
  numExperts: number;
  numExpertsUsed: number;
  /** Bytes of one expert (gate + up + down) of each layer. [numLayers] */
  expertBytes: number[];
  /** Memory of one slot of each layer (global: the pool's slot size for every layer). [numLayers] */
  slotBytes: number[];
  /** per-layer: slots of each layer; global: [numSlots]. */
  slots: number[];
  numSlots: number;
  cacheBytes: number;
  /** Every expert has a slot: nothing is read after loading. */
  allResident: boolean;
  /** Hit rate under uniform routing (slots / experts; the worst case of any cache). */
  expectedHitRate: number;
  /** Expert bytes read per token at that hit rate (one row). */
  expectedReadBytesPerToken: number;
  /** Rows per forward pass the layout was chosen for, and the distinct experts a layer step of them needs (uniform routing). */
  rows: number;
  expertsPerStep: number;
  /** Both layouts as the cost model saw them. */
  options: ExpertCacheOption[];
}

/** A residency plan whose stacked expert tensors are served by an expert cache. */
export interface MoePlan extends Plan {
  experts: ExpertCachePlan;
  split: Plan['split'] & { experts: number };
}

const DEFAULT_COMPUTE_BYTES_PER_SEC = 8e9;

/** Per-layer expert sizes from the stacked expert tensors. */
export function expertSizes(tensors: readonly PlanTensorInput[], numLayers: number, numExperts: number): { bytes: number[]; slotBytes: number[] } {
  const bytes = new Array<number>(numLayers).fill(0);
  const slotBytes = new Array<number>(numLayers).fill(0);
  const parts = new Array<number>(numLayers).fill(0);
  for (const t of tensors) {
    if (!EXPERT_KINDS.includes(t.kind)) continue;
    if (t.bytes % numExperts !== 0) throw new RangeError(`${t.name}: ${t.bytes} bytes do not split into ${numExperts} experts`);
    bytes[t.layer]! += t.bytes / numExperts;
    slotBytes[t.layer]! += streamFootprint(t.bytes / numExperts);
    parts[t.layer]!++;
  }
  parts.forEach((n, l) => {
    if (n !== 3) throw new RangeError(`layer ${l} has ${n} of the 3 stacked expert tensors (ffn_gate_exps, ffn_up_exps, ffn_down_exps)`);
  });
  return { bytes, slotBytes };
}

/**
 * Plans a MoE model under `options.budget`: the dense tensors by planResidency, the rest of
 * the budget as an expert cache. Throws InsufficientMemoryError when not even the dense
 * minimum plus the smallest cache fits.
 */
export function planMoe(tensors: readonly PlanTensorInput[], options: MoePlanOptions): MoePlan {
  const E = options.numExperts;
  const k = options.numExpertsUsed;
  if (!(Number.isInteger(E) && E >= 1 && Number.isInteger(k) && k >= 1 && k <= E)) {
    throw new RangeError(`planMoe: need 1 <= numExpertsUsed (${k}) <= numExperts (${E})`);
  }
  const numLayers = tensors.reduce((m, t) => Math.max(m, t.layer + 1), 0);
  const sizes = expertSizes(tensors, numLayers, E);
  const maxSlot = Math.max(...sizes.slotBytes);
  const dense = tensors.filter((t) => !EXPERT_KINDS.includes(t.kind));
  const policy = options.expertPolicy ?? 'least-stale';
  const mode = options.expertCache ?? 'auto';
  const globalMin = Math.min(2 * k, numLayers * E) * maxSlot;
  const perLayerMin = sizes.slotBytes.reduce((a, s) => a + s * Math.min(k, E), 0);
  const minCache = mode === 'per-layer' ? perLayerMin : globalMin;

  let densePlan: Plan;
  if (options.budget === Infinity) {
    densePlan = planWithWindow(dense, options, options.window);
  } else {
    try {
      densePlan = planWithWindow(dense, { ...options, budget: options.budget - minCache }, options.window);
    } catch (e) {
      if (!(e instanceof InsufficientMemoryError)) throw e;
      throw new InsufficientMemoryError(options.budget, e.minimum + minCache, `it must hold the dense part (${e.hint}) and an expert cache of at least ${mode === 'per-layer' ? `${k} slots per layer` : `${Math.min(2 * k, numLayers * E)} slots`} (${mib(minCache)})`);
    }
  }

  const hw = options.hardware;
  const rate = hw.computeBytesPerSec ?? DEFAULT_COMPUTE_BYTES_PER_SEC;
  const bw = hw.readBytesPerSec;
  const denseLayerBytes = new Array<number>(numLayers).fill(0);
  let outputBytes = 0;
  for (const t of dense) {
    if (t.layer >= 0) denseLayerBytes[t.layer]! += t.bytes;
    else if (t.kind === 'output') outputBytes += t.bytes;
  }
  const embedRow = densePlan.bytesReadPerToken - densePlan.streamedBytesPerToken;
  const rows = Math.max(1, Math.floor(options.rows ?? 1));
  /** Seconds per token of a pass of `r` rows needing n experts per layer step; overlap(l): reads hide behind compute. */
  const timeFor = (hit: (l: number) => number, r = 1, n = k, overlap: (l: number) => boolean = () => true): number => {
    // A sliced output matrix (plan.ts) is read every pass as well.
    let t = outputBytes / rate + (densePlan.outputSlices ? outputBytes / bw : 0) + (r * embedRow) / bw;
    for (let l = 0; l < numLayers; l++) {
      const compute = hw.computeSecPerLayer ?? (denseLayerBytes[l]! + n * sizes.bytes[l]!) / rate;
      const reads = densePlan.layers[l]!.streamedBytes + n * (1 - hit(l)) * sizes.bytes[l]!;
      t += overlap(l) ? Math.max(compute, reads / bw) : compute + reads / bw;
    }
    return t / r;
  };
  // Distinct experts a layer step of `rows` rows needs under uniform routing.
  const perStep = E * (1 - Math.pow(1 - k / E, rows));

  const leftover = options.budget === Infinity ? Infinity : options.budget - densePlan.split.total;
  // Global: N slots of the largest size.
  const nGlobal = Math.min(numLayers * E, leftover === Infinity ? Infinity : Math.floor(leftover / maxSlot));
  const globalOpt: ExpertCacheOption = {
    mode: 'global',
    feasible: nGlobal >= Math.min(2 * k, numLayers * E),
    numSlots: nGlobal,
    cacheBytes: nGlobal * maxSlot,
    expectedHitRate: nGlobal / (numLayers * E),
    predictedSecPerToken: timeFor(() => nGlobal / (numLayers * E)),
    batchSecPerToken: timeFor(() => nGlobal / (numLayers * E), rows, perStep, () => nGlobal >= 2 * perStep),
  };
  // Per layer: the same count everywhere, the remainder spread over the layers.
  const perLayer = perLayerSlots(sizes.slotBytes, E, leftover);
  const perLayerOpt: ExpertCacheOption = {
    mode: 'per-layer',
    feasible: perLayer.every((s) => s >= Math.min(k, E)),
    numSlots: perLayer.reduce((a, b) => a + b, 0),
    cacheBytes: perLayer.reduce((a, s, l) => a + s * sizes.slotBytes[l]!, 0),
    expectedHitRate: perLayer.reduce((a, s) => a + s / E, 0) / numLayers,
    predictedSecPerToken: timeFor((l) => perLayer[l]! / E),
    batchSecPerToken: timeFor((l) => perLayer[l]! / E, rows, perStep, (l) => perLayer[l]! >= perStep),
  };
  let chosen: ExpertCacheOption;
  if (mode === 'global' || mode === 'per-layer') chosen = mode === 'global' ? globalOpt : perLayerOpt;
  else if (!perLayerOpt.feasible) chosen = globalOpt;
  else if (!globalOpt.feasible) chosen = perLayerOpt;
  else chosen = globalOpt.batchSecPerToken < perLayerOpt.batchSecPerToken * (1 - 1e-9) ? globalOpt : perLayerOpt;
  if (!chosen.feasible) {
    throw new InsufficientMemoryError(options.budget, densePlan.split.total + minCache, `the ${chosen.mode} expert cache needs ${chosen.mode === 'per-layer' ? `${k} slots per layer` : `${2 * k} slots`} (${mib(minCache)}) besides the dense part (${mib(densePlan.split.total)}); raise --memory-budget or use --expert-cache global`);
  }

  const slots = chosen.mode === 'global' ? [chosen.numSlots] : perLayer;
  const slotBytes = chosen.mode === 'global' ? new Array<number>(numLayers).fill(maxSlot) : sizes.slotBytes;
  const hitOf = (l: number) => (chosen.mode === 'global' ? chosen.expectedHitRate : perLayer[l]! / E);
  const expertReads = sizes.bytes.reduce((a, b, l) => a + k * (1 - hitOf(l)) * b, 0);
  const experts: ExpertCachePlan = {
    mode: chosen.mode,
    policy,
    numLayers,
    numExperts: E,
    numExpertsUsed: k,
    expertBytes: sizes.bytes,
    slotBytes,
    slots,
    numSlots: chosen.numSlots,
    cacheBytes: chosen.cacheBytes,
    allResident: chosen.numSlots === numLayers * E,
    expectedHitRate: chosen.expectedHitRate,
    expectedReadBytesPerToken: expertReads,
    rows,
    expertsPerStep: perStep,
    options: [perLayerOpt, globalOpt],
  };

  const placements = tensors.map((t) => {
    if (EXPERT_KINDS.includes(t.kind)) return { name: t.name, layer: t.layer, kind: t.kind, bytes: t.bytes, placement: 'experts' as const };
    return densePlan.tensors.find((p) => p.name === t.name)!;
  });
  const layers = densePlan.layers.map((lp) => {
    const byKind = { ...lp.byKind };
    for (const t of tensors) {
      if (t.layer !== lp.layer || !EXPERT_KINDS.includes(t.kind)) continue;
      const cached = t.bytes * (chosen.mode === 'global' ? chosen.expectedHitRate : perLayer[lp.layer]! / E);
      byKind[t.kind] = { resident: cached, streamed: t.bytes - cached };
    }
    return { ...lp, byKind };
  });
  const t = chosen.predictedSecPerToken;
  const split = { ...densePlan.split, experts: chosen.cacheBytes, total: densePlan.split.total + chosen.cacheBytes };
  if (options.budget === Infinity) {
    // No budget: the resident store holds every expert in place; nothing streams.
    split.experts = 0;
    split.total = densePlan.split.total + sizes.bytes.reduce((a, b) => a + b * E, 0);
  }
  return {
    ...densePlan,
    budget: options.budget,
    tensors: placements,
    layers,
    numLayers,
    split,
    streamedBytesPerToken: densePlan.streamedBytesPerToken + expertReads,
    bytesReadPerToken: densePlan.bytesReadPerToken + expertReads,
    predictedSecPerToken: t,
    predictedTokensPerSec: t > 0 ? 1 / t : Infinity,
    strategy: `${densePlan.strategy} + ${chosen.mode} expert cache`,
    experts,
  };
}

/** The plan's expert-cache facts worth reporting with the run's statistics. */
export function expertPlanSummary(e: ExpertCachePlan): Record<string, unknown> {
  return {
    mode: e.mode,
    policy: e.policy,
    numExperts: e.numExperts,
    numExpertsUsed: e.numExpertsUsed,
    numSlots: e.numSlots,
    slotsPerLayer: e.mode === 'per-layer' ? e.slots : undefined,
    cacheBytes: e.cacheBytes,
    allResident: e.allResident,
    expectedHitRate: e.expectedHitRate,
    expectedReadBytesPerToken: e.expectedReadBytesPerToken,
  };
}

/**
 * Slots per layer that `bytes` buy: the same count in every layer (capped at E), then one more
 * in layers in a well-spread order while the remainder pays for it.
 */
function perLayerSlots(slotBytes: readonly number[], E: number, bytes: number): number[] {
  const L = slotBytes.length;
  if (bytes === Infinity) return new Array<number>(L).fill(E);
  const perRound = slotBytes.reduce((a, b) => a + b, 0);
  const base = Math.min(E, Math.floor(bytes / perRound));
  const slots = new Array<number>(L).fill(base);
  let left = bytes - base * perRound;
  if (base < E) {
    for (const l of spreadOrder(L)) {
      if (slotBytes[l]! <= left) {
        slots[l]!++;
        left -= slotBytes[l]!;
      }
    }
  }
  return slots;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
