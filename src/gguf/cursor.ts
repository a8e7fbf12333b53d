/**
 * Bounded little-endian reader over a window of a GGUF file, used by the header parser.
 *
 * NOTE: every length and count is checked against the bytes the FILE still has before
 * anything is allocated or read for it (a corrupt 2^63 length fails here, it never reaches a
 * `new Uint8Array`). The window is refilled through `refill` (buffered reads in >= 1 MiB
 * chunks); without one, running past the window throws NeedMore so the caller can read a
 * longer prefix and parse again.
 *
 * @internal
 */

import { InvalidGgufError, type InvalidGgufCode } from '../errors.js';
import { GGUF_VALUE_MIN_BYTES, GgufValueType, ggufValueTypeName, isGgufValueType, type GgufArray, type GgufArrayItems, type GgufValue } from './value.js';

/** Deepest nesting of arrays accepted (real files use 1; the cap bounds recursion). */
export const GGUF_MAX_ARRAY_DEPTH = 8;

/** Thrown when the header goes past the bytes available and there is no refill. @internal */
export class NeedMore {
  constructor(readonly end: number) {}
}

/** Returns a window of the file starting at `pos` holding at least `n` bytes. */
export type Refill = (pos: number, n: number) => Uint8Array;

const TWO32 = 2 ** 32;

/**
 * Most strings + bools + nested arrays one header may hold. Real vocabularies hold ~10^6
 * (tokens + merges); the cap keeps a hostile header of 8-byte empty strings or 1-byte bools
 * from growing JS arrays of hundreds of millions of slots.
 */
export const MAX_JS_ITEMS = 1 << 25;

export class Cursor {
  /** Absolute file position of the next read. */
  pos = 0;
  private buf: Uint8Array;
  private base = 0; // file position of buf[0]
  private dv: DataView;
  private nodeBuf: Buffer;
  private jsItems = 0;

  /**
   * `window`: the file's bytes from offset 0 (all of them, or a first chunk with `refill`);
   * `headerLimit`: the header must end before this byte.
   */
  constructor(
    window: Uint8Array,
    readonly fileSize: number,
    readonly path: string,
    private readonly refill?: Refill,
    readonly headerLimit = Number.POSITIVE_INFINITY,
  ) {
    this.buf = window;
    this.dv = new DataView(window.buffer, window.byteOffset, window.byteLength);
    this.nodeBuf = Buffer.from(window.buffer, window.byteOffset, window.byteLength);
  }

  fail(code: InvalidGgufCode, detail: string, at = this.pos): never {
    throw new InvalidGgufError(code, this.path, at, detail);
  }

  /** Makes [pos, pos + n) readable; returns its index in the window. */
  need(n: number, what: string): number {
    const end = this.pos + n;
    if (end > this.fileSize) this.fail('TRUNCATED', `file ends at byte ${this.fileSize} inside ${what}`);
    if (end > this.base + this.buf.length) {
      if (!this.refill) throw new NeedMore(end);
      const w = this.refill(this.pos, n);
      this.buf = w;
      this.base = this.pos;
      this.dv = new DataView(w.buffer, w.byteOffset, w.byteLength);
      this.nodeBuf = Buffer.from(w.buffer, w.byteOffset, w.byteLength);
    }
    return this.pos - this.base;
  }

  /** The next `n` raw bytes (a view into the window, valid until the next read). */
  raw(n: number, what: string): Uint8Array {
    const i = this.need(n, what);
    this.pos += n;
    return this.buf.subarray(i, i + n);
  }

  u8(what: string): number {
    const i = this.need(1, what);
    this.pos += 1;
    return this.buf[i]!;
  }
  u32(what: string): number {
    const i = this.need(4, what);
    this.pos += 4;
    return this.dv.getUint32(i, true);
  }
  u64(what: string): bigint {
    const i = this.need(8, what);
    this.pos += 8;
    return this.dv.getBigUint64(i, true);
  }

