/**
 * StreamingWeightStore: the FlexInfer policy over the native I/O threads. Resident tensors
 * (chosen by the Plan) are loaded once into aligned, locked memory; streamed tensors are read
 * every token into a ring of `window + 1` aligned layer slots:
 *
 *   sequence s = 0, 1, 2, ...  ->  layer s % numLayers, I/O group s, a place in the ring
 *
 *   slot:     [ s ]  [ s+1 ]  [ s+2 ]  [ s+3 | s+4 ]   (window 3: 4 slots)
 *              ^ computing      ^ reads in flight, window layers ahead (or more: small
 *                                 layers are packed into one slot, packed-ring.ts)
 *
 *   acquire(layer)  waits for group s only (the forward pass never waits on later layers);
 *   release(layer)  frees s's room and issues the reads of the next sequences that fit
 *                   (wrapping around to the next token's first layers).
 *
 * Inside a slot each streamed tensor starts at a multiple of 4096 and has room for its length
 * rounded up to 4096, so a tensor whose file offset is 4096-aligned can be read with O_DIRECT
 * (see `flexinfer convert --align 4096`); others are buffered reads that drop their pages.
 * The I/O engine splits every tensor into 1 MiB pieces and keeps `depth` of them in flight
 * (io_uring), so the next layers' reads start as soon as ring slots free. Between tokens a
 * ReadPathSelector picks the path (O_DIRECT or buffered, and the depth) from the run's own
 * read rates, and the store checks that the file is still the one it opened: a file that
 * was truncated, written to, replaced or deleted, or a read that fails, ends the run with a
 * ModelFileChangedError.
 */
import { switchFromEnv } from './env-switch.js';
import { median } from '../bench/stats.js';
import { InvalidModelError, InvalidOptionError, ModelFileChangedError } from '../errors.js';
import { readGgufSync, type GgufFile } from '../gguf/reader.js';
import { closeFile, evictFromPageCache, IoStreamer, lockMemory, openFile, readInto, unlockMemory, type IoStreamerStats } from '../native/index.js';
import { embeddingLayout, embedRows, type EmbeddingLayout } from './embed.js';
import { DIRECT_LOAD_MIN_BYTES, residentFootprint, streamFootprint, type Plan } from './plan.js';
import { PIECE_BYTES, type FileRange, type ReadPath } from './probe.js';
import { allocReadBuffer } from './read-buffer.js';
import { deviceReadBytes } from './block-device.js';
import { ReadPathSelector } from './read-path.js';
import { PackedRing } from './packed-ring.js';
import { IoTrace } from './io-trace.js';
import { StreamedOutputSlices } from './output-slices.js';
import type { LayerWeights, WeightStore, WeightTensor } from './store.js';
import { countLayers, listTensors, MapLayerWeights, type TensorEntry } from './tensors.js';

/** Options of StreamingWeightStore.open. */
export interface StreamingOptions {
  /**
   * Read paths the store may use, the first where it starts (default: O_DIRECT at depth 8,
   * then buffered at depth 4). Between tokens it moves to whichever reads fastest. `prior`
   * (the probe's bytes/s) schedules how soon a candidate is tried.
   */
  readPaths?: Array<ReadPath & { prior?: number }>;
  /** false: buffered reads only (no O_DIRECT candidate). Default true. */
  direct?: boolean;
  /** Switch paths between tokens by measured rate (default true; false stays on the first). */
  adaptive?: boolean;
  /** I/O engine (default 'auto': io_uring, else a pool of pread threads). */
  engine?: 'auto' | 'io_uring' | 'threads';
  /** mlock resident tensors and ring (best effort; default true). */
  lock?: boolean;
  /** Longest wait for one layer's reads before failing (default 120 s). */
  waitTimeoutMs?: number;
  /** Progress of loading the resident tensors (bytes). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Called every REPORT_EVERY_TOKENS tokens and at dispose with the rate the best-measured
   * path achieved so far (createWeightStore refreshes the calibration cache with it).
   */
  onMeasuredRate?: (m: MeasuredRates) => void;
  /**
   * Bytes the file's block device has read since boot (default: sysfs, block-device.ts
   * deviceReadBytes; undefined where it does not say). onMeasuredRate reports the buffered path
   * only when the device read at least half of its bytes (PAGE_CACHE_SHARE).
   */
  deviceReadBytes?: () => number | undefined;
  signal?: AbortSignal;
}

/** What a run reports to onMeasuredRate: its best path's read rate, and its compute rate. */
export interface MeasuredRates {
  path: ReadPath;
  bytesPerSec: number;
  bytes: number;
  /** Layer weight bytes per second of layer compute (computeRateOf), when measured. */
  computeBytesPerSec?: number;
}

