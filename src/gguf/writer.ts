/**
 * GGUF writer: header in memory, tensor data streamed one tensor at a time (a 7B model does
 * not fit in memory twice), written to a temporary name and renamed at the end so a killed
 * write never leaves a half file under the real name.
 *
 * Layout as llama.cpp writes it: every tensor starts at a multiple of the alignment and is
 * followed by zero padding up to the next multiple (also after the last one).
 */

import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { InvalidGgufError, type InvalidGgufCode } from '../errors.js';
import { GgmlType, ggmlTypeInfo } from './ggml-type.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAX_ARRAY_DEPTH, GGUF_MAX_DIMS, GGUF_MAX_KEY, GGUF_MAX_TENSOR_NAME } from './reader.js';
import { GgufValueType, ggufValueTypeName, type GgufArray, type GgufValue } from './value.js';

/** A tensor to write: data as bytes, or a function producing them when the writer gets there. */
export interface GgufWriteTensor {
  name: string;
  type: GgmlType;
  /** ggml order, innermost first. */
  dims: number[];
  data: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
}

export interface GgufWriteOptions {
  /** GGUF version to write; 2 and 3 have the same little-endian layout. Default 3. */
  version?: 2 | 3;
  /** Data alignment (power of two), default 32; written as `general.alignment` when given. */
  alignment?: number;
  /** Called after the header and after each chunk of tensor data, with file bytes. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  signal?: AbortSignal;
}

/** Where each tensor goes: header bytes, data offset, per-tensor offsets and sizes. @internal */
export interface GgufLayout {
  header: Uint8Array; // header + padding, dataOffset bytes
  dataOffset: number;
  offsets: number[]; // within the data section
  byteSizes: number[];
  fileSize: number;
}

const WRITE_CHUNK = 64 * 1024 * 1024;
const textEncoder = new TextEncoder();

/** Growable little-endian byte buffer for the header. */
class ByteWriter {
  buf = new Uint8Array(1 << 16);
  dv = new DataView(this.buf.buffer);
  len = 0;