  /**
   * A u64 count or length (at the cursor) of items of at least `unitBytes` each, that must fit,
   * after `reserveBytes` more, both in the file (else `code`) and under the header limit (else
   * HEADER_TOO_LARGE). Read as two u32 halves so the common case allocates no bigint (a
   * vocabulary has ~10^6 of these).
   */
  count(what: string, unitBytes: number, reserveBytes: number, code: InvalidGgufCode, unit: string): number {
    const at = this.pos;
    const fileRoom = Math.max(0, Math.floor((this.fileSize - at - 8 - reserveBytes) / unitBytes));
    const headerRoom = Math.max(0, Math.floor((this.headerLimit - at - 8 - reserveBytes) / unitBytes));
    const i = this.need(8, what);
    this.pos += 8;
    const lo = this.dv.getUint32(i, true);
    const hi = this.dv.getUint32(i + 4, true);
    const max = Math.min(fileRoom, headerRoom);
    if (hi === 0 && lo <= max) return lo;
    const v = hi < 0x200000 ? hi * TWO32 + lo : Number.POSITIVE_INFINITY;
    if (v <= max) return v;
    const exact = (BigInt(hi) << 32n) | BigInt(lo);
    if (v > fileRoom) {
      return this.fail(code, `${what} is ${exact} but only ${Math.max(0, this.fileSize - at - 8)} bytes remain (room for at most ${fileRoom} ${unit})`, at);
    }
    return this.fail('HEADER_TOO_LARGE', `${what} is ${exact}: the header would pass the ${this.headerLimit} byte limit (maxMetadataBytes); raise it if this file is trusted`, at);
  }

  /** Counts JS-object array items (strings, bools, nested arrays) against MAX_JS_ITEMS before allocating. */
  private budgetItems(n: number, what: string, at: number): void {
    this.jsItems += n;
    if (this.jsItems > MAX_JS_ITEMS) {
      this.fail('COUNT_TOO_LARGE', `${what}: more than ${MAX_JS_ITEMS} string/bool/array items in the header`, at);
    }
  }

  string(what: string): string {
    const len = this.count(`length of ${what}`, 1, 0, 'STRING_TOO_LONG', 'bytes');
    const i = this.need(len, what);
    this.pos += len;
    // Native UTF-8 decoding; ill-formed bytes become U+FFFD exactly as TextDecoder does (tested).
    // NOTE: measured on a 152k-token + 280k-merge vocabulary: ~150-400 ms for the header, mostly
    // GC of the strings; JS decoders and TextDecoder were no faster.
    return this.nodeBuf.toString('utf8', i, i + len);
  }

  /** One value of type `type` (already read), arrays recursively up to GGUF_MAX_ARRAY_DEPTH. */
  value(type: number, what: string, depth: number): GgufValue {
    const at = this.pos;
    switch (type) {
      case GgufValueType.UINT8: return { type, value: this.u8(what) };
      case GgufValueType.INT8: { const i = this.need(1, what); this.pos += 1; return { type, value: this.dv.getInt8(i) }; }
      case GgufValueType.UINT16: { const i = this.need(2, what); this.pos += 2; return { type, value: this.dv.getUint16(i, true) }; }
      case GgufValueType.INT16: { const i = this.need(2, what); this.pos += 2; return { type, value: this.dv.getInt16(i, true) }; }
      case GgufValueType.UINT32: return { type, value: this.u32(what) };
      case GgufValueType.INT32: { const i = this.need(4, what); this.pos += 4; return { type, value: this.dv.getInt32(i, true) }; }
      case GgufValueType.FLOAT32: { const i = this.need(4, what); this.pos += 4; return { type, value: this.dv.getFloat32(i, true) }; }
      case GgufValueType.FLOAT64: { const i = this.need(8, what); this.pos += 8; return { type, value: this.dv.getFloat64(i, true) }; }
      case GgufValueType.UINT64: return { type, value: this.u64(what) };
      case GgufValueType.INT64: { const i = this.need(8, what); this.pos += 8; return { type, value: this.dv.getBigInt64(i, true) }; }
      case GgufValueType.BOOL: return { type, value: this.bool(what) };
      case GgufValueType.STRING: return { type, value: this.string(what) };
      case GgufValueType.ARRAY: return { type, value: this.array(what, depth + 1) };
      default: return this.fail('UNKNOWN_VALUE_TYPE', `${what} has unknown value type ${type}`, at - 4);
    }
  }

