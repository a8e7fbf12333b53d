/**
 * Where a MoE model's experts come from (the ExpertWeights of a weight store).
 *
 *  - ResidentExperts: no budget; every expert is a view of its stacked tensor in memory.
 *  - StreamedExperts: the expert cache. An aligned, mlocked pool of slots (the plan's
 *    ExpertCachePlan: global or per layer); a slot holds one expert's gate, up and down
 *    slices, each at a 4096-aligned offset and rounded up to 4096, so an expert whose slices
 *    start 4096-aligned in the file is read with O_DIRECT (real shapes are: 2048 x 768 Q4_K is
 *    884,736 bytes = 216 x 4096). The ExpertScheduler decides hits, reads and waves; this file
 *    only turns slots into memory and reads into I/O-thread tasks.
 *
 *   pool: [ slot 0: gate | up | down ][ slot 1: gate | up | down ] ...   (in segments of at
 *         most 4 GiB, the most one buffer holds: segments.ts; a slot never straddles two)
 *   read(slot, layer, e):  3 tasks, group = slot + 1:
 *     file [tensorOffset + e * partBytes, + partBytes)  ->  pool[slotOffset + partOffset, ...)
 */
import { InvalidModelError } from '../errors.js';
import type { GgufFile } from '../gguf/reader.js';
import { IoStreamer } from '../native/index.js';
import { ExpertCache, type ExpertPolicyName } from './expert-cache.js';
import type { ExpertCachePlan } from './expert-plan.js';
import { DEFAULT_LOOKAHEAD, ExpertScheduler, MAX_LOOKAHEAD, type ExpertCacheStats, type ExpertKeyPair, type ExpertWaves } from './expert-scheduler.js';
import { streamFootprint } from './plan.js';
import type { ExpertTensors, ExpertWeights, WeightStore, WeightTensor } from './store.js';
import { EXPERT_KINDS, listTensors, type TensorEntry } from './tensors.js';
import { LockedSegments, segmentLayout } from './segments.js';

/** Routers and ffn_norms of a layer, resident in the dense store. */
export type RouterSource = (layer: number) => { norm: WeightTensor; gateInp: WeightTensor };

/** Every expert resident: views into the stacked tensors of a store that holds them. */
export class ResidentExperts implements ExpertWeights {
  readonly allResident = true;
  readonly prefetch = false;
  readonly lookahead = 0;
  readonly #store: WeightStore;
  readonly #views = new Map<number, ExpertTensors>();

  constructor(
    store: WeightStore,
    readonly numExperts: number,
  ) {
    this.#store = store;
  }

  useExperts(layer: number, experts: Int32Array, compute: (experts: Int32Array, tensors: readonly ExpertTensors[]) => void): void {
    const w = this.#store.acquire(layer);
    try {
      const tensors = Array.from(experts, (e) => {
        const key = layer * this.numExperts + e;
        let t = this.#views.get(key);
        if (!t) {
          t = sliceExpert(w.get('ffn_gate_exps.weight'), w.get('ffn_up_exps.weight'), w.get('ffn_down_exps.weight'), e);
          this.#views.set(key, t);
        }
        return t;
      });
      compute(experts, tensors);
    } finally {
      this.#store.release(layer);
    }
  }

  router(layer: number): { norm: WeightTensor; gateInp: WeightTensor } {
    const w = this.#store.acquire(layer);
    this.#store.release(layer);
    return { norm: w.get('ffn_norm.weight'), gateInp: w.get('ffn_gate_inp.weight') };
  }
}

/** Expert e's slices of stacked tensors [dim, ffn, E] / [ffn, dim, E] (each expert contiguous). */
export function sliceExpert(gate: WeightTensor, up: WeightTensor, down: WeightTensor, e: number): ExpertTensors {
  const slice = (t: WeightTensor): WeightTensor => {
    const E = t.dims[2]!;
    const bytes = t.data.byteLength / E;
    return { name: `${t.name}#${e}`, type: t.type, dims: [t.dims[0]!, t.dims[1]!], data: t.data.subarray(e * bytes, (e + 1) * bytes) };
  };
  return { gate: slice(gate), up: slice(up), down: slice(down) };
}

