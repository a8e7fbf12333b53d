/**
 * ResidentWeightStore: every tensor of the file in aligned memory, loaded once. What a run
 * without a memory budget uses; acquire/release are free.
 *
 * The whole data section is read into 4096-aligned memory, starting at the data offset
 * rounded down to 4096, so every read request is 4096-aligned in the file and in memory and
 * can go O_DIRECT (no page-cache copy of the model left behind). Tensors are views into it.
 * A data section over one buffer's limit (4 GiB, segments.ts) is read into several buffers,
 * each a 4096-aligned span of the file that ends on a tensor boundary.
 */
import { InvalidModelError } from '../errors.js';
import { readGgufSync, type GgufFile } from '../gguf/reader.js';
import { IoStreamer, MAX_ALLOC_BYTES } from '../native/index.js';
import { embeddingLayout, embedRows, type EmbeddingLayout } from './embed.js';
import type { LayerWeights, WeightStore, WeightTensor } from './store.js';
import { countLayers, listTensors, MapLayerWeights, type TensorEntry } from './tensors.js';
import { LockedSegments } from './segments.js';

/** Options of ResidentWeightStore.load. */
export interface ResidentLoadOptions {
  /** Called after each chunk with bytes loaded so far and the total. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** mlock the weights (best effort; default true). */
  lock?: boolean;
  /** Use O_DIRECT (default true). */
  direct?: boolean;
  /** Largest buffer (default MAX_ALLOC_BYTES; smaller in tests to exercise segments). @internal */
  maxBufferBytes?: number;
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
  #memory: LockedSegments | undefined;
  readonly #layers: MapLayerWeights[];
  readonly #globals = new Map<string, WeightTensor>();
  readonly #embd: { layout: EmbeddingLayout; data: Uint8Array } | undefined;

  private constructor(readonly file: GgufFile, memory: LockedSegments, spans: FileSpan[], tensors: TensorEntry[]) {
    this.#memory = memory;
    this.residentBytes = memory.byteLength;
    this.#locked = memory.locked;
    this.lockError = memory.lockError;
    this.numLayers = countLayers(file, tensors);
    const perLayer = Array.from({ length: this.numLayers }, () => new Map<string, WeightTensor>());
    for (const t of tensors) {
      const i = spans.findIndex((sp) => t.fileOffset >= sp.start && t.fileOffset + t.bytes <= sp.end);
      const w: WeightTensor = { name: t.name, type: t.info.type, dims: t.info.dims, data: new Uint8Array(memory.buffers[i]!, t.fileOffset - spans[i]!.start, t.bytes) };
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
    const spans = fileSpans(file, tensors, options.maxBufferBytes);
    const memory = new LockedSegments(spans.map((sp) => Math.ceil((sp.end - sp.start) / ALIGN) * ALIGN));
    const total = spans.reduce((a, sp) => a + sp.end - sp.start, 0);
    let before = 0;
    for (const [i, sp] of spans.entries()) {
      const onProgress = options.onProgress && ((done: number) => options.onProgress!(before + done, total));
      await readRange(file.path, sp.start, sp.end - sp.start, memory.buffers[i]!, { ...options, ...(onProgress ? { onProgress } : {}) });
      before += sp.end - sp.start;
    }
    return new ResidentWeightStore(file, options.lock === false ? memory : memory.lock(), spans, tensors);
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
    this.#memory?.dispose();
    this.#locked = false;
    this.#memory = undefined;
  }
}

/** A range of the file read into one buffer: [start, end), start 4096-aligned. */
interface FileSpan {
  start: number;
  end: number;
}

/**
 * The data section from its 4096-aligned start to the end of the file, in as few spans as one
 * buffer's limit allows: each span starts 4096-aligned and ends on a tensor's end (the next
 * one starts at that tensor's 4096-aligned offset rounded down; a shared page is read twice).
 */
function fileSpans(file: GgufFile, tensors: TensorEntry[], maxBytes = MAX_ALLOC_BYTES): FileSpan[] {
  const base = Math.floor(file.dataOffset / ALIGN) * ALIGN;
  if (file.fileSize - base <= maxBytes - ALIGN) return [{ start: base, end: file.fileSize }];
  const sorted = [...tensors].sort((a, b) => a.fileOffset - b.fileOffset);
  const spans: FileSpan[] = [];
  let start = base;
  let end = base;
  for (const t of sorted) {
    const tEnd = t.fileOffset + t.bytes;
    if (tEnd - start > maxBytes - ALIGN && end > start) {
      spans.push({ start, end });
      start = Math.floor(t.fileOffset / ALIGN) * ALIGN;
    }
    if (tEnd - start > maxBytes - ALIGN) throw new InvalidModelError(`tensor '${t.name}' (${t.bytes} bytes) is larger than one buffer can hold (${maxBytes})`);
    end = tEnd;
  }
  spans.push({ start, end: file.fileSize });
  return spans;
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
