/**
 * ResidentWeightStore: every tensor of the file in aligned memory, loaded once. What a run
 * without a memory budget uses; acquire/release are free.
 *
 * The whole data section is read into one 4096-aligned buffer, starting at the data offset
 * rounded down to 4096, so every read request is 4096-aligned in the file and in memory and
 * can go O_DIRECT (no page-cache copy of the model left behind). Tensors are views into it.
 */
import { InvalidModelError } from '../errors.js';
import { readGgufSync, type GgufFile } from '../gguf/reader.js';
import { allocAligned, IoStreamer, lockMemory, unlockMemory } from '../native/index.js';
import { embeddingLayout, embedRows, type EmbeddingLayout } from './embed.js';
import type { LayerWeights, WeightStore, WeightTensor } from './store.js';
import { countLayers, listTensors, MapLayerWeights, type TensorEntry } from './tensors.js';

/** Options of ResidentWeightStore.load. */
export interface ResidentLoadOptions {
  /** Called after each chunk with bytes loaded so far and the total. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** mlock the weights (best effort; default true). */
  lock?: boolean;
  /** Use O_DIRECT (default true). */
  direct?: boolean;
}

const ALIGN = 4096;
// Load in 16 MiB requests with a few in flight: large enough for full bandwidth on the
// measured virtual disk (DESIGN.md: 1-16 MiB requests all reach it), small enough for
// smooth progress and prompt abort.
const LOAD_CHUNK = 16 * 1024 * 1024;
const LOAD_INFLIGHT = 4;

/** Every weight resident in memory. */
export class ResidentWeightStore implements WeightStore {
  readonly numLayers: number;
  /** Bytes of weight memory held. */
  readonly residentBytes: number;
  #locked: boolean;
  /** Why mlock failed, when it did. */
  readonly lockError: string | undefined;
  #buffer: ArrayBuffer | undefined;
  readonly #layers: MapLayerWeights[];
  readonly #globals = new Map<string, WeightTensor>();
  readonly #embd: { layout: EmbeddingLayout; data: Uint8Array } | undefined;

  private constructor(readonly file: GgufFile, buffer: ArrayBuffer, base: number, tensors: TensorEntry[], lock: { locked: boolean; error?: string }) {
    this.#buffer = buffer;
    this.residentBytes = buffer.byteLength;
    this.#locked = lock.locked;
    this.lockError = lock.error;
    this.numLayers = countLayers(file, tensors);
    const perLayer = Array.from({ length: this.numLayers }, () => new Map<string, WeightTensor>());
    for (const t of tensors) {
      const w: WeightTensor = { name: t.name, type: t.info.type, dims: t.info.dims, data: new Uint8Array(buffer, t.fileOffset - base, t.bytes) };
      if (t.layer >= 0) perLayer[t.layer]!.set(t.shortName, w);
      else this.#globals.set(t.name, w);
    }
    this.#layers = perLayer.map((m, i) => new MapLayerWeights(i, m));
    const embd = this.#globals.get('token_embd.weight');
    this.#embd = embd ? { layout: embeddingLayout(file.tensor('token_embd.weight')!), data: embd.data } : undefined;
  }

  /** Reads every tensor of the GGUF file (path or parsed header) into aligned memory. */
  static async load(source: string | GgufFile, options: ResidentLoadOptions = {}): Promise<ResidentWeightStore> {
    const file = typeof source === 'string' ? readGgufSync(source) : source;
    const tensors = listTensors(file);
    const base = Math.floor(file.dataOffset / ALIGN) * ALIGN;
    const span = file.fileSize - base;
    const buffer = allocAligned(Math.ceil(span / ALIGN) * ALIGN, ALIGN);
    await readRange(file.path, base, span, buffer, options);
    const lock = options.lock === false ? { locked: false } : lockMemory(buffer);
    return new ResidentWeightStore(file, buffer, base, tensors, lock);
  }

  /** Whether the weights are mlocked. */
  get locked(): boolean {
    return this.#locked;
  }

  acquire(layer: number): LayerWeights {
    const l = this.#layers[layer];
    if (!l) throw new RangeError(`acquire: layer ${layer} is outside [0, ${this.numLayers})`);
    return l;
  }

  release(layer: number): void {
    if (!this.#layers[layer]) throw new RangeError(`release: layer ${layer} is outside [0, ${this.numLayers})`);
  }

  global(name: string): WeightTensor | undefined {
    return this.#globals.get(name);
  }

  embed(tokens: Int32Array, out: Float32Array): void {
    const e = this.#embd;
    if (!e) throw new InvalidModelError("tensor 'token_embd.weight' is missing from the model file");
    const { rowBytes } = e.layout;
    embedRows(e.layout, tokens, out, (t) => e.data.subarray(t * rowBytes, (t + 1) * rowBytes));
  }

  /** Unlocks the memory and drops this store's reference to it. */
  dispose(): void {
    if (this.#buffer && this.#locked) unlockMemory(this.#buffer);
    this.#locked = false;
    this.#buffer = undefined;
  }
}

/**
 * Reads [fileOffset, fileOffset + length) of a file into buffer[0...] with the native I/O
 * threads, in LOAD_CHUNK requests, reporting progress and honouring an AbortSignal between
 * chunks. `buffer` must have room for `length` rounded up to 4096. @internal
 */
export async function readRange(path: string, fileOffset: number, length: number, buffer: ArrayBuffer, options: ResidentLoadOptions = {}): Promise<void> {
  const { signal, onProgress } = options;
  signal?.throwIfAborted();
  const streamer = new IoStreamer(path, { depth: 8, direct: options.direct ?? true });
  try {
    const numChunks = Math.ceil(length / LOAD_CHUNK);
    let submitted = 0;
    let done = 0;
    onProgress?.(0, length);
    for (let waited = 0; waited < numChunks; waited++) {
      while (submitted < numChunks && submitted - waited < LOAD_INFLIGHT) {
        const off = submitted * LOAD_CHUNK;
        streamer.submit(submitted, fileOffset + off, buffer, off, Math.min(LOAD_CHUNK, length - off));
        submitted++;
      }
      done += streamer.wait(waited).bytes;
      onProgress?.(done, length);
      // Let the event loop run (progress output, abort handlers) between chunks.
      await new Promise((resolve) => setImmediate(resolve));
      signal?.throwIfAborted();
    }
  } finally {
    streamer.close();
  }
}