/** Rate and volume of one read path in a run. */
export interface PathRate extends ReadPath {
  bytes: number;
  /** bytes / wall time with at least one read of this path in flight (0: unused). */
  bytesPerSec: number;
}

/** Counters of a StreamingWeightStore. */
export interface StreamingStats {
  /** Completed passes over all layers. */
  tokens: number;
  bytesRead: number;
  bytesReadPerToken: number;
  /** Time acquire() spent blocked on reads (the compute waiting on I/O). */
  ioWaitSec: number;
  ioWaitSecPerToken: number;
  /**
   * Compute time of the layers in one pass (acquire to release, summed over layers; median of
   * the last COMPUTE_PASSES passes, 0 before the first), and the layers' weight bytes per
   * second of it: the compute side of the planner's cost model, as this run achieves it.
   */
  computeSecPerToken: number;
  computeBytesPerSec: number;
  /** Bytes read per second of wall time with reads in flight, over both paths. */
  readBytesPerSec: number;
  /** The path reads take now, and what each candidate achieved in this run. */
  readPath: ReadPath;
  pathRates: { direct: PathRate; buffered: PathRate };
  pathSwitches: number;
  /** I/O engine running ('io_uring' or 'threads') and why io_uring was refused, if it was. */
  engine: string;
  engineError?: string;
  /**
   * How buffered pieces are read: with the kernel's read-ahead or exactly their range
   * (POSIX_FADV_RANDOM), and whether with RWF_DONTCACHE (dontCacheError: why not although asked).
   */
  bufferedReads: { readAhead: boolean; dontCache: boolean; dontCacheError?: string };
  /** Reads (1 MiB pieces) in flight now, on average while reading, and at most. */
  readsInFlight: number;
  meanReadsInFlight: number;
  maxReadsInFlight: number;
  /** Piece latency percentiles (microseconds). */
  readLatencyP50Us: number;
  readLatencyP99Us: number;
  directBytes: number;
  bufferedBytes: number;
  residentBytes: number;
  ringBytes: number;
  lockedBytes: number;
  lockError?: string;
}

/**
 * Buffered reads are the device's figure only when the device read at least this share of
 * their bytes; the rest came from the page cache at memory speed. Seen 2026-12-06 19:01: a run
 * of a file written a minute before (tinyllama Q4_0 at 50%, no memory limit, its pages still
 * cached) reported buffered reads at 8.85 GB/s, saved as the device's calibration, and the
 * planner then planned every later (cold) run for a disk about twice as fast as it is.
 */
export const PAGE_CACHE_SHARE = 0.5;

/** Tokens between onMeasuredRate reports. */
export const REPORT_EVERY_TOKENS = 16;
/** Default candidates without a calibration: O_DIRECT then buffered (the probes' usual winners here). */
export const DEFAULT_READ_PATHS: ReadPath[] = [
  { direct: true, depth: 8 },
  { direct: false, depth: 4 },
];
/** Most pieces a read path keeps in flight. */
export const MAX_READ_DEPTH = 32;

const ALIGN = 4096;

/**
 * Memory a store works in: its own (open() loads the resident tensors into one buffer it
 * locks and unlocks) or its caller's (over(): the elastic store's arena, which loads, locks
 * and frees it).
 */
interface StoreMemory {
  /** The bytes of resident tensor `t`. */
  resident(t: TensorEntry): Uint8Array;
  /** The buffer open() loaded; undefined when the caller owns the memory. */
  owned?: ArrayBuffer;
  /** The caller's ring memory (at least numSlots * slotBytes); undefined: allocate one here. */
  ring?: ArrayBuffer;
}

interface StreamedSlice {
  shortName: string;
  entry: TensorEntry;
  /** Offset inside a slot. */
  slotOffset: number;
}

/** A WeightStore that keeps what the Plan says resident and streams the rest every token. */
export class StreamingWeightStore implements WeightStore {
  readonly numLayers: number;
  readonly plan: Plan;
  readonly #file: GgufFile;
  readonly #streamer: IoStreamer;
  readonly #numSlots: number;
  readonly #slotBytes: number;
  readonly #ring: ArrayBuffer;
  /** The resident buffer when this store owns it (open()), else undefined (over()). */
  readonly #resident: ArrayBuffer | undefined;
  readonly #residentBytes: number;
  readonly #ringBytes: number;
  /** The output matrix in row slices when the plan streams it (buffers at the ring's end). */
  readonly outputSlices: StreamedOutputSlices | undefined;
  /** Per layer: resident tensors by short name. */
  readonly #residentLayer: Map<string, WeightTensor>[];
  /** Per layer: streamed tensors and where they go in a slot. */
  readonly #streamedLayer: StreamedSlice[][];
  /** Per layer: the streamed tensors' footprint in a slot. */
  readonly #layerFootprint: number[];
  /** Where each issued sequence's layer lies in the ring (undefined: nothing is streamed). */
  readonly #packing: PackedRing | undefined;
  readonly #globals = new Map<string, WeightTensor>();
  readonly #embd: { layout: EmbeddingLayout; resident?: Uint8Array; fileOffset: number } | undefined;
  readonly #waitTimeoutMs: number;
  readonly #rowFd: number;
  #rowBuf: Uint8Array | undefined;
  readonly #selector: ReadPathSelector | undefined;
  readonly #onMeasuredRate: StreamingOptions['onMeasuredRate'];
  readonly #deviceRead: () => number | undefined;
  readonly #deviceStart: number | undefined;
  /** Engine counters at the start of the current token. */
  #tokenStart: IoStreamerStats;

