/**
 * One MoE layer step over the expert cache (pure policy over an abstract reader): which
 * experts are hits, which reads to issue into which slots, in which waves the forward pass
 * computes them, and the speculative reads of the next layer's predicted experts.
 *
 *   run(layer, experts = union of the batch's routed experts, compute, next?)
 *     1. hits are pinned; a read is issued for each miss into a slot the cache assigns
 *        (never one holding an expert this step still needs, never a pinned one);
 *     2. the predicted experts of the next layers (`ahead`: layer l+1, l+2, ... nearest first)
 *        are read after this layer's misses (prefetch); a pending prediction's experts are
 *        not evicted by another prefetch (demand reads may take them);
 *     3. compute(wave) runs the hits first (while the misses load), then each batch of
 *        completed reads (options.waves); a computed expert is unpinned at once, so when the cache holds
 *        fewer slots than the step needs, the next misses reuse the slots just computed.
 *   Every expert of the step is read at most once and computed exactly once.
 *
 * The reader (ExpertIo) is the native I/O threads in the weight store and a fake in tests.
 *
 * NOTE (lookahead): predicting one layer ahead leaves the device one layer's reads to work on
 * (~6.5 misses x 3 slices ~ 20 pieces of 1 MiB at Qwen3-30B-A3B shapes, 25% budget) and every
 * token starts with the device idle (layer 0 cannot be predicted before the token is sampled).
 * Predicting two layers ahead keeps twice as many reads queued; the prediction two layers out
 * is less often right (measured: see the README's MoE section), and a mispredicted read costs
 * bandwidth the demand reads then wait behind.
 */
import { ExpertCache, type ProtectFn } from './expert-cache.js';

/** Reads of whole experts into cache slots. */
export interface ExpertIo {
  /** Starts reading expert (layer, expert) into `slot`. */
  read(slot: number, layer: number, expert: number): void;
  /** Blocks until the read into `slot` is done (throws its I/O error). */
  wait(slot: number): void;
  /** True when the read into `slot` has completed (never blocks). */
  done(slot: number): boolean;
}

/** The experts of one wave and the slots they are in (same order). */
export interface ExpertWave {
  experts: Int32Array;
  slots: Int32Array;
}

/** Counters of an ExpertScheduler since it was created. */
export interface ExpertCacheStats {
  /** Layer steps run, and forward passes (steps of layer 0). */
  steps: number;
  passes: number;
  /** Experts the steps needed, and how many were in the cache (or already being read) then. */
  lookups: number;
  hits: number;
  hitRate: number;
  /** Hits and lookups per layer. */
  layerHits: number[];
  layerLookups: number[];
  /** Expert reads issued (demand and prefetch) and their bytes. */
  reads: number;
  bytesRead: number;
  prefetchReads: number;
  /** Prefetched experts that a later step needed before they were evicted. */
  prefetchUsed: number;
  /** Bytes of prefetch reads, and of those a later step used (the rest was read in vain). */
  prefetchBytes: number;
  prefetchUsedBytes: number;
  /** Of the experts of steps that had a prediction: how many were predicted. */
  predictedLookups: number;
  predictedCorrect: number;
  /** predictedCorrect / predictedLookups (recall of the prediction). */
  predictionAccuracy: number;
  /**
   * The same per distance of the prediction ([0] = made one layer ahead, [1] = two, ...): every
   * prediction is scored, also those a nearer one replaced (predictedLookups/Correct score the
   * nearest only).
   */
  predictedLookupsByDistance: number[];
  predictedCorrectByDistance: number[];
  predictionAccuracyByDistance: number[];
  /** Time compute waited on reads. */
  ioWaitSec: number;
  /** compute() calls. */
  waves: number;
}

/** Layers whose experts are predicted and read ahead by default (see the NOTE), and the most. */
export const DEFAULT_LOOKAHEAD = 1;
export const MAX_LOOKAHEAD = 4;

/** The experts a later layer of this pass is predicted to route to. */
export interface ExpertPrediction {
  layer: number;
  experts: ArrayLike<number>;
}

/** Options of an ExpertScheduler. */
export interface ExpertSchedulerOptions {
  /** Read the next layer's predicted experts while this layer computes (default true). */
  prefetch?: boolean;
  /** Bytes of one expert of each layer (for bytesRead). */
  expertBytes: readonly number[];
  /**
   * When a step's misses compute (default 'ready'): 'ready' = in waves of the reads that have
   * completed, while the others still load; 'all' = once every read of the wave is in.
   */
  waves?: ExpertWaves;
}