/** Options of StreamedExperts.open. */
export interface StreamedExpertsOptions {
  /** O_DIRECT for aligned slices (default true). */
  direct?: boolean;
  /** Reads in flight (default 8: expert reads are ~1 MB and random, several in flight keep the device busy). */
  ioDepth?: number;
  /** mlock the slot pool (best effort; default true). */
  lock?: boolean;
  /** Largest pool segment (default MAX_ALLOC_BYTES; smaller in tests to exercise segments). @internal */
  maxSegmentBytes?: number;
  /** Read the next layer's predicted experts ahead (default true). */
  prefetch?: boolean;
  /** Layers predicted and read ahead when prefetching (default DEFAULT_LOOKAHEAD). */
  lookahead?: number;
  /** When a step's misses compute (default: the scheduler's, 'ready': as their reads complete; see ExpertSchedulerOptions.waves). */
  waves?: ExpertWaves;
  /** Eviction policy (default: the plan's). */
  policy?: ExpertPolicyName;
  /** Fill the cache at open (default true): uniform routing has no favourites, so any experts. */
  preload?: boolean;
  /** Longest wait for one expert's reads (default 120 s). */
  waitTimeoutMs?: number;
  /** Progress of the preload (bytes). */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** Where one of an expert's three slices sits in the file and in a slot. */
interface Part {
  fileOffset: number;
  bytes: number;
  slotOffset: number;
  type: number;
  dims: [number, number];
  name: string;
}

/** Facts and counters of a StreamedExperts. */
export interface StreamedExpertsStats extends ExpertCacheStats {
  mode: 'global' | 'per-layer';
  policy: ExpertPolicyName;
  prefetchEnabled: boolean;
  numSlots: number;
  cacheBytes: number;
  lockedBytes: number;
  lockError?: string;
  /** Expert bytes read per forward pass. */
  bytesReadPerPass: number;
  directBytes: number;
  bufferedBytes: number;
  /** Wall time with at least one expert read in flight, and the integral of reads (pieces) in flight over time. */
  ioBusySec: number;
  ioInflightSec: number;
  /** Pieces in flight at most (the streamer's depth caps it). */
  ioDepth: number;
}

/** The expert cache over a model file (see the file comment). */
export class StreamedExperts implements ExpertWeights {
  readonly numExperts: number;
  readonly allResident: boolean;
  readonly prefetch: boolean;
  readonly lookahead: number;
  readonly plan: ExpertCachePlan;
  readonly scheduler: ExpertScheduler;
  readonly #pool: LockedSegments;
  /** Slot s: pool segment #slotSegment[s], at #slotOffset[s] in it. */
  readonly #slotSegment: Int32Array;
  readonly #slotOffset: Float64Array;
  /** Per layer: gate, up, down. */
  readonly #parts: Part[][];
  readonly #streamer: IoStreamer;
  readonly #routers: RouterSource;
  readonly #waitTimeoutMs: number;
  readonly #ioDepth: number;
  #disposed = false;

  private constructor(file: GgufFile, plan: ExpertCachePlan, routers: RouterSource, o: StreamedExpertsOptions) {
    this.plan = plan;
    this.numExperts = plan.numExperts;
    this.allResident = plan.allResident;
    this.prefetch = !plan.allResident && (o.prefetch ?? true);
    const lookahead = o.lookahead ?? DEFAULT_LOOKAHEAD;
    if (!(Number.isInteger(lookahead) && lookahead >= 1 && lookahead <= MAX_LOOKAHEAD)) throw new RangeError(`expert lookahead must be an integer in [1, ${MAX_LOOKAHEAD}], got ${lookahead}`);
    this.lookahead = this.prefetch ? lookahead : 0;
    this.#routers = routers;
    this.#waitTimeoutMs = o.waitTimeoutMs ?? 120_000;
    const L = plan.numLayers;
    const E = plan.numExperts;
    // The three slices of each layer's experts.
    const byLayer: TensorEntry[][] = Array.from({ length: L }, () => []);
    for (const t of listTensors(file)) if (EXPERT_KINDS.includes(t.kind)) byLayer[t.layer]!.push(t);
    this.#parts = byLayer.map((ts, l) => {
      let off = 0;
      return EXPERT_KINDS.map((kind) => {
        const t = ts.find((x) => x.kind === kind);
        if (!t) throw new InvalidModelError(`tensor 'blk.${l}.${kind}.weight' is missing`);
        const bytes = t.bytes / E;
        const part: Part = { fileOffset: t.fileOffset, bytes, slotOffset: off, type: t.info.type, dims: [t.info.dims[0]!, t.info.dims[1]!], name: t.name };
        off += streamFootprint(bytes);
        if (off > plan.slotBytes[l]!) throw new InvalidModelError(`the plan's slots of layer ${l} are smaller than its experts (plan made for another file?)`);
        return part;
      });
    });
    // Slot sizes: per layer, each layer's partition in order; global, equal slots.
    const n = plan.numSlots;
    const sizes = new Float64Array(n);
    if (plan.mode === 'global') sizes.fill(plan.slotBytes[0]!);
    else {
      let s = 0;
      for (let l = 0; l < L; l++) for (let i = 0; i < plan.slots[l]!; i++, s++) sizes[s] = plan.slotBytes[l]!;
    }
    const layout = segmentLayout(sizes, 4096, o.maxSegmentBytes);
    this.#slotSegment = layout.segment;
    this.#slotOffset = layout.offset;
    this.#pool = new LockedSegments(layout.segmentBytes);
    if (o.lock !== false) this.#pool.lock();
    this.#ioDepth = o.ioDepth ?? 8;
    this.#streamer = new IoStreamer(file.path, { depth: this.#ioDepth, maxDepth: this.#ioDepth, direct: o.direct ?? true });
    const cache = new ExpertCache({
      numLayers: L,
      numExperts: E,
      numExpertsUsed: plan.numExpertsUsed,
      slots: plan.mode === 'global' ? n : plan.slots,
      policy: o.policy ?? plan.policy,
    });
    this.scheduler = new ExpertScheduler(
      cache,
      { read: (s, l, e) => this.#read(s, l, e), wait: (s) => void this.#streamer.wait(s + 1, this.#waitTimeoutMs), done: (s) => this.#streamer.pending(s + 1) === 0 },
      { prefetch: this.prefetch, expertBytes: plan.expertBytes, ...(o.waves ? { waves: o.waves } : {}) },
    );
  }

