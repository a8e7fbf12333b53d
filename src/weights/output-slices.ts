/**
 * The output matrix streamed in slices of its rows (vocabulary entries), for budgets that
 * cannot hold it resident.
 *
 * Modern vocabularies make the output matrix the largest tensor of a small model: Gemma 3 1B's
 * (tied to the embeddings, 262,144 x 1152, Q6_K) is 306 MiB of a 770 MiB Q4_K_M file, and held
 * resident it set the file's minimum budget at 59%. Streaming it as a whole would need a
 * buffer of its own size, so it is read in row slices of ~OUTPUT_SLICE_TARGET_BYTES into two
 * buffers: while slice k is multiplied, slice k + 1 is being read. Each logit is the dot
 * product of one row with the hidden state, so computing the logits slice by slice gives the
 * same values as the whole matrix (the kernels compute every output row on its own).
 *
 *   forEach(fn): wait slice k, fn(k), issue slice k + 2 (mod numSlices) into k's buffer
 *
 * The last two calls of a pass issue slices 0 and 1 again, so the next token's head finds
 * them read while its layers computed. The reads go through the store's I/O engine (same
 * path, rates and file checks as the layer ring), in groups of their own.
 */
import type { IoStreamer } from '../native/index.js';
import type { TensorEntry } from './tensors.js';
import type { WeightTensor } from './store.js';

const ALIGN = 4096;
const MiB = 1024 * 1024;
/** Bytes of one slice the layout aims at (two are in memory, plus the logits temp). */
export const OUTPUT_SLICE_TARGET_BYTES = 8 * MiB;
/**
 * Logit rows one multiplication of a slice computes into the temp buffer (more rows: several
 * multiplications per slice, the slice read once). One row writes into the logits directly.
 */
export const OUTPUT_TEMP_ROWS = 64;
/** Group ids of slice reads start here (the layer ring's sequence numbers stay below 2^31). */
const GROUP_BASE = 0x80000000;

/** How an output matrix of `bytes` bytes in rows of `rowBytes` is sliced. */
export interface OutputSliceLayout {
  rows: number;
  rowBytes: number;
  /** Rows per slice (the last slice may have fewer). */
  sliceRows: number;
  numSlices: number;
  /** Memory of one slice buffer (sliceRows * rowBytes, whole 4096-byte pages). */
  sliceFootprint: number;
  /** Memory of the whole mechanism: two slice buffers and the logits temp. */
  bufferBytes: number;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/**
 * The slicing of an output matrix in slices of about `targetBytes`, or undefined when slicing
 * would not save at least half of its memory (small vocabularies: the matrix stays resident). Slices start at multiples of
 * 4096 bytes from the tensor's start where a whole number of rows allows it near the target
 * size, so a 4096-aligned tensor is read with O_DIRECT.
 */
export function outputSliceLayout(bytes: number, rowBytes: number, targetBytes = OUTPUT_SLICE_TARGET_BYTES): OutputSliceLayout | undefined {
  if (!(Number.isInteger(rowBytes) && rowBytes > 0 && bytes % rowBytes === 0)) return undefined;
  const rows = bytes / rowBytes;
  const aligned = ALIGN / gcd(rowBytes, ALIGN); // rows per 4096-aligned step
  const target = Math.max(1, Math.floor(targetBytes / rowBytes));
  const sliceRows = aligned <= 2 * target ? Math.max(aligned, Math.floor(target / aligned) * aligned) : target;
  const numSlices = Math.ceil(rows / sliceRows);
  const sliceFootprint = roundUp(sliceRows * rowBytes, ALIGN);
  const bufferBytes = 2 * sliceFootprint + roundUp(OUTPUT_TEMP_ROWS * sliceRows * 4, ALIGN);
  if (numSlices < 3 || bufferBytes * 2 > roundUp(bytes, ALIGN)) return undefined;
  return { rows, rowBytes, sliceRows, numSlices, sliceFootprint, bufferBytes };
}

/** What the forward pass sees of a sliced output matrix (WeightStore.outputSlices). */
export interface OutputSlices {
  readonly layout: OutputSliceLayout;
  /**
   * Calls fn(rowStart, tensor) for every slice in order, the slice's rows in memory during
   * the call (tensor: [dim, rows of this slice]); `temp` is room for OUTPUT_TEMP_ROWS rows of
   * a slice's logits.
   */
  forEach(fn: (rowStart: number, tensor: WeightTensor, temp: Float32Array) => void): void;
}

/** Counters of the slice reads. */
export interface OutputSliceStats {
  passes: number;
  bytesRead: number;
  waitNs: number;
}

/** See the file comment. Owned by a StreamingWeightStore; the memory is the end of its ring. */
export class StreamedOutputSlices implements OutputSlices {
  readonly layout: OutputSliceLayout;
  readonly #entry: TensorEntry;
  readonly #streamer: IoStreamer;
  readonly #buffers: [Uint8Array, Uint8Array];
  readonly #temp: Float32Array;
  readonly #wait: (group: number) => { bytes: number };
  /** Slices issued and not yet used, oldest first (at most two: one per buffer). */
  readonly #queue: { slice: number; group: number; buffer: number }[] = [];
  #nextGroup = 0;
  readonly #stats: OutputSliceStats = { passes: 0, bytesRead: 0, waitNs: 0 };