/** See ExpertSchedulerOptions.waves. */
export type ExpertWaves = 'ready' | 'all';

type LoadKind = 'demand' | 'prefetch';

export class ExpertScheduler {
  readonly cache: ExpertCache;
  readonly prefetchEnabled: boolean;
  readonly waves: ExpertWaves;
  readonly #io: ExpertIo;
  readonly #expertBytes: readonly number[];
  /** Slots with a read not yet seen complete; a prefetch read holds one pin until then. */
  readonly #loading = new Map<number, LoadKind>();
  /** Keys read by prefetch and not used yet. */
  readonly #prefetched = new Set<number>();
  /** The predictions made for each layer in the current pass by distance - 1, consumed by its step. */
  readonly #predicted: (Int32Array | undefined)[][];
  /** The nearest pending prediction of each layer (its experts are kept from other prefetches). */
  readonly #latest: (Int32Array | undefined)[];
  readonly #stats: ExpertCacheStats;

  constructor(cache: ExpertCache, io: ExpertIo, options: ExpertSchedulerOptions) {
    this.cache = cache;
    this.#io = io;
    this.prefetchEnabled = options.prefetch ?? true;
    this.waves = options.waves ?? 'ready';
    if (options.expertBytes.length !== cache.numLayers) throw new RangeError(`ExpertScheduler: expertBytes has ${options.expertBytes.length} layers, the cache ${cache.numLayers}`);
    this.#expertBytes = options.expertBytes;
    const L = cache.numLayers;
    this.#predicted = Array.from({ length: L }, () => []);
    this.#latest = new Array(L).fill(undefined);
    this.#stats = {
      steps: 0, passes: 0, lookups: 0, hits: 0, hitRate: 0, layerHits: new Array(L).fill(0), layerLookups: new Array(L).fill(0),
      reads: 0, bytesRead: 0, prefetchReads: 0, prefetchUsed: 0, prefetchBytes: 0, prefetchUsedBytes: 0, predictedLookups: 0, predictedCorrect: 0, predictionAccuracy: 0,
      predictedLookupsByDistance: [], predictedCorrectByDistance: [], predictionAccuracyByDistance: [],
      ioWaitSec: 0, waves: 0,
    };
  }

  /**
   * One layer step: `experts` are the distinct experts the batch's rows are routed to. Calls
   * compute(wave) until each of them was computed once, from memory the cache holds; `ahead`
   * (later layers' predicted experts, nearest first) is prefetched after this layer's misses
   * are issued.
   */
  run(layer: number, experts: ArrayLike<number>, compute: (wave: ExpertWave) => void, ahead: readonly ExpertPrediction[] = []): void {
    const c = this.cache;
    const st = this.#stats;
    for (const p of ahead) {
      if (!(p.layer > layer && p.layer < c.numLayers)) throw new RangeError(`ExpertScheduler.run: layer ${layer} predicts layer ${p.layer} (must be a later layer)`);
    }
    this.#pollLoading();
    c.beginLayer(layer, experts);
    st.steps++;
    if (layer === 0) st.passes++;
    const preds = this.#predicted[layer]!;
    let nearest = true;
    for (let d = 0; d < preds.length; d++) {
      const pred = preds[d];
      if (pred === undefined) continue;
      let correct = 0;
      for (let i = 0; i < experts.length; i++) if (pred.includes(experts[i]!)) correct++;
      while (st.predictedLookupsByDistance.length <= d) {
        st.predictedLookupsByDistance.push(0);
        st.predictedCorrectByDistance.push(0);
      }
      st.predictedLookupsByDistance[d]! += experts.length;
      st.predictedCorrectByDistance[d]! += correct;
      if (nearest) {
        st.predictedLookups += experts.length;
        st.predictedCorrect += correct;
        nearest = false;
      }
    }
    preds.length = 0;
    this.#latest[layer] = undefined;

    // Experts of this step not computed yet: the cache must not evict them.
    const todo = new Set<number>();
    for (let i = 0; i < experts.length; i++) todo.add(experts[i]!);
    if (todo.size !== experts.length) throw new RangeError(`ExpertScheduler.run: layer ${layer}'s experts are not distinct`);
    const protect: ProtectFn = (l, e) => l === layer && todo.has(e);

    const hits: number[] = [];
    const misses: number[] = [];
    for (const e of todo) {
      const s = c.find(layer, e);
      if (s >= 0) {
        c.pin(s);
        c.touch(s);
        hits.push(e, s);
        const key = layer * c.numExperts + e;
        if (this.#prefetched.delete(key)) {
          st.prefetchUsed++;
          st.prefetchUsedBytes += this.#expertBytes[layer]!;
        }
      } else misses.push(e);
    }
    st.lookups += todo.size;
    st.hits += hits.length / 2;
    st.layerLookups[layer]! += todo.size;
    st.layerHits[layer]! += hits.length / 2;

    // [expert, slot] pairs to compute next, and being read for this step (hits whose prefetch
    // read is still in flight, then misses).
    let wave = hits;
    let inflight: number[] = [];
    if (this.waves === 'ready') [wave, inflight] = this.#ready(hits);
    let nextMiss = 0;
    const issue = (): void => {
      while (nextMiss < misses.length) {
        const e = misses[nextMiss]!;
        const s = c.assign(layer, e, protect);
        if (s < 0) return;
        nextMiss++;
        this.#read(s, layer, e, 'demand');
        inflight.push(e, s);
      }
    };
    issue();
    if (this.prefetchEnabled) {
      for (const p of ahead) this.#prefetch(p.layer, p.layer - layer, p.experts, protect);
    }

    try {
      for (;;) {
        if (wave.length > 0) {
          for (let i = 1; i < wave.length; i += 2) this.#waitSlot(wave[i]!);
          const w: ExpertWave = { experts: new Int32Array(wave.length / 2), slots: new Int32Array(wave.length / 2) };
          for (let i = 0; i < wave.length; i += 2) {
            w.experts[i / 2] = wave[i]!;
            w.slots[i / 2] = wave[i + 1]!;
          }
          st.waves++;
          compute(w);
          const done = wave;
          wave = [];
          for (let i = 0; i < done.length; i += 2) {
            todo.delete(done[i]!);
            c.unpin(done[i + 1]!);
          }
        }
        issue();
        if (inflight.length === 0 && nextMiss < misses.length) {
          // Every free-able slot may be held by prefetch reads in flight: let them land.
          this.#drainPrefetches();
          issue();
        }
        if (inflight.length === 0) {
          if (nextMiss < misses.length) {
            throw new Error(`expert cache: no slot for expert ${misses[nextMiss]} of layer ${layer} (every slot pinned or needed by this step)`);
          }
          break;
        }
        if (this.waves === 'all') {
          wave = inflight;
          inflight = [];
          continue;
        }
        // The reads in flight that have completed (after waiting for the oldest if none has):
        // they compute while the rest of the step's reads and the next layers' prefetches load.
        [wave, inflight] = this.#ready(inflight);
        if (wave.length === 0) {
          this.#waitSlot(inflight[1]!);
          [wave, inflight] = this.#ready(inflight);
        }
      }
    } finally {
      // Only after a failure: release what this step still holds. Reads in flight keep their
      // pin until they complete (as prefetches do).
      for (let i = 0; i < wave.length; i += 2) this.#release(wave[i + 1]!);
      for (let i = 0; i < inflight.length; i += 2) this.#release(inflight[i + 1]!);
    }
  }

  /** Counters since creation (fresh object). */
  stats(): ExpertCacheStats {
    const s = this.#stats;
    return {
      ...s,
      layerHits: s.layerHits.slice(),
      layerLookups: s.layerLookups.slice(),
      hitRate: s.lookups > 0 ? s.hits / s.lookups : 0,
      predictionAccuracy: s.predictedLookups > 0 ? s.predictedCorrect / s.predictedLookups : 0,
      predictedLookupsByDistance: s.predictedLookupsByDistance.slice(),
      predictedCorrectByDistance: s.predictedCorrectByDistance.slice(),
      predictionAccuracyByDistance: s.predictedLookupsByDistance.map((n, d) => (n > 0 ? s.predictedCorrectByDistance[d]! / n : 0)),
    };
  }

  /**
   * Reads the experts of (layer, expert) pairs into the cache without a step (warming it at
   * load: the planner's initial contents), in batches of `batch`, calling `between(done)`
   * after each (progress, abort). Waits for them.
   */
  async preload(keys: readonly ExpertKeyPair[], batch = 64, between?: (done: number) => Promise<void> | void): Promise<void> {
    let done = 0;
    for (let i = 0; i < keys.length; i += batch) {
      const slots: number[] = [];
      for (const [layer, expert] of keys.slice(i, i + batch)) {
        if (this.cache.find(layer, expert) >= 0) continue;
        const s = this.cache.assign(layer, expert);
        if (s < 0) break;
        this.#read(s, layer, expert, 'prefetch');
        slots.push(s);
      }
      for (const s of slots) this.#waitSlot(s);
      done = Math.min(keys.length, i + batch);
      await between?.(done);
    }
    this.#stats.reads = 0;
    this.#stats.bytesRead = 0;
    this.#stats.prefetchReads = 0;
    this.#stats.prefetchBytes = 0;
    this.#stats.ioWaitSec = 0;
    this.#prefetched.clear();
  }

  /** Waits for every read in flight (before the memory under the slots goes away). */
  drain(): void {
    for (const s of [...this.#loading.keys()]) {
      try {
        this.#waitSlot(s);
      } catch {
        // the slot was dropped; nothing else to do while shutting down
      }
    }
  }

  #read(slot: number, layer: number, expert: number, kind: LoadKind): void {
    this.#loading.set(slot, kind);
    this.#stats.reads++;
    this.#stats.bytesRead += this.#expertBytes[layer]!;
    try {
      this.#io.read(slot, layer, expert);
    } catch (err) {
      this.#loading.delete(slot);
      this.cache.drop(slot);
      this.cache.unpin(slot);
      throw err;
    }
  }

  /** Records the prediction for `layer` made `distance` layers ahead, and reads its misses. */
  #prefetch(layer: number, distance: number, experts: ArrayLike<number>, protect: ProtectFn): void {
    const c = this.cache;
    const predicted = Int32Array.from(experts);
    this.#predicted[layer]![distance - 1] = predicted;
    // The nearest prediction is the one kept from other prefetches (a farther one it replaced
    // no longer claims its experts).
    this.#latest[layer] = this.#predicted[layer]!.find((p) => p !== undefined);
    const pending = this.#latest;
    const guard: ProtectFn = (l, e) => protect(l, e) || (pending[l]?.includes(e) ?? false);
    for (const e of predicted) {
      if (c.find(layer, e) >= 0) continue;
      const s = c.assign(layer, e, guard);
      if (s < 0) return;
      this.#read(s, layer, e, 'prefetch');
      this.#stats.prefetchReads++;
      this.#stats.prefetchBytes += this.#expertBytes[layer]!;
      this.#prefetched.add(layer * c.numExperts + e);
    }
  }

  /** Blocks until the read into `slot` (if any) completed; a prefetch read drops its pin. */
  #waitSlot(slot: number): void {
    const kind = this.#loading.get(slot);
    if (kind === undefined) return;
    const t0 = performance.now();
    try {
      this.#io.wait(slot);
    } catch (err) {
      this.#loading.delete(slot);
      this.cache.drop(slot);
      if (kind === 'prefetch') this.cache.unpin(slot);
      throw err;
    } finally {
      this.#stats.ioWaitSec += (performance.now() - t0) / 1000;
    }
    this.#loading.delete(slot);
    if (kind === 'prefetch') this.cache.unpin(slot);
  }

  /** Releases a step's pin on `slot`; a read still in flight keeps a pin until it completes. */
  #release(slot: number): void {
    if (this.#loading.get(slot) === 'demand') this.#loading.set(slot, 'prefetch');
    else this.cache.unpin(slot);
  }

  /** Splits [expert, slot] pairs being read into those whose read completed and the rest. */
  #ready(inflight: number[]): [number[], number[]] {
    const ready: number[] = [];
    const rest: number[] = [];
    for (let i = 0; i < inflight.length; i += 2) {
      const s = inflight[i + 1]!;
      (this.#loading.has(s) && !this.#io.done(s) ? rest : ready).push(inflight[i]!, s);
    }
    return [ready, rest];
  }

  /** Waits for every prefetch read in flight (they pin their slots until done). */
  #drainPrefetches(): void {
    for (const [s, kind] of [...this.#loading]) if (kind === 'prefetch') this.#waitSlot(s);
  }

  /** Drops the pins of prefetch reads that have completed. */
  #pollLoading(): void {
    for (const [s, kind] of this.#loading) {
      if (kind === 'prefetch' && this.#io.done(s)) {
        this.#loading.delete(s);
        this.cache.unpin(s);
      }
    }
  }
}

/** [layer, expert]. */
export type ExpertKeyPair = readonly [number, number];
