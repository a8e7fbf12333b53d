/**
 * GGUF reader: parses the header (metadata and tensor infos) of a GGUF v2/v3 file and never
 * reads tensor data, so a 7B file opens instantly.
 *
 * NOTE: the file is hostile until proven otherwise. Every length and count is checked against
 * the bytes the file still has and against the header limit (maxMetadataBytes) BEFORE anything
 * is allocated for it (see cursor.ts), so a corrupt header gives an InvalidGgufError naming the
 * problem and the byte offset, never a crash, a hang or a multi-gigabyte allocation. Header of
 * a 152k-token + 280k-merge vocabulary (10 MB): ~0.15-0.4 s, mostly creating the strings.
 * Layout (little-endian, gguf.md):
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
import { Cursor, NeedMore, type Refill } from './cursor.js';
import { GgufValueType, ggufValueTypeName, plainValue, type GgufArrayItems, type GgufValue } from './value.js';

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
  /** Plain items of an ARRAY value (see plainValue: string[], boolean[], number[] or a typed array, nested arrays), or undefined. */
  getArray(key: string): GgufArrayItems | unknown[] | undefined;
  /** Items of a STRING array, or undefined; throws WRONG_VALUE_TYPE for another array type. */
  getStringArray(key: string): string[] | undefined;
  tensor(name: string): GgufTensorInfo | undefined;
  /** `general.architecture`, or '' when the file has none. */
  architecture: string;
}

/** Options of readGguf / readGgufSync. */
export interface GgufReadOptions {
  /** Largest header (metadata + tensor infos) accepted; default 256 MiB (real ones: < 32 MiB). */
  maxMetadataBytes?: number;
}

export { GGUF_MAX_ARRAY_DEPTH } from './cursor.js';
/** Longest tensor name ggml accepts (GGML_MAX_NAME is 64 including the NUL). */
export const GGUF_MAX_TENSOR_NAME = 63;
/** Longest metadata key the spec allows. */
export const GGUF_MAX_KEY = 65535;
/** Largest n_dims (GGML_MAX_DIMS). */
export const GGUF_MAX_DIMS = 4;
export const GGUF_DEFAULT_ALIGNMENT = 32;

const DEFAULT_MAX_METADATA = 256 * 1024 * 1024;
const FIRST_READ = 1024 * 1024;
// string key (8) + u32 type + smallest value (1)
const MIN_KV_BYTES = 8 + 4 + 1;
// string name (8) + u32 n_dims + one u64 dim + u32 type + u64 offset
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Parses a header from `bytes` (the start of a file of `fileSize` bytes), reading on through
 * `refill` when given, else throwing NeedMore at the end of `bytes`.
 */
function parseHeader(bytes: Uint8Array, fileSize: number, path: string, refill?: Refill, headerLimit?: number): GgufFile {
  const c = new Cursor(bytes, fileSize, path, refill, headerLimit);

  const magic = c.raw(4, 'the magic');
  if (magic[0] !== 0x47 || magic[1] !== 0x47 || magic[2] !== 0x55 || magic[3] !== 0x46) {
    const seen = [...magic].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    c.fail('BAD_MAGIC', `not a GGUF file: magic is ${seen}, expected 47 47 55 46 ("GGUF")`, 0);
  }
  const version = c.u32('the version');
  if (version !== 2 && version !== 3) {
    const hint =
      version === 1 ? 'GGUF v1 is not supported; re-convert the model with a current llama.cpp'
      : (version & 0xffff) === 0 && version >>> 24 >= 1 && version >>> 24 <= 3 ? 'this looks like a big-endian GGUF, which is not supported'
      : 'supported versions are 2 and 3';
    c.fail('UNSUPPORTED_VERSION', `version ${version}: ${hint}`, 4);
  }
  const nTensors = c.count('tensor count', MIN_TENSOR_INFO_BYTES, 8, 'COUNT_TOO_LARGE', 'tensor infos');
  const nKv = c.count('metadata count', MIN_KV_BYTES, nTensors * MIN_TENSOR_INFO_BYTES, 'COUNT_TOO_LARGE', 'key/value pairs');

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

function headerTooLarge(path: string, end: number, max: number): InvalidGgufError {
  return new InvalidGgufError('HEADER_TOO_LARGE', path, end,
    `the header is larger than the ${max} byte limit (maxMetadataBytes); raise it if this file is trusted`);
}

/**
 * Next prefix length for the async reader after the parser asked for bytes up to `end`:
 * x4 growth, so a 10 MB vocabulary costs 1 + 4 + 16 MiB of parsing, not 1 + 2 + ... + 16.
 */
function grow(current: number, end: number, fileSize: number, max: number, path: string): number {
  if (end > max) throw headerTooLarge(path, end, max);
  return Math.min(fileSize, Math.max(end, Math.min(max, current * 4)));
}

function openError(path: string, err: unknown): FlexinferError {
  return new FlexinferError(`${path}: cannot read: ${(err as Error).message}`, { cause: err });
}

/**
 * Reads the header of the GGUF file at `path`: buffered reads of 1 MiB windows (larger only
 * for a single larger item), never the tensor data, never more than maxMetadataBytes.
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
    const readWindow = (pos: number, n: number): Uint8Array => {
      if (pos + n > max) throw headerTooLarge(path, pos + n, max);
      const len = Math.min(fileSize - pos, Math.max(n, FIRST_READ), max - pos);
      const w = new Uint8Array(len);
      let filled = 0;
      try {
        while (filled < len) {
          const got = readSync(fd, w, filled, len - filled, pos + filled);
          if (got === 0) break;
          filled += got;
        }
      } catch (e) {
        throw openError(path, e);
      }
      if (filled < n) throw new InvalidGgufError('TRUNCATED', path, pos + filled, 'the file shrank while being read');
      return w.subarray(0, filled);
    };
    return parseHeader(readWindow(0, 0), fileSize, path, readWindow, max);
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
        return parseHeader(buf, fileSize, path, undefined, max);
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
