/**
 * Weight stores for Mixture-of-Experts files: the dense tensors as for any model (resident, or
 * planned by the FlexInfer planner and streamed), the stacked experts through an
 * ExpertWeights: views in memory without a budget, the expert cache under one.
 */
import type { GgufFile } from '../gguf/reader.js';
import type { HardwareFigures } from './plan.js';
import { planMoe, type ExpertCacheMode, type MoePlan } from './expert-plan.js';
import type { ExpertPolicyName } from './expert-cache.js';
import type { ExpertWaves } from './expert-scheduler.js';
import { ResidentExperts, StreamedExperts } from './expert-store.js';
import { ResidentWeightStore } from './resident.js';
import { StreamingWeightStore, type StreamingOptions } from './streaming.js';
import type { OutputSlices } from './output-slices.js';
import type { ExpertWeights, LayerWeights, WeightStore, WeightTensor } from './store.js';
import { InvalidModelError, InvalidOptionError } from '../errors.js';
import { planInputs, readPathFromEnv } from './create.js';

/** Expert-cache options of createWeightStore. */
export interface ExpertStoreOptions {
  /** Layout of the expert cache (default: the cost model's choice). */
  expertCache?: ExpertCacheMode | 'auto';
  /** Eviction policy (default least-stale). */
  expertPolicy?: ExpertPolicyName;
  /** Read the next layer's predicted experts while a layer computes (default true). */
  expertPrefetch?: boolean;
  /** Layers whose experts are predicted and read ahead (default DEFAULT_LOOKAHEAD). */
  expertLookahead?: number;
  /** Expert reads (1 MiB pieces) in flight (default EXPERT_IO_DEPTH). */
  expertIoDepth?: number;
  /** Rows a forward pass runs at once (the server's parallel): the cache layout is chosen for it. */
  expertRows?: number;
}

/**
 * Pieces of expert reads in flight. Expert reads come in bursts (a layer's predicted misses:
 * ~6 experts x 3 slices ~ 24 pieces of <= 1 MiB at Qwen3-30B-A3B shapes, 25% budget) at random
 * offsets, so they go O_DIRECT (no page cache charged to a memory cgroup, nothing to reclaim)
 * and deep. NOT the calibration's start path, which is measured on sequential 256 MiB probes
 * and, after a run refreshed it, may say buffered@4: measured (quiet, qwen3-30b-a3b Q4_K_M at
 * 25%, cgroup budget + 64 MiB, 16 sampled tokens) buffered@4: 1.71 tok/s, 3.9 reads in flight;
 * direct@32: 4.45 tok/s, 23 in flight, same 845 MiB read per token.
 */
export const EXPERT_IO_DEPTH = 32;

/**
 * FLEXINFER_EXPERT_WAVES=all: a layer step computes its misses once all of them are read (the
 * behaviour before 'ready' became the default), for comparing the two in benchmarks. Measured
 * (quiet, 12-layer Q5_K_M at 25%, serve sweep, 8 streams): see the README's MoE section.
 */
export function expertWavesFromEnv(value = process.env.FLEXINFER_EXPERT_WAVES): ExpertWaves | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (v !== 'ready' && v !== 'all') throw new InvalidOptionError('FLEXINFER_EXPERT_WAVES', `expected 'ready' or 'all', got '${value}'`);
  return v;
}

/** Expert counts of a MoE file, or undefined for a dense one. */
export function moeShape(file: GgufFile): { numExperts: number; numExpertsUsed: number } | undefined {
  const a = file.architecture;
  const E = a ? file.getNumber(`${a}.expert_count`) : undefined;
  if (!E || !file.tensor('blk.0.ffn_gate_exps.weight')) return undefined;
  const k = file.getNumber(`${a}.expert_used_count`);
  if (!k || k > E) throw new InvalidModelError(`'${a}.expert_used_count' must be in [1, ${E}], got ${k}`);
  return { numExperts: E, numExpertsUsed: k };
}

/** A dense store with the model's experts beside it. */
export class MoeWeightStore implements WeightStore {
  constructor(
    readonly dense: WeightStore & { dispose(): void; stats?: () => object },
    readonly experts: ExpertWeights & { dispose?(): void; stats?: () => object },
  ) {}

  get numLayers(): number {
    return this.dense.numLayers;
  }
  acquire(layer: number): LayerWeights {
    return this.dense.acquire(layer);
  }
  release(layer: number): void {
    this.dense.release(layer);
  }
  global(name: string): WeightTensor | undefined {
    return this.dense.global(name);
  }

