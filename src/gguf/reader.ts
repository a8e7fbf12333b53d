/**
 * GGUF reader: parses the header (metadata and tensor infos) of a GGUF v2/v3 file and never
 * reads tensor data, so a 7B file opens instantly.
 *
 * NOTE: the file is hostile until proven otherwise. Every length and count is checked against
 * the bytes the file still has BEFORE anything is allocated for it, so a corrupt header gives
 * an InvalidGgufError naming the problem and the byte offset, never a crash, a hang or a
 * multi-gigabyte allocation. Layout (little-endian, gguf.md):
 *
 *   "GGUF" u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x       { string key | u32 value_type | value }
 *   n_tensors x  { string name | u32 n_dims | u64 dims[n_dims] | u32 ggml_type | u64 offset }
 *   padding to `general.alignment` (default 32)
 *   tensor data  (each tensor at data_offset + offset, offsets multiples of the alignment)
 *
 * string = u64 length + UTF-8 bytes (no NUL); array = u32 item type + u64 count + items.
 */

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { FlexinferError, InvalidGgufError, type InvalidGgufCode } from '../errors.js';
import { ggmlTypeInfo, type GgmlType } from './ggml-type.js';
import {
  GGUF_VALUE_MIN_BYTES,
  GgufValueType,
  ggufValueTypeName,
  isGgufValueType,
  plainValue,
  type GgufArray,
  type GgufArrayItems,
  type GgufValue,
} from './value.js';

/** One tensor's description from the header. */
export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /** ggml order, innermost (row length) first: a [rows, cols] matrix is dims [cols, rows]. */
  dims: number[];
  /** Byte offset within the data section. */
  offset: number;
  /** Absolute byte offset in the file (dataOffset + offset). */
  fileOffset: number;
  numElements: number;
  byteSize: number;
}

/** A parsed GGUF header. */
export interface GgufFile {
  path: string;
  version: number;
  alignment: number;
  /** Absolute offset of the data section (the header size rounded up to the alignment). */
  dataOffset: number;
  fileSize: number;
  /** Metadata in file order, with on-disk types. */
  metadata: Map<string, GgufValue>;
  /** Tensors in file order. */
  tensors: GgufTensorInfo[];
  /** Plain JS value of a key (see plainValue), or undefined when absent. */
  get(key: string): unknown;
  /** A STRING value; `fallback` (or undefined) when absent; throws WRONG_VALUE_TYPE when not a string. */
  getString(key: string): string | undefined;
  getString(key: string, fallback: string): string;
  /** Any numeric value as a number (64-bit ones must be exact); throws WRONG_VALUE_TYPE otherwise. */
  getNumber(key: string): number | undefined;
  getNumber(key: string, fallback: number): number;
  /** Plain items of an ARRAY value (string[], boolean[], typed array, nested arrays), or undefined. */
  getArray(key: string): GgufArrayItems | unknown[] | undefined;
  /** Items of a STRING array, or undefined; throws WRONG_VALUE_TYPE for another array type. */
  getStringArray(key: string): string[] | undefined;
  tensor(name: string): GgufTensorInfo | undefined;
  /** `general.architecture`, or '' when the file has none. */
  architecture: string;
}

/** Options of readGguf / readGgufSync. */
export interface GgufReadOptions {
  /** Largest header (metadata + tensor infos) accepted; default 512 MiB. */
  maxMetadataBytes?: number;
}

/** Deepest nesting of arrays accepted (real files use 1; the cap bounds recursion). */
export const GGUF_MAX_ARRAY_DEPTH = 8;
/** Longest tensor name ggml accepts (GGML_MAX_NAME is 64 including the NUL). */
export const GGUF_MAX_TENSOR_NAME = 63;
/** Longest metadata key the spec allows. */
export const GGUF_MAX_KEY = 65535;
/** Largest n_dims (GGML_MAX_DIMS). */
export const GGUF_MAX_DIMS = 4;
export const GGUF_DEFAULT_ALIGNMENT = 32;