  /** Opens the cache for `file` as planned, and (by default) fills it, with progress and abort. */
  static async open(file: GgufFile, plan: ExpertCachePlan, routers: RouterSource, options: StreamedExpertsOptions = {}): Promise<StreamedExperts> {
    options.signal?.throwIfAborted();
    const x = new StreamedExperts(file, plan, routers, options);
    try {
      if (options.preload ?? true) {
        const keys = initialExperts(plan);
        const bytes = (n: number) => keys.slice(0, n).reduce((a, [l]) => a + plan.expertBytes[l]!, 0);
        const total = bytes(keys.length);
        options.onProgress?.(0, total);
        // Batches of ~32 experts (~100 MB at Qwen3-30B-A3B shapes) keep progress and abort prompt.
        await x.scheduler.preload(keys, 32, async (done) => {
          options.onProgress?.(bytes(done), total);
          await new Promise((resolve) => setImmediate(resolve));
          options.signal?.throwIfAborted();
        });
      }
    } catch (err) {
      x.dispose();
      throw err;
    }
    return x;
  }

  useExperts(
    layer: number,
    experts: Int32Array,
    compute: (experts: Int32Array, tensors: readonly ExpertTensors[]) => void,
    ahead?: readonly { layer: number; experts: Int32Array }[],
  ): void {
    if (this.#disposed) throw new Error('useExperts: the expert cache is disposed');
    this.scheduler.run(layer, experts, (wave) => compute(wave.experts, Array.from(wave.slots, (s) => this.#tensors(s, layer))), ahead);
  }

  router(layer: number): { norm: WeightTensor; gateInp: WeightTensor } {
    return this.#routers(layer);
  }

  stats(): StreamedExpertsStats {
    const st = this.scheduler.stats();
    const io = this.#streamer.stats();
    return {
      ...st,
      mode: this.plan.mode,
      policy: this.scheduler.cache.policy,
      prefetchEnabled: this.prefetch,
      numSlots: this.plan.numSlots,
      cacheBytes: this.#pool.byteLength,
      lockedBytes: this.#pool.locked ? this.#pool.byteLength : 0,
      ...(this.#pool.lockError ? { lockError: this.#pool.lockError } : {}),
      bytesReadPerPass: st.passes > 0 ? st.bytesRead / st.passes : 0,
      directBytes: io.directBytes,
      bufferedBytes: io.bufferedBytes,
      ioBusySec: io.busyNs / 1e9,
      ioInflightSec: io.inflightNs / 1e9,
      ioDepth: this.#ioDepth,
    };
  }

  /** Waits for reads in flight, stops the I/O threads, unlocks the pool. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.scheduler.drain();
    this.#streamer.close();
    this.#pool.dispose();
  }

  #read(slot: number, layer: number, expert: number): void {
    const base = this.#slotOffset[slot]!;
    const pool = this.#pool.buffers[this.#slotSegment[slot]!]!;
    for (const p of this.#parts[layer]!) {
      // The view bounds an O_DIRECT read's rounded-up tail to this slice's own footprint.
      const dst = new Uint8Array(pool, base + p.slotOffset, streamFootprint(p.bytes));
      this.#streamer.submit(slot + 1, p.fileOffset + expert * p.bytes, dst, 0, p.bytes);
    }
  }

  #tensors(slot: number, layer: number): ExpertTensors {
    const base = this.#slotOffset[slot]!;
    const pool = this.#pool.buffers[this.#slotSegment[slot]!]!;
    const [g, u, d] = this.#parts[layer]!.map((p): WeightTensor => ({ name: p.name, type: p.type, dims: p.dims, data: new Uint8Array(pool, base + p.slotOffset, p.bytes) }));
    return { gate: g!, up: u!, down: d! };
  }
}

/**
 * The experts a cache starts with: all when they fit; per layer the first slots_l; global,
 * layers in turn (expert 0 of every layer, then expert 1, ...) so every layer gets its share.
 */
export function initialExperts(plan: ExpertCachePlan): ExpertKeyPair[] {
  const out: ExpertKeyPair[] = [];
  const L = plan.numLayers;
  if (plan.mode === 'per-layer') {
    for (let l = 0; l < L; l++) for (let e = 0; e < plan.slots[l]!; e++) out.push([l, e]);
    return out;
  }
  for (let e = 0; e < plan.numExperts && out.length < plan.numSlots; e++) {
    for (let l = 0; l < L && out.length < plan.numSlots; l++) out.push([l, e]);
  }
  return out;
}
