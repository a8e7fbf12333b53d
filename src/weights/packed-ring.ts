/**
 * Where a streamed layer goes in the store's ring: `numSlots` slots of `slotBytes` (the largest
 * layer's streamed footprint), filled in order, with as many consecutive layers packed into a
 * slot as fit in it.
 *
 *   slot 0: [ layer 3 (22 MB)      ]     slot 1: [ layer 4 (10 MB) | layer 5 (10 MB) ]
 *             ^ computing                          ^ both read while layer 3 computes
 *
 * NOTE: with one slot per layer a window-1 ring holds the layer being computed and ONE layer
 * of reads ahead. When the plan keeps whole FFN tensors of some layers resident, the layers
 * stream uneven amounts (tinyllama-1.1b Q8_0 at 75%: 22.3 / 10.0 / 10.0 MB, repeating), and
 * a 10 MB layer's reads finish before the layer in front of it is computed: the device then
 * idles until that layer is released. FLEXINFER_IO_TRACE timelines (issue-9 notes, main
 * 08e1538, 2026-12-06 11:45 UTC, 75%, 62 tokens): the device was idle 13-15% of each run,
 * 92-95% of that during a layer's compute. Packing lets the reads of the next layers start as
 * soon as there is room, in the same ring memory.
 *
 * Never fewer reads ahead than one layer per slot: a layer goes into the open slot if it fits
 * behind what is there, else into the next slot once that one is free (every sequence in it
 * released), which is when the one-layer-per-slot ring would have issued it. Pure policy.
 */
export class PackedRing {
  readonly numSlots: number;
  readonly slotBytes: number;
  /** Most sequences outstanding (issued and not freed) at once: a ring never reads a layer a whole pass ahead. */
  readonly maxOutstanding: number;
  /** Sequences placed and not yet freed, oldest first. */
  readonly #placed: Array<{ s: number; slot: number; offset: number }> = [];
  /** The slot the last placement went to, and how much of it is filled. */
  #open = -1;
  #openUsed = 0;

  constructor(numSlots: number, slotBytes: number, maxOutstanding: number) {
    if (!(Number.isInteger(numSlots) && numSlots >= 1)) throw new RangeError(`PackedRing: numSlots must be a positive integer, got ${numSlots}`);
    if (!(Number.isSafeInteger(slotBytes) && slotBytes >= 0)) throw new RangeError(`PackedRing: slotBytes must be a non-negative integer, got ${slotBytes}`);
    if (!(Number.isInteger(maxOutstanding) && maxOutstanding >= numSlots)) {
      throw new RangeError(`PackedRing: maxOutstanding must be an integer >= numSlots (${numSlots}), got ${maxOutstanding}`);
    }
    this.numSlots = numSlots;
    this.slotBytes = slotBytes;
    this.maxOutstanding = maxOutstanding;
  }

  /** Sequences placed and not yet freed. */
  get outstanding(): number {
    return this.#placed.length;
  }

  /**
   * Places sequence `s` (after every sequence placed so far) with a footprint of `bytes`;
   * returns its byte offset in the ring, or undefined when it must wait for a release.
   */
  place(s: number, bytes: number): number | undefined {
    if (!(Number.isSafeInteger(bytes) && bytes >= 0 && bytes <= this.slotBytes)) {
      throw new RangeError(`PackedRing.place: a footprint of ${bytes} bytes does not fit a slot of ${this.slotBytes}`);
    }
    const last = this.#placed.at(-1);
    if (last && s <= last.s) throw new RangeError(`PackedRing.place: sequence ${s} after ${last.s}: sequences are placed in order`);
    if (this.#placed.length >= this.maxOutstanding) return undefined;
    let slot: number;
    let offset: number;
    if (this.#placed.length === 0) {
      // Nothing outstanding: every slot is free; start the next one.
      slot = (this.#open + 1) % this.numSlots;
      offset = 0;
    } else if (this.#openUsed + bytes <= this.slotBytes) {
      slot = this.#open;
      offset = this.#openUsed;
    } else {
      slot = (this.#open + 1) % this.numSlots;
      // Slots in use are the cyclic run from the oldest placement's slot to the open one.
      if (slot === this.#placed[0]!.slot) return undefined;
      offset = 0;
    }
    this.#open = slot;
    this.#openUsed = offset + bytes;
    this.#placed.push({ s, slot, offset });
    return slot * this.slotBytes + offset;
  }

  /** The byte offset of placed sequence `s` in the ring. */
  offsetOf(s: number): number {
    const p = this.#placed.find((x) => x.s === s);
    if (!p) throw new RangeError(`PackedRing.offsetOf: sequence ${s} is not placed`);
    return p.slot * this.slotBytes + p.offset;
  }

  /** Sequences before `oldest` are released: their room is free again. */
  freeBefore(oldest: number): void {
    while (this.#placed.length > 0 && this.#placed[0]!.s < oldest) this.#placed.shift();
  }

  /** Forgets every placement (the store restarts its ring). */
  reset(): void {
    this.#placed.length = 0;
    this.#openUsed = 0;
  }
}