  /**
   * `memory` holds layout.bufferBytes from a 4096-aligned offset; `wait` waits for a group of
   * `streamer` (the store's, which turns a failed read into its typed error).
   */
  constructor(entry: TensorEntry, layout: OutputSliceLayout, streamer: IoStreamer, memory: ArrayBuffer, offset: number, wait: (group: number) => { bytes: number }) {
    if (offset % ALIGN !== 0 || offset + layout.bufferBytes > memory.byteLength) throw new RangeError(`output slices: ${layout.bufferBytes} bytes at ${offset} do not fit a ${memory.byteLength}-byte buffer at a 4096-aligned offset`);
    this.#entry = entry;
    this.layout = layout;
    this.#streamer = streamer;
    this.#wait = wait;
    const f = layout.sliceFootprint;
    this.#buffers = [new Uint8Array(memory, offset, f), new Uint8Array(memory, offset + f, f)];
    this.#temp = new Float32Array(memory, offset + 2 * f, OUTPUT_TEMP_ROWS * layout.sliceRows);
    this.#issue(0, 0);
    this.#issue(1, 1);
  }

  forEach(fn: (rowStart: number, tensor: WeightTensor, temp: Float32Array) => void): void {
    const { numSlices, sliceRows, rowBytes, rows } = this.layout;
    // An earlier pass stopped midway (an exception in fn): finish its reads, start over.
    if (this.#queue.length !== 2 || this.#queue[0]!.slice !== 0) this.#restart();
    for (let k = 0; k < numSlices; k++) {
      const { slice, group, buffer } = this.#queue.shift()!;
      const t0 = process.hrtime.bigint();
      this.#stats.bytesRead += this.#wait(group).bytes;
      this.#stats.waitNs += Number(process.hrtime.bigint() - t0);
      const n = Math.min(sliceRows, rows - slice * sliceRows);
      const buf = this.#buffers[buffer]!;
      const info = this.#entry.info;
      fn(slice * sliceRows, { name: this.#entry.name, type: info.type, dims: [info.dims[0]!, n], data: buf.subarray(0, n * rowBytes) }, this.#temp);
      this.#issue((slice + 2) % numSlices, buffer);
    }
    this.#stats.passes++;
  }

  stats(): OutputSliceStats {
    return { ...this.#stats };
  }

  /** Waits for the reads in flight (before the streamer closes or the memory is reused). */
  drain(): void {
    while (this.#queue.length > 0) {
      try {
        this.#wait(this.#queue.shift()!.group);
      } catch {
        // Disposing: a failed read was reported (or will be) by the pass that needed it.
      }
    }
  }

  #issue(slice: number, buffer: number): void {
    const { sliceRows, rowBytes, rows } = this.layout;
    const n = Math.min(sliceRows, rows - slice * sliceRows);
    const group = GROUP_BASE + (this.#nextGroup++ % GROUP_BASE);
    // The view bounds an O_DIRECT read's rounded-up tail to the slice buffer.
    this.#streamer.submit(group, this.#entry.fileOffset + slice * sliceRows * rowBytes, this.#buffers[buffer]!, 0, n * rowBytes);
    this.#queue.push({ slice, group, buffer });
  }

  #restart(): void {
    this.drain();
    this.#issue(0, 0);
    this.#issue(1, 1);
  }
}