  get outputSlices(): OutputSlices | undefined {
    return this.dense.outputSlices;
  }
  embed(tokens: Int32Array, out: Float32Array): void {
    this.dense.embed(tokens, out);
  }
  /** Bytes of weight memory of a resident dense store (undefined when streaming). */
  get residentBytes(): number | undefined {
    return (this.dense as { residentBytes?: number }).residentBytes;
  }
  get locked(): boolean | undefined {
    return (this.dense as { locked?: boolean }).locked;
  }
  /** The dense store's counters (streaming) and the expert cache's. */
  stats(): Record<string, unknown> {
    return { ...(this.dense.stats?.() ?? {}), ...(this.experts.stats ? { experts: this.experts.stats() } : {}) };
  }
  dispose(): void {
    this.experts.dispose?.();
    this.dense.dispose();
  }
}

/** createWeightStore for a MoE file (see create.ts). */
export async function createMoeWeightStore(
  file: GgufFile,
  shape: { numExperts: number; numExpertsUsed: number },
  o: StreamingOptions & ExpertStoreOptions & { budget: number; kvBytes: number; scratchBytes: number; hardware: HardwareFigures; window?: number },
): Promise<{ store: MoeWeightStore; plan: MoePlan }> {
  const plan = planMoe(
    planInputs(file),
    {
      budget: o.budget,
      kvBytes: o.kvBytes,
      scratchBytes: o.scratchBytes,
      hardware: o.hardware,
      ...(o.window !== undefined ? { window: o.window } : {}),
      numExperts: shape.numExperts,
      numExpertsUsed: shape.numExpertsUsed,
      ...(o.expertCache ? { expertCache: o.expertCache } : {}),
      ...(o.expertPolicy ? { expertPolicy: o.expertPolicy } : {}),
      ...(o.expertRows ? { rows: o.expertRows } : {}),
    },
  );
  if (o.budget === Infinity) {
    const dense = await ResidentWeightStore.load(file, o);
    return { store: new MoeWeightStore(dense, new ResidentExperts(dense, shape.numExperts)), plan };
  }
  // The dense tensors take the read path the calibration (or the caller) starts on.
  const first = o.readPaths?.[0];
  const direct = o.direct ?? first?.direct ?? true;
  // The experts do not (see EXPERT_IO_DEPTH): O_DIRECT at that depth unless the caller or
  // FLEXINFER_READ_PATH fixes a path.
  const forced = readPathFromEnv();
  const expertDirect = o.direct ?? forced?.direct ?? true;
  const expertDepth = o.expertIoDepth ?? forced?.depth ?? EXPERT_IO_DEPTH;
  // One progress bar over both phases: the dense tensors, then the experts the cache starts with.
  const denseBytes = plan.tensors.filter((t) => t.placement === 'resident').reduce((a, t) => a + t.bytes, 0);
  const total = denseBytes + plan.experts.cacheBytes;
  const dense = await StreamingWeightStore.open(file, plan, { ...o, direct, ...(o.onProgress ? { onProgress: (d: number) => o.onProgress!(d, total) } : {}) });
  try {
    const router = (layer: number): { norm: WeightTensor; gateInp: WeightTensor } => {
      const norm = dense.residentTensor(layer, 'ffn_norm.weight');
      const gateInp = dense.residentTensor(layer, 'ffn_gate_inp.weight');
      if (!norm || !gateInp) throw new InvalidModelError(`layer ${layer}'s ffn_norm / ffn_gate_inp are not resident (plan made for another file?)`);
      return { norm, gateInp };
    };
    const expertWaves = expertWavesFromEnv();
    const experts = await StreamedExperts.open(file, plan.experts, router, {
      ...(o.onProgress ? { onProgress: (d: number) => o.onProgress!(Math.min(total, denseBytes + d), total) } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      direct: expertDirect,
      ioDepth: expertDepth,
      ...(o.expertPrefetch !== undefined ? { prefetch: o.expertPrefetch } : {}),
      ...(o.expertLookahead !== undefined ? { lookahead: o.expertLookahead } : {}),
      ...(o.expertPolicy ? { policy: o.expertPolicy } : {}),
      ...(o.lock !== undefined ? { lock: o.lock } : {}),
      ...(expertWaves ? { waves: expertWaves } : {}),
    });
    return { store: new MoeWeightStore(dense, experts), plan };
  } catch (err) {
    dense.dispose();
    throw err;
  }
}