  private bool(what: string): boolean {
    const at = this.pos;
    const b = this.u8(what);
    if (b > 1) this.fail('BAD_VALUE', `${what} is a BOOL with byte value ${b} (must be 0 or 1)`, at);
    return b === 1;
  }

  private array(what: string, depth: number): GgufArray {
    if (depth > GGUF_MAX_ARRAY_DEPTH) this.fail('NESTING_TOO_DEEP', `${what} nests arrays deeper than ${GGUF_MAX_ARRAY_DEPTH} levels`);
    const typeAt = this.pos;
    const itemType = this.u32(`item type of ${what}`);
    if (!isGgufValueType(itemType)) this.fail('UNKNOWN_VALUE_TYPE', `${what} has unknown array item type ${itemType}`, typeAt);
    const size = GGUF_VALUE_MIN_BYTES[itemType];
    const countAt = this.pos;
    const n = this.count(`length of ${what}`, size, 0, 'ARRAY_TOO_LONG', `${ggufValueTypeName(itemType)} items`);
    if (itemType === GgufValueType.STRING || itemType === GgufValueType.BOOL || itemType === GgufValueType.ARRAY) this.budgetItems(n, what, countAt);
    const item = `${what}[]`;
    switch (itemType) {
      case GgufValueType.STRING: {
        const items: string[] = [];
        for (let k = 0; k < n; k++) items.push(this.string(item));
        return { itemType, items };
      }
      case GgufValueType.ARRAY: {
        const items: GgufArray[] = [];
        for (let k = 0; k < n; k++) items.push(this.array(item, depth + 1));
        return { itemType, items };
      }
      case GgufValueType.BOOL: {
        const items: boolean[] = [];
        for (let k = 0; k < n; k++) items.push(this.bool(item));
        return { itemType, items };
      }
      default:
        return { itemType, items: this.numbers(itemType, n, what) };
    }
  }

  /** n numeric items into a fresh typed array (DataView reads: endian-safe, alignment-free). */
  private numbers(t: GgufValueType, n: number, what: string): GgufArrayItems {
    const size = GGUF_VALUE_MIN_BYTES[t];
    const p = this.need(n * size, what);
    this.pos += n * size;
    const dv = this.dv;
    switch (t) {
      case GgufValueType.UINT8: return this.buf.slice(p, p + n);
      case GgufValueType.INT8: return new Int8Array(this.buf.slice(p, p + n).buffer);
      case GgufValueType.UINT16: { const a = new Uint16Array(n); for (let k = 0; k < n; k++) a[k] = dv.getUint16(p + 2 * k, true); return a; }
      case GgufValueType.INT16: { const a = new Int16Array(n); for (let k = 0; k < n; k++) a[k] = dv.getInt16(p + 2 * k, true); return a; }
      case GgufValueType.UINT32: { const a = new Uint32Array(n); for (let k = 0; k < n; k++) a[k] = dv.getUint32(p + 4 * k, true); return a; }
      case GgufValueType.INT32: { const a = new Int32Array(n); for (let k = 0; k < n; k++) a[k] = dv.getInt32(p + 4 * k, true); return a; }
      case GgufValueType.FLOAT32: { const a = new Float32Array(n); for (let k = 0; k < n; k++) a[k] = dv.getFloat32(p + 4 * k, true); return a; }
      case GgufValueType.FLOAT64: { const a = new Float64Array(n); for (let k = 0; k < n; k++) a[k] = dv.getFloat64(p + 8 * k, true); return a; }
      case GgufValueType.UINT64: { const a = new BigUint64Array(n); for (let k = 0; k < n; k++) a[k] = dv.getBigUint64(p + 8 * k, true); return a; }
      case GgufValueType.INT64: { const a = new BigInt64Array(n); for (let k = 0; k < n; k++) a[k] = dv.getBigInt64(p + 8 * k, true); return a; }
      default: throw new Error(`unreachable: numbers() for ${ggufValueTypeName(t)}`);
    }
  }
}
