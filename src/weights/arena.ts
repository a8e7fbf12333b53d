/**
 * WeightArena: the memory of an elastic weight store. Every tensor that may ever be resident
 * has a fixed place in one reserved region; a tensor's memory exists only while it is
 * resident (or being read in), and demoting it returns its pages at once. The ring of the
 * streamed tensors sits in a second region sized for the largest ring the store may need.
 *
 *   region:  [ norms, output (always resident, packed) | step 0 | step 1 | ... | step n-1 ]
 *            (a large output matrix may be step 0 instead: weights/plan.ts planLadder)
 *                                                         ^ each step page-aligned, so it
 *                                                           can be discarded on its own
 *   ring:    [ slot 0 | slot 1 | ... ]   only the first numSlots * slotBytes in use
 *
 *   load / startLoad: read tensors into their places (I/O threads), then mlock them
 *   discard:          munlock + madvise(MADV_DONTNEED): memory back to the kernel now
 *   setRingBytes:     lock the ring's used part, discard what the ring no longer uses
 *
 * Mechanism only: the elastic store decides what is resident.
 */
import { InvalidModelError } from '../errors.js';
import type { GgufFile } from '../gguf/reader.js';
import { discardRange, IoStreamer, lockRange, regionStats, releaseRegion, reserveRegion, residentBytes } from '../native/index.js';
import { demotableFootprint, residentFootprint, STREAM_ALIGN } from './plan.js';
import { reserveReadRegion } from './read-buffer.js';
import { loadTensors, type StreamingOptions } from './streaming.js';
import type { TensorEntry } from './tensors.js';

const PAGE = regionStats().pageSize;
const pageRound = (n: number) => Math.ceil(n / PAGE) * PAGE;
// Tensors are placed on the planner's 4096-byte units (demotableFootprint), so the arena holds
// exactly what the planner accounts; pages must divide that unit.
if (STREAM_ALIGN % PAGE !== 0) throw new Error(`weight arena: page size ${PAGE} does not divide ${STREAM_ALIGN}; elastic weights need 4 KiB pages`);
/** Group id of background loads on the arena's I/O streamer. */
const LOAD_GROUP = 1;


/** What the arena holds now, bytes. */
export interface ArenaMemory {
  /** Resident tensors (fixed ones included). */
  residentBytes: number;
  /** Tensors being read in by a background load. */
  loadingBytes: number;
  /** The ring's used part. */
  ringBytes: number;
  /** Bytes locked (resident + ring) and why locking failed, if it did. */
  lockedBytes: number;
  lockError?: string;
}

type State = 'out' | 'loading' | 'in';

/** See the file comment. */
export class WeightArena {
  readonly #file: GgufFile;
  readonly #region: ArrayBuffer;
  readonly #ring: ArrayBuffer;
  readonly #offsets = new Map<string, number>();
  /** Page-rounded bytes of each demotable tensor. */
  readonly #footprints = new Map<string, number>();
  readonly #fixed = new Set<string>();
  /** Bytes of the fixed block (as the planner counts them). */
  readonly #fixedBytes: number;
  #fixedIn = false;
  readonly #state = new Map<string, State>();
  readonly #locked = new Set<string>();
  readonly #lock: boolean;
  readonly #options: StreamingOptions;
  #lockError: string | undefined;
  #residentBytes = 0;
  #lockedBytes = 0;
  #ringBytes = 0;
  #ringLocked = false;
  #loading: { streamer: IoStreamer; tensors: TensorEntry[]; bytes: number } | undefined;
  #disposed = false;

