/**
 * Weight memory larger than one ArrayBuffer can be. Node 20 creates an external ArrayBuffer
 * (allocAligned) through a Buffer, so one is at most buffer.constants.MAX_LENGTH bytes (4 GiB):
 * a 5 GB model without a budget, or an 8 GB expert cache, is held in several segments.
 * Items (tensors, cache slots) are laid out in order and never straddle two segments.
 */
import { adviseHugePages, allocAligned, lockMemory, unlockMemory, MAX_ALLOC_BYTES } from '../native/index.js';

/** Where each item goes: segment index and offset in it, and each segment's size. */
export interface SegmentLayout {
  segment: Int32Array;
  offset: Float64Array;
  segmentBytes: number[];
}

/**
 * Lays out items of `sizes` bytes (each rounded up to `align`) one after another, opening a new
 * segment whenever the next item would take the current one past `maxBytes`.
 */
export function segmentLayout(sizes: ArrayLike<number>, align = 4096, maxBytes = MAX_ALLOC_BYTES): SegmentLayout {
  const n = sizes.length;
  const segment = new Int32Array(n);
  const offset = new Float64Array(n);
  const segmentBytes: number[] = [0];
  for (let i = 0; i < n; i++) {
    const bytes = Math.ceil(sizes[i]! / align) * align;
    if (bytes > maxBytes) throw new RangeError(`an item of ${sizes[i]} bytes does not fit one buffer of at most ${maxBytes} bytes`);
    if (segmentBytes.at(-1)! + bytes > maxBytes) segmentBytes.push(0);
    segment[i] = segmentBytes.length - 1;
    offset[i] = segmentBytes.at(-1)!;
    segmentBytes[segmentBytes.length - 1]! += bytes;
  }
  return { segment, offset, segmentBytes };
}

/** Segments of at least this many bytes start 2 MiB-aligned and ask for 2 MiB pages. */
const HUGE_PAGE = 2 * 1024 * 1024;

/**
 * Aligned buffers of the given sizes (allocAligned), mlocked on request (lockMemory). Segments
 * of 2 MiB or more are 2 MiB-aligned with 2 MiB pages advised before anything is read into them
 * (adviseHugePages: the first touch of fresh 4 KiB pages is slow on this VM, and weights read
 * into them paid it inside the first tokens' matmuls).
 */
export class LockedSegments {
  readonly buffers: ArrayBuffer[];
  readonly byteLength: number;
  #locked = false;
  #lockError: string | undefined;
  #disposed = false;

  constructor(sizes: readonly number[], align = 4096) {
    this.buffers = sizes.map((b) => {
      if (b < HUGE_PAGE) return allocAligned(b, align);
      const buf = allocAligned(b, Math.max(align, HUGE_PAGE));
      adviseHugePages(buf);
      return buf;
    });
    this.byteLength = this.buffers.reduce((a, b) => a + b.byteLength, 0);
  }

  /** mlocks every segment, best effort: locked only if all are; the first error otherwise. */
  lock(): this {
    let all = this.buffers.length > 0;
    for (const b of this.buffers) {
      const r = lockMemory(b);
      if (!r.locked) {
        all = false;
        this.#lockError ??= r.error;
      }
    }
    this.#locked = all;
    return this;
  }

  get locked(): boolean {
    return this.#locked;
  }

  get lockError(): string | undefined {
    return this.#lockError;
  }

  /** Unlocks every segment (once); the memory goes with the last reference to the buffers. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const b of this.buffers) unlockMemory(b);
    this.#locked = false;
  }
}