  // NOTE: callers must call reserve() before touching this.buf / this.dv (it may replace them).
  private reserve(n: number): number {
    if (this.len + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.len + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
      this.dv = new DataView(next.buffer);
    }
    const at = this.len;
    this.len += n;
    return at;
  }
  u8(v: number) { const at = this.reserve(1); this.buf[at] = v; }
  i8(v: number) { const at = this.reserve(1); this.dv.setInt8(at, v); }
  u16(v: number) { const at = this.reserve(2); this.dv.setUint16(at, v, true); }
  i16(v: number) { const at = this.reserve(2); this.dv.setInt16(at, v, true); }
  u32(v: number) { const at = this.reserve(4); this.dv.setUint32(at, v, true); }
  i32(v: number) { const at = this.reserve(4); this.dv.setInt32(at, v, true); }
  f32(v: number) { const at = this.reserve(4); this.dv.setFloat32(at, v, true); }
  f64(v: number) { const at = this.reserve(8); this.dv.setFloat64(at, v, true); }
  u64(v: bigint) { const at = this.reserve(8); this.dv.setBigUint64(at, v, true); }
  i64(v: bigint) { const at = this.reserve(8); this.dv.setBigInt64(at, v, true); }
  str(s: string) {
    const n = Buffer.byteLength(s, 'utf8');
    this.u64(BigInt(n));
    const at = this.reserve(n);
    textEncoder.encodeInto(s, this.buf.subarray(at, at + n));
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

type Fail = (code: InvalidGgufCode, detail: string) => never;

const INT_RANGE: Partial<Record<GgufValueType, [number, number]>> = {
  [GgufValueType.UINT8]: [0, 0xff],
  [GgufValueType.INT8]: [-0x80, 0x7f],
  [GgufValueType.UINT16]: [0, 0xffff],
  [GgufValueType.INT16]: [-0x8000, 0x7fff],
  [GgufValueType.UINT32]: [0, 0xffffffff],
  [GgufValueType.INT32]: [-0x80000000, 0x7fffffff],
};

/** Writes one scalar of `type`, checking that the JS value fits it. */
function writeScalar(w: ByteWriter, type: GgufValueType, v: unknown, what: string, fail: Fail, depth: number): void {
  const range = INT_RANGE[type];
  if (range) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) {
      fail('BAD_VALUE', `${what} = ${String(v)} is not a ${ggufValueTypeName(type)}`);
    }
  }
  switch (type) {
    case GgufValueType.UINT8: return w.u8(v as number);
    case GgufValueType.INT8: return w.i8(v as number);
    case GgufValueType.UINT16: return w.u16(v as number);
    case GgufValueType.INT16: return w.i16(v as number);
    case GgufValueType.UINT32: return w.u32(v as number);
    case GgufValueType.INT32: return w.i32(v as number);
    case GgufValueType.FLOAT32:
    case GgufValueType.FLOAT64:
      if (typeof v !== 'number') fail('BAD_VALUE', `${what} = ${String(v)} is not a number`);
      return type === GgufValueType.FLOAT32 ? w.f32(v) : w.f64(v);
    case GgufValueType.UINT64:
    case GgufValueType.INT64: {
      const b = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : undefined;
      const signed = type === GgufValueType.INT64;
      if (b === undefined || (signed ? BigInt.asIntN(64, b) : BigInt.asUintN(64, b)) !== b) {
        fail('BAD_VALUE', `${what} = ${String(v)} is not a ${ggufValueTypeName(type)}`);
      }
      return signed ? w.i64(b) : w.u64(b);
    }
    case GgufValueType.BOOL:
      if (typeof v !== 'boolean') fail('BAD_VALUE', `${what} = ${String(v)} is not a boolean`);
      return w.u8(v ? 1 : 0);
    case GgufValueType.STRING:
      if (typeof v !== 'string') fail('BAD_VALUE', `${what} is not a string`);
      return w.str(v);
    case GgufValueType.ARRAY:
      return writeArray(w, v as GgufArray, what, fail, depth + 1);
    default:
      fail('UNKNOWN_VALUE_TYPE', `${what} has unknown value type ${String(type)}`);
  }
}

function writeArray(w: ByteWriter, a: GgufArray, what: string, fail: Fail, depth: number): void {
  if (depth > GGUF_MAX_ARRAY_DEPTH) fail('NESTING_TOO_DEEP', `${what} nests arrays deeper than ${GGUF_MAX_ARRAY_DEPTH} levels`);
  if (typeof a !== 'object' || a === null || !('itemType' in a) || !a.items || typeof a.items.length !== 'number') {
    fail('BAD_VALUE', `${what} is not an array value ({ itemType, items })`);
  }
  w.u32(a.itemType);
  w.u64(BigInt(a.items.length));
  const items = a.items as ArrayLike<unknown>;
  for (let i = 0; i < items.length; i++) writeScalar(w, a.itemType, items[i], `${what}[${i}]`, fail, depth);
}

/**
 * Computes the file layout and encodes the header (padded to the data offset). Validates
 * keys, values, names, dims and types. @internal (exported for tests and tools)
 */
export function layoutGguf(
  metadata: Array<[string, GgufValue]> | Map<string, GgufValue>,
  tensors: ReadonlyArray<Pick<GgufWriteTensor, 'name' | 'type' | 'dims'>>,
  options: Pick<GgufWriteOptions, 'version' | 'alignment'> = {},
  path = '<memory>',
): GgufLayout & { alignment: number } {
  const fail: Fail = (code, detail) => {
    throw new InvalidGgufError(code, path, -1, `cannot write: ${detail}`);
  };
  const entries: Array<[string, GgufValue]> = metadata instanceof Map ? [...metadata] : [...metadata];
  const version = options.version ?? 3;
  if (version !== 2 && version !== 3) fail('UNSUPPORTED_VERSION', `version ${String(version)} (write 2 or 3)`);

  // Alignment: the metadata's general.alignment wins; options.alignment must agree with it.
  const seen = new Set<string>();
  let alignment: number | undefined;
  for (const [key, v] of entries) {
    if (typeof key !== 'string' || key.length === 0 || Buffer.byteLength(key) > GGUF_MAX_KEY) fail('BAD_KEY', `metadata key '${String(key)}' is empty or too long`);
    if (seen.has(key)) fail('DUPLICATE_KEY', `metadata key '${key}' given twice`);
    seen.add(key);
    if (key === 'general.alignment') {
      if (v.type !== GgufValueType.UINT32) fail('BAD_ALIGNMENT', `general.alignment must be UINT32, got ${ggufValueTypeName(v.type)}`);
      alignment = v.value;
    }
  }
  if (options.alignment !== undefined) {
    if (alignment !== undefined && alignment !== options.alignment) {
      fail('BAD_ALIGNMENT', `options.alignment ${options.alignment} disagrees with general.alignment ${alignment}`);
    }
    if (alignment === undefined) entries.push(['general.alignment', { type: GgufValueType.UINT32, value: options.alignment }]);
    alignment = options.alignment;
  }
  alignment ??= GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment > 0x80000000 || (alignment & (alignment - 1)) !== 0) {
    fail('BAD_ALIGNMENT', `alignment ${alignment} is not a power of two`);
  }