  /** Sequence number of the next read to issue and of the next layer to acquire. */
  #nextIssue = 0;
  #nextAcquire = 0;
  /** Sequences acquired and not yet released, oldest first. */
  readonly #held: number[] = [];
  #tokens = 0;
  #bytesRead = 0;
  #waitNs = 0;
  /** When each held sequence's acquire returned; this pass's layer compute; the last passes'. */
  readonly #acquiredAt = new Map<number, bigint>();
  #passComputeNs = 0;
  readonly #passCompute: number[] = [];
  #locked: { resident: boolean; ring: boolean; error?: string };
  #disposed = false;
  /** FLEXINFER_IO_TRACE's timeline (io-trace.ts); undefined = off. */
  readonly #trace = IoTrace.fromEnv();
  /** The path left buffered reads: drop the file's page cache after the next token. */
  #dropCachePending = false;

  private constructor(file: GgufFile, plan: Plan, memory: StoreMemory, options: StreamingOptions) {
    this.#file = file;
    this.plan = plan;
    const tensors = listTensors(file);
    this.numLayers = countLayers(file, tensors);
    if (plan.numLayers !== this.numLayers && plan.numLayers !== 0) {
      throw new InvalidModelError(`the plan has ${plan.numLayers} layers but the file has ${this.numLayers}`);
    }
    this.#waitTimeoutMs = options.waitTimeoutMs ?? 120_000;
    this.#resident = memory.owned;
    let residentBytes = 0;
    const placement = new Map(plan.tensors.map((t) => [t.name, t.placement]));
    this.#residentLayer = Array.from({ length: this.numLayers }, () => new Map());
    this.#streamedLayer = Array.from({ length: this.numLayers }, () => []);
    const slotUse = new Array<number>(this.numLayers).fill(0);
    let sliced: TensorEntry | undefined;
    for (const t of tensors) {
      const p = placement.get(t.name);
      if (p === undefined) throw new InvalidModelError(`the plan does not place tensor '${t.name}' (plan made for another file?)`);
      if (p === 'resident') {
        const w = view(t, memory.resident(t));
        residentBytes += t.bytes;
        if (t.layer >= 0) this.#residentLayer[t.layer]!.set(t.shortName, w);
        else this.#globals.set(t.name, w);
      } else if (p === 'slices') {
        if (t.kind !== 'output' || !plan.outputSlices) throw new InvalidModelError(`the plan streams '${t.name}' in slices; only the output matrix can be`);
        sliced = t;
      } else if (p === 'streamed') {
        if (t.layer < 0) throw new InvalidModelError(`the plan streams global tensor '${t.name}', which this store keeps resident only`);
        this.#streamedLayer[t.layer]!.push({ shortName: t.shortName, entry: t, slotOffset: slotUse[t.layer]! });
        slotUse[t.layer]! += streamFootprint(t.bytes);
      }
    }
    this.#slotBytes = Math.max(0, ...slotUse);
    this.#numSlots = this.#slotBytes > 0 ? Math.min(plan.window + 1, this.numLayers) : 0;
    const layerRing = this.#numSlots * this.#slotBytes;
    if (plan.outputSlices && !sliced) throw new InvalidModelError('the plan slices an output matrix this file does not have');
    this.#ringBytes = layerRing + (sliced ? plan.outputSlices!.bufferBytes : 0);
    this.#layerFootprint = slotUse;
    // Layers are packed into [0, layerRing); the output slices' buffers follow it.
    this.#packing = this.#numSlots > 0 ? new PackedRing(this.#numSlots, this.#slotBytes, ringPackingFromEnv() ? Math.max(this.#numSlots, this.numLayers) : this.#numSlots) : undefined;
    this.#residentBytes = memory.owned?.byteLength ?? residentBytes;
    if (memory.ring && memory.ring.byteLength < this.#ringBytes) throw new RangeError(`the ring memory given holds ${memory.ring.byteLength} bytes; this plan needs ${this.#ringBytes}`);
    this.#ring = memory.ring ?? allocReadBuffer(this.#ringBytes, ALIGN);
    this.#locked = { resident: false, ring: false };
    if (options.lock !== false && memory.owned) {
      const a = lockMemory(memory.owned);
      const b = lockMemory(this.#ring);
      this.#locked = { resident: a.locked, ring: b.locked, ...(a.error || b.error ? { error: a.error ?? b.error } : {}) };
    }
    const embdInfo = file.tensor('token_embd.weight');
    if (embdInfo) {
      const resident = this.#globals.get('token_embd.weight')?.data;
      this.#embd = { layout: embeddingLayout(embdInfo), fileOffset: embdInfo.fileOffset, ...(resident ? { resident } : {}) };
    }
    const paths = readPathsOf(options);
    const start = paths[0]!;
    this.#streamer = new IoStreamer(file.path, { direct: start.direct, depth: start.depth, maxDepth: MAX_READ_DEPTH, pieceBytes: PIECE_BYTES, engine: options.engine ?? 'auto', ...bufferedReadsFromEnv() });
    this.#selector = options.adaptive === false || paths.length < 2 ? undefined : new ReadPathSelector(paths);
    this.#onMeasuredRate = options.onMeasuredRate;
    this.#deviceRead = options.deviceReadBytes ?? (() => deviceReadBytes(file.path));
    this.#deviceStart = this.#onMeasuredRate ? this.#deviceRead() : undefined;
    this.#tokenStart = this.#streamer.stats();
    this.outputSlices = sliced ? new StreamedOutputSlices(sliced, plan.outputSlices!, this.#streamer, this.#ring, layerRing, (g) => this.#waitGroup(g)) : undefined;
    // Opened now, not on first use: every read of this store comes from the file it planned for.
    this.#rowFd = openFile(file.path);
    // Fill the ring: layers 0, 1, ... as far as they fit (wrapping when the model has fewer layers).
    if (this.numLayers > 0) this.#issueAhead();
  }

  /**
   * Opens a model file with a residency plan (from planResidency over this file's tensors):
   * loads and locks the resident tensors, allocates the ring and starts the first reads.
   */
  static async open(source: string | GgufFile, plan: Plan, options: StreamingOptions = {}): Promise<StreamingWeightStore> {
    const file = typeof source === 'string' ? readGgufSync(source) : source;
    const placement = new Map(plan.tensors.map((t) => [t.name, t.placement]));
    const toLoad = listTensors(file).filter((t) => placement.get(t.name) === 'resident');
    // Large tensors first: their footprints are multiples of 4096, so each starts 4096-aligned.
    toLoad.sort((a, b) => Number(b.bytes >= DIRECT_LOAD_MIN_BYTES) - Number(a.bytes >= DIRECT_LOAD_MIN_BYTES));
    const offsets = new Map<string, number>();
    let total = 0;
    for (const t of toLoad) {
      offsets.set(t.name, total);
      total += residentFootprint(t.bytes);
    }
    const resident = allocReadBuffer(total, ALIGN);
    await loadTensors(file.path, toLoad, resident, offsets, options);
    return new StreamingWeightStore(file, plan, { owned: resident, resident: (t) => new Uint8Array(resident, offsets.get(t.name)!, t.bytes) }, options);
  }

  /**
   * A store over memory its caller owns (the elastic store's arena): resident tensors are the
   * views `residentView` gives, streamed ones go to the first numSlots * slotBytes of `ring`.
   * Nothing is loaded, locked or freed here; the reads of the first layers start at once.
   */
  static over(file: GgufFile, plan: Plan, memory: { residentView(t: TensorEntry): Uint8Array; ring: ArrayBuffer }, options: StreamingOptions = {}): StreamingWeightStore {
    return new StreamingWeightStore(file, plan, { resident: memory.residentView, ring: memory.ring }, options);
  }

  acquire(layer: number): LayerWeights {
    this.#checkLayer(layer, 'acquire');
    if (layer !== this.#nextAcquire % this.numLayers) this.#resync(layer);
    const s = this.#nextAcquire;
    if (this.#numSlots > 0 && s >= this.#nextIssue) {
      throw new RangeError(`acquire: layer ${layer} needs room in the ring, but its ${this.#numSlots} slots hold acquired layers; release earlier layers first`);
    }
    if (layer === 0) this.#checkFile();
    this.#nextAcquire++;
    const t0 = process.hrtime.bigint();
    const { bytes } = this.#wait(s);
    const waited = Number(process.hrtime.bigint() - t0);
    this.#waitNs += waited;
    this.#trace?.acquire(s, waited, this.#streamer.stats());
    this.#bytesRead += bytes;
    this.#held.push(s);
    this.#acquiredAt.set(s, process.hrtime.bigint());
    const slotBase = this.#packing ? this.#packing.offsetOf(s) : 0;
    const tensors = new Map(this.#residentLayer[layer]!);
    for (const sl of this.#streamedLayer[layer]!) {
      tensors.set(sl.shortName, view(sl.entry, new Uint8Array(this.#ring, slotBase + sl.slotOffset, sl.entry.bytes)));
    }
    return new MapLayerWeights(layer, tensors);
  }

  release(layer: number): void {
    this.#checkLayer(layer, 'release');
    const i = this.#held.findIndex((s) => s % this.numLayers === layer);
    if (i < 0) throw new RangeError(`release: layer ${layer} is not acquired`);
    // Room is freed oldest first: the ring holds sequences [oldest held, nextIssue).
    const [s] = this.#held.splice(i, 1) as [number];
    const at = this.#acquiredAt.get(s);
    if (at !== undefined) this.#passComputeNs += Number(process.hrtime.bigint() - at);
    this.#acquiredAt.delete(s);
    this.#trace?.release(s, this.#streamer.stats());
    if (s % this.numLayers === this.numLayers - 1) this.#endToken();
    this.#issueAhead();
  }

  global(name: string): WeightTensor | undefined {
    return this.#globals.get(name);
  }

  /** A resident tensor of `layer` (norms, MoE routers) without acquiring the layer, or undefined. */
  residentTensor(layer: number, shortName: string): WeightTensor | undefined {
    return this.#residentLayer[layer]?.get(shortName);
  }

  embed(tokens: Int32Array, out: Float32Array): void {
    const e = this.#embd;
    if (!e) throw new InvalidModelError("tensor 'token_embd.weight' is missing from the model file");
    const { rowBytes } = e.layout;
    if (e.resident) {
      const data = e.resident;
      embedRows(e.layout, tokens, out, (t) => data.subarray(t * rowBytes, (t + 1) * rowBytes));
      return;
    }
    const row = (this.#rowBuf ??= new Uint8Array(rowBytes));
    embedRows(e.layout, tokens, out, (t) => {
      try {
        readInto(this.#rowFd, e.fileOffset + t * rowBytes, row, 0, rowBytes);
      } catch (err) {
        throw this.#fileError(err);
      }
      return row;
    });
  }

  /** Bytes read, I/O wait, read rates per path, reads in flight and memory figures since open. */
  stats(): StreamingStats {
    const io = this.#streamer.stats();
    const info = this.#streamer.info();
    const tokens = this.#tokens;
    const lockedBytes = (this.#locked.resident ? this.#residentBytes : 0) + (this.#locked.ring ? this.#ringBytes : 0);
    const rate = (bytes: number, ns: number) => (ns > 0 ? bytes / (ns / 1e9) : 0);
    const est = this.#selector?.estimates() ?? [];
    const depthOf = (direct: boolean) => est.find((e) => e.direct === direct)?.depth ?? (info.direct === direct ? info.depth : 0);
    const out = this.outputSlices?.stats();
    const bytesRead = this.#bytesRead + (out?.bytesRead ?? 0);
    const waitSec = (this.#waitNs + (out?.waitNs ?? 0)) / 1e9;
    return {
      tokens,
      bytesRead,
      bytesReadPerToken: tokens > 0 ? bytesRead / tokens : 0,
      ioWaitSec: waitSec,
      ioWaitSecPerToken: tokens > 0 ? waitSec / tokens : 0,
      ...computeRateOf(this.#passCompute, this.plan),
      readBytesPerSec: rate(io.directBytes + io.bufferedBytes, io.busyNs),
      readPath: { direct: info.direct, depth: info.depth },
      pathRates: {
        direct: { direct: true, depth: depthOf(true), bytes: io.directBytes, bytesPerSec: rate(io.directBytes, io.directBusyNs) },
        buffered: { direct: false, depth: depthOf(false), bytes: io.bufferedBytes, bytesPerSec: rate(io.bufferedBytes, io.bufferedBusyNs) },
      },
      pathSwitches: this.#selector?.switches ?? 0,
      engine: info.engine,
      ...(info.engineError ? { engineError: info.engineError } : {}),
      bufferedReads: { readAhead: info.readAhead, dontCache: info.dontCache, ...(info.dontCacheError ? { dontCacheError: info.dontCacheError } : {}) },
      readsInFlight: io.inflight,
      meanReadsInFlight: io.busyNs > 0 ? io.inflightNs / io.busyNs : 0,
      maxReadsInFlight: io.maxInflight,
      readLatencyP50Us: io.latencyP50Us,
      readLatencyP99Us: io.latencyP99Us,
      directBytes: io.directBytes,
      bufferedBytes: io.bufferedBytes,
      residentBytes: this.#residentBytes,
      ringBytes: this.#ringBytes,
      lockedBytes,
      ...(this.#locked.error ? { lockError: this.#locked.error } : {}),
    };
  }

  /** Stops the I/O threads, closes files, unlocks memory. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#reportRate();
    this.#trace?.write({ layers: this.numLayers, slots: this.#numSlots, streamedBytesPerLayer: this.#streamedLayer.map((l) => l.reduce((a, sl) => a + sl.entry.bytes, 0)) });
    this.outputSlices?.drain();
    this.#streamer.close();
    closeFile(this.#rowFd);
    if (this.#locked.resident && this.#resident) unlockMemory(this.#resident);
    if (this.#locked.ring) unlockMemory(this.#ring);
  }

  #checkLayer(layer: number, what: string): void {
    if (this.#disposed) throw new Error(`${what}: the weight store is disposed`);
    if (!(Number.isInteger(layer) && layer >= 0 && layer < this.numLayers)) {
      throw new RangeError(`${what}: layer ${layer} is outside [0, ${this.numLayers})`);
    }
  }

  /** Waits for the reads of sequence s; a failed read becomes a ModelFileChangedError. */
  #wait(s: number): { bytes: number } {
    return this.#waitGroup(s % 0x80000000);
  }

  #waitGroup(group: number): { bytes: number } {
    try {
      return this.#streamer.wait(group, this.#waitTimeoutMs);
    } catch (err) {
      throw this.#fileError(err);
    }
  }

  /** A read failure as the typed error: what changed about the file, or the I/O error. */
  #fileError(err: unknown): Error {
    const code = (err as { code?: string }).code;
    if (code === 'ETIMEDOUT') return err as Error; // storage stalled: not a file change
    const change = this.#streamer.checkFile();
    const message = (err as Error)?.message ?? String(err);
    if (change) return new ModelFileChangedError(this.#file.path, change.reason, change.detail, { cause: err });
    if (code === 'EOF') return new ModelFileChangedError(this.#file.path, 'truncated', message, { cause: err });
    return new ModelFileChangedError(this.#file.path, 'io-error', message, { cause: err });
  }

  /** Between tokens: is the file still the one we opened (size, mtime, inode at the path)? */
  #checkFile(): void {
    const change = this.#streamer.checkFile();
    if (change) throw new ModelFileChangedError(this.#file.path, change.reason, change.detail);
  }

  /** A token's last layer was released: feed the path selector, report rates now and then. */
  #endToken(): void {
    this.#tokens++;
    this.#passCompute.push(this.#passComputeNs / 1e9);
    if (this.#passCompute.length > COMPUTE_PASSES) this.#passCompute.shift();
    this.#passComputeNs = 0;
    const now = this.#streamer.stats();
    const was = this.#tokenStart;
    this.#tokenStart = now;
    if (this.#selector) {
      const cur = this.#selector.current;
      const samples = [
        { direct: true, bytes: now.directBytes - was.directBytes, busySec: (now.directBusyNs - was.directBusyNs) / 1e9 },
        { direct: false, bytes: now.bufferedBytes - was.bufferedBytes, busySec: (now.bufferedBusyNs - was.bufferedBusyNs) / 1e9 },
      ];
      const next = this.#selector.onToken(samples);
      this.#trace?.token(cur, next);
      if (this.#dropCachePending) {
        // A token after leaving buffered reads: they have all completed; drop what their
        // read-ahead left in the page cache (the pieces' DONTNEED covers only their own range).
        // Under a memory limit those pages kept the cgroup at its limit for the rest of the run
        // (read-path.ts NOTE).
        this.#dropCachePending = false;
        if (cur.direct) this.#dropPageCache();
      }
      if (next.direct !== cur.direct || next.depth !== cur.depth) {
        this.#streamer.setPath(next.direct, next.depth);
        if (next.direct && !cur.direct) this.#dropCachePending = true;
      }
    }
    if (this.#tokens % REPORT_EVERY_TOKENS === 0) this.#reportRate();
  }

  #dropPageCache(): void {
    try {
      evictFromPageCache(this.#file.path);
    } catch {
      // Best effort: the file's pages are the kernel's to reclaim anyway.
    }
  }

  /** onMeasuredRate with the run's best-measured path so far (enough bytes only). */
  #reportRate(): void {
    if (!this.#onMeasuredRate) return;
    const st = this.stats();
    const paths = this.#bufferedFromDevice(st) ? [st.pathRates.direct, st.pathRates.buffered] : [st.pathRates.direct];
    const best = paths.filter((p) => p.bytes >= MIN_REPORT_BYTES && p.bytesPerSec > 0).sort((a, b) => b.bytesPerSec - a.bytesPerSec)[0];
    const compute = st.computeBytesPerSec > 0 ? { computeBytesPerSec: st.computeBytesPerSec } : {};
    if (best) this.#onMeasuredRate({ path: { direct: best.direct, depth: best.depth || st.readPath.depth }, bytesPerSec: best.bytesPerSec, bytes: best.bytes, ...compute });
  }

  /** Whether the device read at least PAGE_CACHE_SHARE of the buffered bytes (true where sysfs does not say). */
  #bufferedFromDevice(st: StreamingStats): boolean {
    const buffered = st.pathRates.buffered.bytes;
    if (buffered === 0 || this.#deviceStart === undefined) return true;
    const now = this.#deviceRead();
    if (now === undefined) return true;
    return now - this.#deviceStart - st.pathRates.direct.bytes >= PAGE_CACHE_SHARE * buffered;
  }

  /** Frees the room of released sequences and issues the reads of the next ones that fit. */
  #issueAhead(): void {
    if (!this.#packing) return; // nothing is streamed
    this.#packing.freeBefore(this.#held.length > 0 ? this.#held[0]! : this.#nextAcquire);
    for (;;) {
      const base = this.#packing.place(this.#nextIssue, this.#layerFootprint[this.#nextIssue % this.numLayers]!);
      if (base === undefined) return;
      this.#issue(this.#nextIssue++, base);
    }
  }

  /** Issues the reads of sequence s (layer s % numLayers) into the ring at byte `base`. */
  #issue(s: number, base: number): void {
    this.#trace?.issue(s);
    const layer = s % this.numLayers;
    for (const sl of this.#streamedLayer[layer]!) {
      // The view bounds an O_DIRECT read's rounded-up tail to this tensor's own footprint.
      const dst = new Uint8Array(this.#ring, base + sl.slotOffset, streamFootprint(sl.entry.bytes));
      this.#streamer.submit(s % 0x80000000, sl.entry.fileOffset, dst, 0, sl.entry.bytes);
    }
  }

  /**
   * The caller skipped ahead or restarted (e.g. an aborted forward pass never released its
   * layers): finish the reads in flight, forget held layers, and restart the ring at `layer`.
   */
  #resync(layer: number): void {
    for (let s = this.#nextAcquire; s < this.#nextIssue; s++) this.#wait(s);
    this.#held.length = 0;
    let s = this.#nextIssue;
    while (s % this.numLayers !== layer) s++;
    this.#nextAcquire = this.#nextIssue = s;
    this.#packing?.reset();
    this.#issueAhead();
  }
}

/**
 * The file ranges one forward pass streams under `plan`, in the order the store reads them:
 * layer by layer, each layer's streamed tensors in file-table order (as #issue submits them).
 * The budget sweep's layout probe reads exactly these.
 */
export function streamedRanges(file: GgufFile, plan: Pick<Plan, 'tensors'>): FileRange[] {
  const placement = new Map(plan.tensors.map((t) => [t.name, t.placement]));
  const byLayer: FileRange[][] = [];
  for (const t of listTensors(file)) {
    if (placement.get(t.name) !== 'streamed' || t.layer < 0) continue;
    (byLayer[t.layer] ??= []).push([t.fileOffset, t.bytes]);
  }
  return byLayer.flatMap((l) => l ?? []);
}

/**
 * FLEXINFER_RING_PACKING=0: at most one layer per ring slot outstanding (the ring before
 * packing, for comparisons); default on. Measured (issue-9 notes, tinyllama-1.1b Q8_0 at 75%,
 * FLEXINFER_READ_PATH=direct@32, 48 tokens, 5 interleaved quiet rounds 11:58-12:05 UTC, a
 * noisy middling disk): streamed 4.64 vs 4.28 GB/s (medians; 4 of 5 rounds won), device busy
 * 87-96% vs 77-93% of the run.
 */
export function ringPackingFromEnv(value = process.env.FLEXINFER_RING_PACKING): boolean {
  return switchFromEnv('FLEXINFER_RING_PACKING', value, true);
}

/** How the streamer's buffered pieces are read (IoStreamer readAhead / dontCache). */
export interface BufferedReads {
  readAhead: boolean;
  dontCache: boolean;
}

/**
 * FLEXINFER_BUFFERED_READS=readahead (the default) | exact | dontcache | exact+dontcache: how
 * buffered pieces are read, for comparisons. readahead: the kernel's read-ahead, pages dropped
 * after each piece (DONTNEED); exact: no read-ahead (POSIX_FADV_RANDOM: the device reads only
 * the streamed ranges); dontcache: RWF_DONTCACHE (the kernel drops the pages; where it refuses,
 * pieces are read without it). The default is the measured winner: tinyllama Q8_0, interleaved
 * quiet A/B of the budget sweep's child with buffered@8 pinned, 3 rounds per point (issue-9
 * notes, 2026-12-06 02:57-03:27): at 25% readahead 3.76 tok/s (3.5-4.2 GB/s busy) vs exact 2.06,
 * dontcache 2.53, exact+dontcache 1.76, exact + WILLNEED of each tensor 1.8; at 50% 3.66 vs
 * 2.80 / 3.57 / 3.05. exact reads 30% fewer disk bytes at 50-75% (the read-ahead past streamed
 * tensors into resident ones) but in 1 MiB device requests instead of 8 MiB ones.
 */
export function bufferedReadsFromEnv(value = process.env.FLEXINFER_BUFFERED_READS): BufferedReads {
  const v = (value ?? '').trim();
  const modes: Record<string, BufferedReads> = {
    '': { readAhead: true, dontCache: false },
    readahead: { readAhead: true, dontCache: false },
    exact: { readAhead: false, dontCache: false },
    dontcache: { readAhead: true, dontCache: true },
    'exact+dontcache': { readAhead: false, dontCache: true },
  };
  const mode = modes[v];
  if (!mode) throw new InvalidOptionError('FLEXINFER_BUFFERED_READS', `expected readahead, exact, dontcache or exact+dontcache, got '${value}'`);
  return mode;
}

function view(t: TensorEntry, data: Uint8Array): WeightTensor {
  return { name: t.name, type: t.info.type, dims: t.info.dims, data };
}

/** Reads `tensors` into `buffer` at their offsets with the I/O threads, with progress and abort. @internal */
export async function loadTensors(path: string, tensors: TensorEntry[], buffer: ArrayBuffer, offsets: Map<string, number>, options: StreamingOptions): Promise<void> {
  const { signal, onProgress } = options;
  signal?.throwIfAborted();
  const total = tensors.reduce((a, t) => a + t.bytes, 0);
  const start = readPathsOf(options)[0]!;
  const streamer = new IoStreamer(path, { direct: start.direct, depth: Math.max(start.depth, 4), maxDepth: MAX_READ_DEPTH, pieceBytes: PIECE_BYTES, engine: options.engine ?? 'auto' });
  try {
    let done = 0;
    onProgress?.(0, total);
    // Batches of ~32 MiB so progress and abort are prompt.
    for (let i = 0; i < tensors.length; ) {
      let batch = 0;
      const group = i;
      while (i < tensors.length && (batch === 0 || batch < 32 * 1024 * 1024)) {
        const t = tensors[i++]!;
        // The view bounds an O_DIRECT read's rounded-up tail to this tensor's footprint.
        const dst = new Uint8Array(buffer, offsets.get(t.name)!, residentFootprint(t.bytes));
        streamer.submit(group, t.fileOffset, dst, 0, t.bytes);
        batch += t.bytes;
      }
      try {
        done += streamer.wait(group).bytes;
      } catch (err) {
        const change = streamer.checkFile();
        throw new ModelFileChangedError(path, change?.reason ?? ((err as { code?: string }).code === 'EOF' ? 'truncated' : 'io-error'), change?.detail ?? (err as Error).message, { cause: err });
      }
      onProgress?.(done, total);
      await new Promise((resolve) => setImmediate(resolve));
      signal?.throwIfAborted();
    }
  } finally {
    streamer.close();
  }
}

/** Reads of at least this many bytes on a path make a rate worth reporting. */
const MIN_REPORT_BYTES = 256 * 1024 * 1024;

/** Passes whose compute time the median of StreamingStats.computeSecPerToken is taken over. */
export const COMPUTE_PASSES = 32;

/**
 * computeSecPerToken and computeBytesPerSec from the last passes' layer compute seconds: the
 * median (a prompt pass computes many rows at once and would weigh on a mean), and the plan's
 * layer weight bytes (resident and streamed) per second of it.
 */
export function computeRateOf(passSec: readonly number[], plan: Pick<Plan, 'layers'>): { computeSecPerToken: number; computeBytesPerSec: number } {
  const v = passSec.filter((x) => x > 0);
  if (v.length === 0) return { computeSecPerToken: 0, computeBytesPerSec: 0 };
  const med = median(v);
  const bytes = plan.layers.reduce((a, l) => a + l.residentBytes + l.streamedBytes, 0);
  return { computeSecPerToken: med, computeBytesPerSec: bytes / med };
}

/** The candidate read paths of a store (the first is where it starts). */
function readPathsOf(options: StreamingOptions): Array<ReadPath & { prior?: number }> {
  const paths = (options.readPaths ?? DEFAULT_READ_PATHS).filter((p) => options.direct !== false || !p.direct);
  if (paths.length === 0) return [{ direct: false, depth: 4 }];
  for (const p of paths) {
    if (!(Number.isInteger(p.depth) && p.depth >= 1 && p.depth <= MAX_READ_DEPTH)) throw new RangeError(`read path depth must be an integer in [1, ${MAX_READ_DEPTH}], got ${p.depth}`);
  }
  return paths;
}
