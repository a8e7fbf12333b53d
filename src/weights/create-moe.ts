/**
 * Weight stores for Mixture-of-Experts files: the dense tensors as for any model (resident, or
 * planned by the FlexInfer planner and streamed), the stacked experts through an
 * ExpertWeights: views in memory without a budget, the expert cache under one.
 */
import type { GgufFile } from '../gguf/reader.js';
import type { HardwareFigures } from './plan.js';
import { planMoe, type ExpertCacheMode, type MoePlan } from './expert-plan.js';
import type { ExpertPolicyName } from './expert-cache.js';
import { ResidentExperts, StreamedExperts } from './expert-store.js';
import { ResidentWeightStore } from './resident.js';
import { StreamingWeightStore, type StreamingOptions } from './streaming.js';
import type { ExpertWeights, LayerWeights, WeightStore, WeightTensor } from './store.js';
import { InvalidModelError } from '../errors.js';
import { planInputs } from './create.js';

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
  /** Expert reads in flight (default: the depth of the first read path, else 8). */
  expertIoDepth?: number;
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
    },
  );
  if (o.budget === Infinity) {
    const dense = await ResidentWeightStore.load(file, o);
    return { store: new MoeWeightStore(dense, new ResidentExperts(dense, shape.numExperts)), plan };
  }
  // The expert reads take the read path the dense store starts on (calibration or caller).
  const first = o.readPaths?.[0];
  const direct = o.direct ?? first?.direct ?? true;
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
    const experts = await StreamedExperts.open(file, plan.experts, router, {
      ...(o.onProgress ? { onProgress: (d: number) => o.onProgress!(Math.min(total, denseBytes + d), total) } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      direct,
      ...((o.expertIoDepth ?? first?.depth) !== undefined ? { ioDepth: o.expertIoDepth ?? first!.depth } : {}),
      ...(o.expertPrefetch !== undefined ? { prefetch: o.expertPrefetch } : {}),
      ...(o.expertLookahead !== undefined ? { lookahead: o.expertLookahead } : {}),
      ...(o.expertPolicy ? { policy: o.expertPolicy } : {}),
      ...(o.lock !== undefined ? { lock: o.lock } : {}),
    });
    return { store: new MoeWeightStore(dense, experts), plan };
  } catch (err) {
    dense.dispose();
    throw err;
  }
}