  const w = new ByteWriter();
  w.u8(0x47); w.u8(0x47); w.u8(0x55); w.u8(0x46); // "GGUF"
  w.u32(version);
  w.u64(BigInt(tensors.length));
  w.u64(BigInt(entries.length));
  for (const [key, v] of entries) {
    w.str(key);
    w.u32(v.type);
    writeScalar(w, v.type, v.value, `metadata '${key}'`, fail, 0);
  }

  const names = new Set<string>();
  const offsets: number[] = [];
  const byteSizes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (typeof t.name !== 'string' || t.name.length === 0 || Buffer.byteLength(t.name) > GGUF_MAX_TENSOR_NAME) {
      fail('BAD_NAME', `tensor name '${String(t.name)}' is empty or longer than ${GGUF_MAX_TENSOR_NAME} bytes`);
    }
    if (names.has(t.name)) fail('DUPLICATE_TENSOR', `tensor '${t.name}' given twice`);
    names.add(t.name);
    const info = ggmlTypeInfo(t.type);
    if (!info) fail('UNKNOWN_TYPE', `tensor '${t.name}' has unknown ggml type ${String(t.type)}`);
    if (!Array.isArray(t.dims) || t.dims.length === 0 || t.dims.length > GGUF_MAX_DIMS) fail('BAD_DIMS', `tensor '${t.name}' must have 1..${GGUF_MAX_DIMS} dims`);
    let n = 1;
    for (const d of t.dims) {
      if (!Number.isSafeInteger(d) || d <= 0) fail('BAD_DIMS', `tensor '${t.name}' has dim ${d}`);
      n *= d;
      if (!Number.isSafeInteger(n)) fail('DIMS_OVERFLOW', `tensor '${t.name}' has more than 2^53 elements`);
    }
    if (t.dims[0]! % info.blockSize !== 0) fail('BAD_DIMS', `tensor '${t.name}' rows of ${t.dims[0]} are not whole ${info.name} blocks of ${info.blockSize}`);
    const size = (n / info.blockSize) * info.typeSize;
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(BigInt(d));
    w.u32(t.type);
    w.u64(BigInt(offset));
    offsets.push(offset);
    byteSizes.push(size);
    offset += alignUp(size, alignment);
  }
  const dataOffset = alignUp(w.len, alignment);
  const header = new Uint8Array(dataOffset);
  header.set(w.bytes());
  return { header, dataOffset, offsets, byteSizes, fileSize: dataOffset + offset, alignment };
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * Writes a GGUF file: metadata in the given order, tensors in the given order. Tensor data
 * functions are called one at a time, in order, so only one tensor's bytes need to be in
 * memory. Throws InvalidGgufError for bad input (checked before any byte is written, except
 * a data length, checked when the data arrives).
 */
export async function writeGguf(
  path: string,
  metadata: Array<[string, GgufValue]> | Map<string, GgufValue>,
  tensors: GgufWriteTensor[],
  options: GgufWriteOptions = {},
): Promise<void> {
  const layout = layoutGguf(metadata, tensors, options, path);
  const { signal, onProgress } = options;
  signal?.throwIfAborted();
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.partial`);
  const fh = await open(tmp, 'wx');
  let ok = false;
  try {
    let done = 0;
    const put = async (bytes: Uint8Array) => {
      for (let p = 0; p < bytes.length; ) {
        signal?.throwIfAborted();
        const n = Math.min(WRITE_CHUNK, bytes.length - p);
        const { bytesWritten } = await fh.write(bytes, p, n, done);
        p += bytesWritten;
        done += bytesWritten;
        onProgress?.(done, layout.fileSize);
      }
    };
    await put(layout.header);
    const pad = new Uint8Array(layout.alignment);
    for (let i = 0; i < tensors.length; i++) {
      signal?.throwIfAborted();
      const t = tensors[i]!;
      const data = typeof t.data === 'function' ? await t.data() : t.data;
      if (!(data instanceof Uint8Array) || data.length !== layout.byteSizes[i]) {
        const got = data instanceof Uint8Array ? `${data.length} bytes` : typeof data;
        throw new InvalidGgufError('BAD_DATA', path, -1,
          `cannot write: tensor '${t.name}' (${ggmlTypeInfo(t.type)!.name} [${t.dims.join(', ')}]) needs ${layout.byteSizes[i]} bytes of data, got ${got}`);
      }
      if (done !== layout.dataOffset + layout.offsets[i]!) throw new Error(`writer bug: at ${done}, expected ${layout.dataOffset + layout.offsets[i]!}`);
      await put(data);
      const padLen = alignUp(data.length, layout.alignment) - data.length;
      if (padLen > 0) await put(pad.subarray(0, padLen));
    }
    await fh.close();
    await rename(tmp, path);
    ok = true;
  } finally {
    if (!ok) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
    }
  }
}