const DEFAULT_MAX_METADATA = 512 * 1024 * 1024;
const FIRST_READ = 1024 * 1024;
// string key (8) + u32 type + smallest value (1)
const MIN_KV_BYTES = 8 + 4 + 1;
// string name (8) + u32 n_dims + one u64 dim + u32 type + u64 offset
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Thrown inside the parser when the header goes past the bytes read so far. @internal */
class NeedMore {
  constructor(readonly end: number) {}
}

const utf8 = new TextDecoder('utf-8');

/** Reads little-endian fields from a prefix of the file, checking every length first. */
class Cursor {
  pos = 0;
  private readonly dv: DataView;
  constructor(
    private readonly bytes: Uint8Array,
    readonly fileSize: number,
    readonly path: string,
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(code: InvalidGgufCode, detail: string, at = this.pos): never {
    throw new InvalidGgufError(code, this.path, at, detail);
  }

  /** Bytes left in the file after the cursor. */
  get remaining(): number {
    return this.fileSize - this.pos;
  }

  need(n: number, what: string): void {
    const end = this.pos + n;
    if (end > this.fileSize) this.fail('TRUNCATED', `file ends at byte ${this.fileSize} inside ${what}`);
    if (end > this.bytes.length) throw new NeedMore(end);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.bytes[this.pos++]!;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.dv.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** A u64 count or length that must not exceed `limit` (checked as bigint, so 2^63 is caught). */
  count(what: string, limit: number, code: InvalidGgufCode, unit: string): number {
    const at = this.pos;
    const v = this.u64(what);
    if (v > BigInt(Math.max(0, Math.floor(limit)))) {
      this.fail(code, `${what} is ${v} but only ${Math.max(0, this.remaining)} bytes remain (room for at most ${Math.max(0, Math.floor(limit))} ${unit})`, at);
    }
    return Number(v);
  }

  string(what: string): string {
    const len = this.count(`length of ${what}`, this.remaining - 8, 'STRING_TOO_LONG', 'bytes');
    this.need(len, what);
    const start = this.pos;
    this.pos += len;
    // ASCII fast path: vocabularies hold ~10^5 short strings.
    if (len <= 32) {
      let ascii = true;
      for (let i = start; i < start + len; i++) if (this.bytes[i]! >= 0x80) { ascii = false; break; }
      if (ascii) return String.fromCharCode.apply(null, this.bytes.subarray(start, start + len) as unknown as number[]);
    }
    return utf8.decode(this.bytes.subarray(start, start + len));
  }

  /** One value of type `type` (already read), arrays recursively up to GGUF_MAX_ARRAY_DEPTH. */
  value(type: number, what: string, depth: number): GgufValue {
    const at = this.pos;
    switch (type) {
      case GgufValueType.UINT8: return { type, value: this.u8(what) };
      case GgufValueType.INT8: this.need(1, what); return { type, value: this.dv.getInt8(this.pos++) };
      case GgufValueType.UINT16: this.need(2, what); this.pos += 2; return { type, value: this.dv.getUint16(at, true) };
      case GgufValueType.INT16: this.need(2, what); this.pos += 2; return { type, value: this.dv.getInt16(at, true) };
      case GgufValueType.UINT32: return { type, value: this.u32(what) };
      case GgufValueType.INT32: this.need(4, what); this.pos += 4; return { type, value: this.dv.getInt32(at, true) };
      case GgufValueType.FLOAT32: this.need(4, what); this.pos += 4; return { type, value: this.dv.getFloat32(at, true) };
      case GgufValueType.FLOAT64: this.need(8, what); this.pos += 8; return { type, value: this.dv.getFloat64(at, true) };
      case GgufValueType.UINT64: return { type, value: this.u64(what) };
      case GgufValueType.INT64: this.need(8, what); this.pos += 8; return { type, value: this.dv.getBigInt64(at, true) };
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
    const n = this.count(`length of ${what}`, (this.remaining - 8) / size, 'ARRAY_TOO_LONG', `${ggufValueTypeName(itemType)} items`);
    const item = `${what}[]`;
    switch (itemType) {
      case GgufValueType.STRING: {
        const items: string[] = [];
        for (let i = 0; i < n; i++) items.push(this.string(item));
        return { itemType, items };
      }
      case GgufValueType.ARRAY: {
        const items: GgufArray[] = [];
        for (let i = 0; i < n; i++) items.push(this.array(item, depth + 1));
        return { itemType, items };
      }
      case GgufValueType.BOOL: {
        this.need(n, what);
        const items: boolean[] = [];
        for (let i = 0; i < n; i++) items.push(this.bool(item));
        return { itemType, items };
      }
      default:
        return { itemType, items: this.numbers(itemType, n, what) };
    }
  }

  /** n numeric items into a fresh typed array (DataView reads: endian-safe, alignment-free). */
  private numbers(t: GgufValueType, n: number, what: string): GgufArrayItems {
    const size = GGUF_VALUE_MIN_BYTES[t];
    this.need(n * size, what);
    const p = this.pos;
    const dv = this.dv;
    this.pos += n * size;
    switch (t) {
      case GgufValueType.UINT8: return this.bytes.slice(p, p + n);
      case GgufValueType.INT8: return new Int8Array(this.bytes.slice(p, p + n).buffer);
      case GgufValueType.UINT16: { const a = new Uint16Array(n); for (let i = 0; i < n; i++) a[i] = dv.getUint16(p + 2 * i, true); return a; }
      case GgufValueType.INT16: { const a = new Int16Array(n); for (let i = 0; i < n; i++) a[i] = dv.getInt16(p + 2 * i, true); return a; }
      case GgufValueType.UINT32: { const a = new Uint32Array(n); for (let i = 0; i < n; i++) a[i] = dv.getUint32(p + 4 * i, true); return a; }
      case GgufValueType.INT32: { const a = new Int32Array(n); for (let i = 0; i < n; i++) a[i] = dv.getInt32(p + 4 * i, true); return a; }
      case GgufValueType.FLOAT32: { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = dv.getFloat32(p + 4 * i, true); return a; }
      case GgufValueType.FLOAT64: { const a = new Float64Array(n); for (let i = 0; i < n; i++) a[i] = dv.getFloat64(p + 8 * i, true); return a; }
      case GgufValueType.UINT64: { const a = new BigUint64Array(n); for (let i = 0; i < n; i++) a[i] = dv.getBigUint64(p + 8 * i, true); return a; }
      case GgufValueType.INT64: { const a = new BigInt64Array(n); for (let i = 0; i < n; i++) a[i] = dv.getBigInt64(p + 8 * i, true); return a; }
      default: throw new Error(`unreachable: numbers() for ${ggufValueTypeName(t)}`);
    }
  }
}

/** Parses a header from `bytes` (a prefix of a file of `fileSize` bytes). Throws NeedMore. */
function parseHeader(bytes: Uint8Array, fileSize: number, path: string): GgufFile {
  const c = new Cursor(bytes, fileSize, path);

  c.need(4, 'the magic');
  if (bytes[0] !== 0x47 || bytes[1] !== 0x47 || bytes[2] !== 0x55 || bytes[3] !== 0x46) {
    const seen = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    c.fail('BAD_MAGIC', `not a GGUF file: magic is ${seen}, expected 47 47 55 46 ("GGUF")`, 0);
  }
  c.pos = 4;
  const version = c.u32('the version');
  if (version !== 2 && version !== 3) {
    const hint =
      version === 1 ? 'GGUF v1 is not supported; re-convert the model with a current llama.cpp'
      : (version & 0xffff) === 0 && version >>> 24 >= 1 && version >>> 24 <= 3 ? 'this looks like a big-endian GGUF, which is not supported'
      : 'supported versions are 2 and 3';
    c.fail('UNSUPPORTED_VERSION', `version ${version}: ${hint}`, 4);
  }
  const nTensors = c.count('tensor count', (c.remaining - 16) / MIN_TENSOR_INFO_BYTES, 'COUNT_TOO_LARGE', 'tensor infos');
  const nKv = c.count('metadata count', (c.remaining - 8 - nTensors * MIN_TENSOR_INFO_BYTES) / MIN_KV_BYTES, 'COUNT_TOO_LARGE', 'key/value pairs');

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const at = c.pos;
    const key = c.string(`metadata key #${i}`);
    if (key.length === 0) c.fail('BAD_KEY', `metadata key #${i} is empty`, at);
    if (key.length > GGUF_MAX_KEY) c.fail('BAD_KEY', `metadata key #${i} is ${key.length} characters long (max ${GGUF_MAX_KEY})`, at);
    if (metadata.has(key)) c.fail('DUPLICATE_KEY', `metadata key '${key}' appears twice`, at);
    const type = c.u32(`value type of '${key}'`);
    metadata.set(key, c.value(type, `value of '${key}'`, 0));
  }

  const alignment = alignmentOf(metadata, c);

  const tensors: GgufTensorInfo[] = [];
  const byName = new Map<string, GgufTensorInfo>();
  for (let i = 0; i < nTensors; i++) {
    const t = readTensorInfo(c, i, alignment);
    if (byName.has(t.name)) c.fail('DUPLICATE_TENSOR', `tensor '${t.name}' appears twice`);
    byName.set(t.name, t);
    tensors.push(t);
  }
  const headerEnd = c.pos;
  const dataOffset = alignUp(headerEnd, alignment);
  for (const t of tensors) t.fileOffset = dataOffset + t.offset;
  checkExtents(tensors, dataOffset, fileSize, path);
  return new ParsedGguf(path, version, alignment, dataOffset, fileSize, metadata, tensors, byName);
}

function alignmentOf(metadata: Map<string, GgufValue>, c: Cursor): number {
  const v = metadata.get('general.alignment');
  if (v === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (v.type !== GgufValueType.UINT32) c.fail('BAD_ALIGNMENT', `general.alignment has type ${ggufValueTypeName(v.type)}, must be UINT32`, -1);
  const a = v.value as number;
  if (a === 0 || (a & (a - 1)) !== 0) c.fail('BAD_ALIGNMENT', `general.alignment is ${a}, must be a power of two`, -1);
  return a;
}

function readTensorInfo(c: Cursor, i: number, alignment: number): GgufTensorInfo {
  const at = c.pos;
  const name = c.string(`name of tensor #${i}`);
  if (name.length === 0) c.fail('BAD_NAME', `tensor #${i} has an empty name`, at);
  if (Buffer.byteLength(name) > GGUF_MAX_TENSOR_NAME) c.fail('BAD_NAME', `tensor name '${name.slice(0, 80)}' is longer than ${GGUF_MAX_TENSOR_NAME} bytes`, at);
  const dimsAt = c.pos;
  const nDims = c.u32(`n_dims of '${name}'`);
  if (nDims === 0 || nDims > GGUF_MAX_DIMS) c.fail('BAD_DIMS', `tensor '${name}' has ${nDims} dims (must be 1..${GGUF_MAX_DIMS})`, dimsAt);
  const dims: number[] = [];
  let numElements = 1;
  for (let d = 0; d < nDims; d++) {
    const dAt = c.pos;
    const n = c.u64(`dim ${d} of '${name}'`);
    if (n === 0n) c.fail('BAD_DIMS', `tensor '${name}' has dim ${d} = 0`, dAt);
    if (n > MAX_SAFE || numElements * Number(n) > Number.MAX_SAFE_INTEGER) {
      c.fail('DIMS_OVERFLOW', `tensor '${name}' has ${n} in dim ${d}: its element count overflows 2^53`, dAt);
    }
    dims.push(Number(n));
    numElements *= Number(n);
  }
  const typeAt = c.pos;
  const type = c.u32(`type of '${name}'`);
  const info = ggmlTypeInfo(type);
  if (!info) c.fail('UNKNOWN_TYPE', `tensor '${name}' has unknown ggml type id ${type}`, typeAt);
  if (dims[0]! % info.blockSize !== 0) {
    c.fail('BAD_DIMS', `tensor '${name}' (${info.name}) has rows of ${dims[0]} elements, not a multiple of the block size ${info.blockSize}`, dimsAt);
  }
  const offAt = c.pos;
  const off = c.u64(`offset of '${name}'`);
  if (off > MAX_SAFE) c.fail('TENSOR_OUT_OF_FILE', `tensor '${name}' has offset ${off}, past any file`, offAt);
  const offset = Number(off);
  if (offset % alignment !== 0) c.fail('BAD_OFFSET', `tensor '${name}' has offset ${offset}, not a multiple of the alignment ${alignment}`, offAt);
  const byteSize = (numElements / info.blockSize) * info.typeSize;
  return { name, type, dims, offset, fileOffset: -1, numElements, byteSize };
}

/** Every tensor lies inside the file, and no two overlap. */
function checkExtents(tensors: GgufTensorInfo[], dataOffset: number, fileSize: number, path: string): void {
  for (const t of tensors) {
    if (t.fileOffset + t.byteSize > fileSize) {
      throw new InvalidGgufError('TENSOR_OUT_OF_FILE', path, t.fileOffset,
        `tensor '${t.name}' needs bytes [${t.fileOffset}, ${t.fileOffset + t.byteSize}) but the file has ${fileSize} (truncated download?)`);
    }
  }
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (a.offset + a.byteSize > b.offset) {
      throw new InvalidGgufError('TENSORS_OVERLAP', path, b.fileOffset,
        `tensors '${a.name}' [${a.offset}, ${a.offset + a.byteSize}) and '${b.name}' [${b.offset}, ${b.offset + b.byteSize}) overlap in the data section`);
    }
  }
  void dataOffset;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** The GgufFile implementation. @internal */
class ParsedGguf implements GgufFile {
  constructor(
    readonly path: string,
    readonly version: number,
    readonly alignment: number,
    readonly dataOffset: number,
    readonly fileSize: number,
    readonly metadata: Map<string, GgufValue>,
    readonly tensors: GgufTensorInfo[],
    private readonly byName: Map<string, GgufTensorInfo>,
  ) {}

  get architecture(): string {
    const v = this.metadata.get('general.architecture');
    return v?.type === GgufValueType.STRING ? v.value : '';
  }

  get(key: string): unknown {
    const v = this.metadata.get(key);
    return v === undefined ? undefined : plainValue(v);
  }

  private wrongType(key: string, v: GgufValue, want: string): never {
    throw new InvalidGgufError('WRONG_VALUE_TYPE', this.path, -1, `metadata '${key}' has type ${ggufValueTypeName(v.type)}, expected ${want}`);
  }

  getString(key: string): string | undefined;
  getString(key: string, fallback: string): string;
  getString(key: string, fallback?: string): string | undefined {
    const v = this.metadata.get(key);
    if (v === undefined) return fallback;
    if (v.type !== GgufValueType.STRING) this.wrongType(key, v, 'STRING');
    return v.value;
  }

  getNumber(key: string): number | undefined;
  getNumber(key: string, fallback: number): number;
  getNumber(key: string, fallback?: number): number | undefined {
    const v = this.metadata.get(key);
    if (v === undefined) return fallback;
    if (typeof v.value === 'number') return v.value;
    if (typeof v.value === 'bigint') {
      const n = plainValue(v);
      if (typeof n === 'number') return n;
      throw new InvalidGgufError('BAD_VALUE', this.path, -1, `metadata '${key}' = ${v.value} does not fit a JS number exactly`);
    }
    return this.wrongType(key, v, 'a number');
  }

  getArray(key: string): GgufArrayItems | unknown[] | undefined {
    const v = this.metadata.get(key);
    if (v === undefined) return undefined;
    if (v.type !== GgufValueType.ARRAY) this.wrongType(key, v, 'ARRAY');
    return plainValue(v) as GgufArrayItems | unknown[];
  }

  getStringArray(key: string): string[] | undefined {
    const v = this.metadata.get(key);
    if (v === undefined) return undefined;
    if (v.type !== GgufValueType.ARRAY || v.value.itemType !== GgufValueType.STRING) this.wrongType(key, v, 'ARRAY of STRING');
    return v.value.items as string[];
  }

  tensor(name: string): GgufTensorInfo | undefined {
    return this.byName.get(name);
  }
}

/**
 * Parses a GGUF header held in memory. `bytes` may be just a prefix of the file when
 * `fileSize` (default bytes.length) says how long the file is; tensor extents are checked
 * against `fileSize`.
 */
export function parseGguf(bytes: Uint8Array, fileSize = bytes.length, path = '<memory>'): GgufFile {
  try {
    return parseHeader(bytes, fileSize, path);
  } catch (e) {
    if (e instanceof NeedMore) {
      throw new InvalidGgufError('TRUNCATED', path, bytes.length, `the header continues past the ${bytes.length} bytes given`);
    }
    throw e;
  }
}

/** Next prefix length to read after the parser asked for bytes up to `end`. */
function grow(current: number, end: number, fileSize: number, max: number, path: string): number {
  if (end > max) {
    throw new InvalidGgufError('HEADER_TOO_LARGE', path, end,
      `the header is larger than the ${max} byte limit (maxMetadataBytes); raise it if this file is trusted`);
  }
  return Math.min(fileSize, Math.max(end, Math.min(max, current * 2)));
}

function openError(path: string, err: unknown): FlexinferError {
  return new FlexinferError(`${path}: cannot read: ${(err as Error).message}`, { cause: err });
}

/**
 * Reads the header of the GGUF file at `path` (reads only the header bytes, starting with
 * 1 MiB and doubling until the header fits).
 */
export function readGgufSync(path: string, options: GgufReadOptions = {}): GgufFile {
  const max = options.maxMetadataBytes ?? DEFAULT_MAX_METADATA;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw openError(path, e);
  }
  try {
    let fileSize: number;
    try {
      fileSize = fstatSync(fd).size;
    } catch (e) {
      throw openError(path, e);
    }
    let buf = new Uint8Array(0);
    let want = Math.min(fileSize, FIRST_READ, max);
    for (;;) {
      const next = new Uint8Array(want);
      next.set(buf);
      let filled = buf.length;
      try {
        while (filled < want) {
          const n = readSync(fd, next, filled, want - filled, filled);
          if (n === 0) break;
          filled += n;
        }
      } catch (e) {
        throw openError(path, e);
      }
      buf = next.subarray(0, filled);
      try {
        return parseHeader(buf, fileSize, path);
      } catch (e) {
        if (!(e instanceof NeedMore)) throw e;
        if (filled < want) throw new InvalidGgufError('TRUNCATED', path, filled, 'the file shrank while being read');
        want = grow(buf.length, e.end, fileSize, max, path);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Async form of readGgufSync (same checks, non-blocking I/O). */
export async function readGguf(path: string, options: GgufReadOptions = {}): Promise<GgufFile> {
  const max = options.maxMetadataBytes ?? DEFAULT_MAX_METADATA;
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw openError(path, e);
  }
  try {
    let fileSize: number;
    let buf = new Uint8Array(0);
    try {
      fileSize = (await fh.stat()).size;
    } catch (e) {
      throw openError(path, e);
    }
    let want = Math.min(fileSize, FIRST_READ, max);
    for (;;) {
      const next = new Uint8Array(want);
      next.set(buf);
      let filled = buf.length;
      try {
        while (filled < want) {
          const { bytesRead } = await fh.read(next, filled, want - filled, filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
      } catch (e) {
        throw openError(path, e);
      }
      buf = next.subarray(0, filled);
      try {
        return parseHeader(buf, fileSize, path);
      } catch (e) {
        if (!(e instanceof NeedMore)) throw e;
        if (filled < want) throw new InvalidGgufError('TRUNCATED', path, filled, 'the file shrank while being read');
        want = grow(buf.length, e.end, fileSize, max, path);
      }
    }
  } finally {
    await fh.close();
  }
}