  /**
   * Places `fixed` (always resident, packed at the start) and `demotable` (each on its own
   * pages) in a reserved region, and reserves `maxRingBytes` for the ring. Nothing is read yet.
   */
  constructor(file: GgufFile, fixed: readonly TensorEntry[], demotable: readonly TensorEntry[], maxRingBytes: number, options: StreamingOptions = {}) {
    this.#file = file;
    this.#options = options;
    this.#lock = options.lock !== false;
    let at = 0;
    for (const t of fixed) {
      this.#offsets.set(t.name, at);
      this.#fixed.add(t.name);
      at += residentFootprint(t.bytes);
    }
    // The fixed block (given back only with the arena) counts as the planner counts it; the
    // demotable tensors start on the next page.
    this.#fixedBytes = at;
    at = pageRound(at);
    for (const t of demotable) {
      this.#offsets.set(t.name, at);
      this.#footprints.set(t.name, demotableFootprint(t.bytes));
      at += demotableFootprint(t.bytes);
    }
    for (const t of [...fixed, ...demotable]) this.#state.set(t.name, 'out');
    this.#region = reserveRegion(at);
    // The ring asks for 2 MiB pages before its first touch: O_DIRECT reads into 4 KiB pages
    // take a fraction of the device's rate here (read-buffer.ts).
    this.#ring = reserveReadRegion(maxRingBytes);
  }

  /** The ring region (the store uses its first numSlots * slotBytes). */
  get ring(): ArrayBuffer {
    return this.#ring;
  }

  /** The bytes of resident tensor `t` (a view into the region). */
  view(t: TensorEntry): Uint8Array {
    if (this.#state.get(t.name) !== 'in') throw new Error(`arena: tensor '${t.name}' is not resident (bug)`);
    return new Uint8Array(this.#region, this.#offsets.get(t.name)!, t.bytes);
  }

  /** Whether `t` is resident (loaded and not discarded). */
  isResident(name: string): boolean {
    return this.#state.get(name) === 'in';
  }

  /** Reads `tensors` (fixed or demotable, not resident) now, with progress and abort; locks them. */
  async load(tensors: readonly TensorEntry[], options: Pick<StreamingOptions, 'onProgress' | 'signal'> = {}): Promise<void> {
    const list = tensors.filter((t) => this.#check(t, 'out'));
    await loadTensors(this.#file.path, list, this.#region, this.#offsets, { ...this.#options, ...options });
    this.#settle(list);
  }

  /**
   * Starts reading `tensors` in the background (one read in flight, beside the streaming reads).
   * They become resident in pollLoad() once every read is done. One load at a time.
   */
  startLoad(tensors: readonly TensorEntry[]): void {
    if (this.#loading) throw new Error('arena: a background load is already running (bug)');
    const list = tensors.filter((t) => this.#check(t, 'out'));
    if (list.length === 0) return;
    const streamer = new IoStreamer(this.#file.path, { depth: 1, maxDepth: 1, direct: this.#options.direct ?? true });
    let bytes = 0;
    for (const t of list) {
      this.#state.set(t.name, 'loading');
      bytes += this.#footprint(t);
      // Room for the length rounded up to 4096, so aligned tensors go O_DIRECT.
      streamer.submit(LOAD_GROUP, t.fileOffset, new Uint8Array(this.#region, this.#offsets.get(t.name)!, pageRound(t.bytes)), 0, t.bytes);
    }
    this.#loading = { streamer, tensors: list, bytes };
  }

  /** Tensors of the background load not yet resident (0: none running). */
  get loadingBytes(): number {
    return this.#loading?.bytes ?? 0;
  }

  /**
   * Non-blocking: if the background load's reads are all done, makes its tensors resident
   * (locked) and returns them; else (or with no load) returns []. A failed read throws.
   */
  pollLoad(): TensorEntry[] {
    const l = this.#loading;
    if (!l || l.streamer.pending(LOAD_GROUP) > 0) return [];
    this.#loading = undefined;
    try {
      l.streamer.wait(LOAD_GROUP); // returns at once; throws the first read error
    } catch (err) {
      for (const t of l.tensors) this.#discardOne(t);
      throw err;
    } finally {
      l.streamer.close();
    }
    this.#settle(l.tensors);
    return l.tensors;
  }

  /** Stops the background load (reads in flight finish first) and gives its memory back. */
  cancelLoad(): TensorEntry[] {
    const l = this.#loading;
    if (!l) return [];
    this.#loading = undefined;
    l.streamer.close();
    for (const t of l.tensors) this.#discardOne(t);
    return l.tensors;
  }

  /** Demotes resident tensors: munlock + MADV_DONTNEED, their memory is returned now. */
  discard(tensors: readonly TensorEntry[]): void {
    for (const t of tensors) {
      this.#check(t, 'in');
      this.#discardOne(t);
    }
  }

  /** The ring now uses its first `bytes`: that part is locked, the rest given back. */
  setRingBytes(bytes: number): void {
    if (bytes > this.#ring.byteLength) throw new RangeError(`arena: ring of ${bytes} bytes needed, ${this.#ring.byteLength} reserved (bug)`);
    const used = pageRound(bytes);
    const was = pageRound(this.#ringBytes);
    if (used < was) discardRange(this.#ring, used, was - used);
    this.#ringLocked = this.#lock && used > 0 && this.#noteLock(lockRange(this.#ring, 0, used));
    this.#ringBytes = bytes;
  }

  memory(): ArenaMemory {
    const ringLocked = this.#ringLocked ? pageRound(this.#ringBytes) : 0;
    return {
      residentBytes: this.#residentBytes,
      loadingBytes: this.loadingBytes,
      ringBytes: this.#ringBytes,
      lockedBytes: this.#lockedBytes + ringLocked,
      ...(this.#lockError ? { lockError: this.#lockError } : {}),
    };
  }

  /** Bytes of the two regions backed by physical memory now (mincore): what really is held. */
  physicalBytes(): { region: number; ring: number } {
    return { region: residentBytes(this.#region, 0, this.#region.byteLength), ring: residentBytes(this.#ring, 0, this.#ring.byteLength) };
  }

  /** Gives every byte back (regions unmapped; views become empty). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#loading?.streamer.close();
    this.#loading = undefined;
    releaseRegion(this.#region);
    releaseRegion(this.#ring);
  }

  // --- internals ---

  /** Memory a tensor adds when it becomes resident (fixed ones: 0, their block counts once). */
  #footprint(t: TensorEntry): number {
    return this.#footprints.get(t.name) ?? 0;
  }

  #check(t: TensorEntry, want: State): boolean {
    const s = this.#state.get(t.name);
    if (s === undefined) throw new InvalidModelError(`arena: tensor '${t.name}' has no place in the arena (plan made for another file?)`);
    if (s !== want) throw new Error(`arena: tensor '${t.name}' is ${s}, expected ${want} (bug)`);
    return true;
  }

  /** Loaded tensors become resident and locked. */
  #settle(tensors: readonly TensorEntry[]): void {
    for (const t of tensors) {
      this.#state.set(t.name, 'in');
      if (this.#fixed.has(t.name)) continue;
      const fp = this.#footprint(t);
      this.#residentBytes += fp;
      if (this.#lock && this.#noteLock(lockRange(this.#region, this.#offsets.get(t.name)!, fp))) {
        this.#locked.add(t.name);
        this.#lockedBytes += fp;
      }
    }
    // The fixed block counts (and is locked) as a whole once its tensors are in.
    if (!this.#fixedIn && tensors.some((t) => this.#fixed.has(t.name))) {
      this.#fixedIn = true;
      this.#residentBytes += this.#fixedBytes;
      if (this.#lock && this.#fixedBytes > 0 && this.#noteLock(lockRange(this.#region, 0, this.#fixedBytes))) this.#lockedBytes += this.#fixedBytes;
    }
  }

  #discardOne(t: TensorEntry): void {
    if (this.#fixed.has(t.name)) throw new Error(`arena: tensor '${t.name}' is always resident (bug)`);
    const fp = this.#footprint(t);
    const was = this.#state.get(t.name);
    this.#state.set(t.name, 'out');
    discardRange(this.#region, this.#offsets.get(t.name)!, fp); // also unlocks
    if (was === 'in') this.#residentBytes -= fp;
    if (this.#locked.delete(t.name)) this.#lockedBytes -= fp;
  }

  /** Records a refused lock's reason; returns whether the range is locked. */
  #noteLock(r: { locked: boolean; error?: string }): boolean {
    if (!r.locked && this.#lockError === undefined) this.#lockError = r.error ?? 'mlock failed';
    return r.locked;
  }
}
