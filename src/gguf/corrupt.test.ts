/**
 * Corrupt and hostile files: every one must give an InvalidGgufError with the right code,
 * quickly and without big allocations, through both parseGguf and readGgufSync.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseGguf, readGguf, readGgufSync } from './reader.js';
import { GgufValueType as T } from './value.js';
import { GgmlType } from './ggml-type.js';
import { HandBytes, MAGIC, handGguf, type HandTensor } from './test-bytes.js';
import { InvalidGgufError, type InvalidGgufCode } from '../errors.js';

/** A valid small file: 3 kvs (string, string array, u32), 2 tensors (f32 [8, 2], q8_0 [32]). */
function base(): { bytes: Uint8Array; headerEnd: number; dataOffset: number; lastTensorEnd: number } {
  const kv = (b: HandBytes) => {
    b.str('general.architecture').u32(T.STRING).str('llama');
    b.str('tokenizer.ggml.tokens').u32(T.ARRAY).u32(T.STRING).u64(3).str('a').str('bb').str('ccc');
    b.str('llama.block_count').u32(T.UINT32).u32(1);
  };
  const tensors = [
    { name: 'a', dims: [8, 2], type: GgmlType.F32, offset: 0 }, // 64 bytes
    { name: 'b', dims: [32], type: GgmlType.Q8_0, offset: 64 }, // 34 bytes
  ];
  const data = new HandBytes().fill(64, 1).fill(34, 2).pad(32).bytes();
  const headerEnd = handGguf({ kvCount: 3, kv, tensors, alignment: 1 }).length;
  const bytes = handGguf({ kvCount: 3, kv, tensors, data });
  const dataOffset = Math.ceil(headerEnd / 32) * 32;
  return { bytes, headerEnd, dataOffset, lastTensorEnd: dataOffset + 98 };
}

/** Builds a file from a kv writer and tensor list (defaults: one valid kv, one f32 tensor). */
function file(opts: {
  kv?: (b: HandBytes) => void;
  kvCount?: number;
  tensors?: HandTensor[];
  nTensors?: number | bigint;
  nKv?: number | bigint;
  version?: number;
  data?: Uint8Array;
  alignment?: number;
}): Uint8Array {
  const tensors = opts.tensors ?? [{ name: 'w', dims: [4], type: GgmlType.F32, offset: 0 }];
  return handGguf({
    version: opts.version,
    nTensors: opts.nTensors,
    nKv: opts.nKv,
    kvCount: opts.kvCount ?? (opts.kv ? 1 : 1),
    kv: opts.kv ?? ((b) => b.str('general.architecture').u32(T.STRING).str('llama')),
    tensors,
    alignment: opts.alignment,
    data: opts.data ?? new Uint8Array(256),
  });
}

const kvOnly = (kv: (b: HandBytes) => void, extra: Parameters<typeof file>[0] = {}) => file({ kv, ...extra });

/** Every targeted corruption and the code it must give. */
function cases(): Array<[string, InvalidGgufCode, Uint8Array]> {
  const ok = base().bytes;
  const patch = (at: number, bytes: number[]) => {
    const c = ok.slice();
    c.set(bytes, at);
    return c;
  };
  const u64le = (v: bigint) => Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
  const aligned = (a: number) => kvOnly((b) => b.str('general.alignment').u32(T.UINT32).u32(a));
  return [
    ['empty file', 'TRUNCATED', new Uint8Array(0)],
    ['bad magic', 'BAD_MAGIC', patch(0, [0x47, 0x47, 0x4d, 0x4c])],
    ['version 1', 'UNSUPPORTED_VERSION', patch(4, [1, 0, 0, 0])],
    ['version 4', 'UNSUPPORTED_VERSION', patch(4, [4, 0, 0, 0])],
    ['big-endian v3', 'UNSUPPORTED_VERSION', patch(4, [0, 0, 0, 3])],
    ['tensor count 2^63', 'COUNT_TOO_LARGE', patch(8, u64le(2n ** 63n))],
    ['tensor count 2^32', 'COUNT_TOO_LARGE', patch(8, u64le(2n ** 32n))],
    ['tensor count 2^64-1', 'COUNT_TOO_LARGE', patch(8, u64le(2n ** 64n - 1n))],
    ['kv count 2^63', 'COUNT_TOO_LARGE', patch(16, u64le(2n ** 63n))],
    ['kv count 2^32', 'COUNT_TOO_LARGE', patch(16, u64le(2n ** 32n))],
    ['key length 2^63', 'STRING_TOO_LONG', patch(24, u64le(2n ** 63n))],
    ['key length 2^32', 'STRING_TOO_LONG', patch(24, u64le(2n ** 32n))],
    ['value string length 2^63', 'STRING_TOO_LONG', kvOnly((b) => b.str('k').u32(T.STRING).u64(2n ** 63n).raw([65]))],
    ['array length 2^32 of u8', 'ARRAY_TOO_LONG', kvOnly((b) => b.str('k').u32(T.ARRAY).u32(T.UINT8).u64(2n ** 32n).raw([1, 2]))],
    ['array length 2^63 of strings', 'ARRAY_TOO_LONG', kvOnly((b) => b.str('k').u32(T.ARRAY).u32(T.STRING).u64(2n ** 63n))],
    ['array length 2^62 of arrays', 'ARRAY_TOO_LONG', kvOnly((b) => b.str('k').u32(T.ARRAY).u32(T.ARRAY).u64(2n ** 62n))],
    ['string array element length 2^40', 'STRING_TOO_LONG', kvOnly((b) => b.str('k').u32(T.ARRAY).u32(T.STRING).u64(2).str('a').u64(2n ** 40n))],
    ['unknown value type', 'UNKNOWN_VALUE_TYPE', kvOnly((b) => b.str('k').u32(13).u32(0))],
    ['unknown array item type', 'UNKNOWN_VALUE_TYPE', kvOnly((b) => b.str('k').u32(T.ARRAY).u32(99).u64(1).u32(0))],
    ['arrays nested 9 deep', 'NESTING_TOO_DEEP', kvOnly((b) => {
      b.str('k').u32(T.ARRAY);
      for (let i = 0; i < 8; i++) b.u32(T.ARRAY).u64(1);
      b.u32(T.UINT8).u64(0);
    })],
    ['bool byte 2', 'BAD_VALUE', kvOnly((b) => b.str('k').u32(T.BOOL).u8(2))],
    ['empty key', 'BAD_KEY', kvOnly((b) => b.str('').u32(T.UINT8).u8(0))],
    ['duplicate key', 'DUPLICATE_KEY', kvOnly((b) => b.str('k').u32(T.UINT8).u8(0).str('k').u32(T.UINT8).u8(1), { kvCount: 2 })],
    ['alignment 0', 'BAD_ALIGNMENT', aligned(0)],
    ['alignment 3', 'BAD_ALIGNMENT', aligned(3)],
    ['alignment 48', 'BAD_ALIGNMENT', aligned(48)],
    ['alignment as u64', 'BAD_ALIGNMENT', kvOnly((b) => b.str('general.alignment').u32(T.UINT64).u64(32))],
    ['0 dims', 'BAD_DIMS', file({ tensors: [{ name: 'w', dims: [], type: GgmlType.F32, offset: 0 }] })],
    ['5 dims', 'BAD_DIMS', file({ tensors: [{ name: 'w', dims: [1, 1, 1, 1, 1], type: GgmlType.F32, offset: 0 }] })],
    ['n_dims 2^31', 'BAD_DIMS', file({ tensors: [{ name: 'w', dims: [4], nDims: 2 ** 31, type: GgmlType.F32, offset: 0 }] })],
    ['dim 0', 'BAD_DIMS', file({ tensors: [{ name: 'w', dims: [4, 0], type: GgmlType.F32, offset: 0 }] })],
    ['dim 2^63', 'DIMS_OVERFLOW', file({ tensors: [{ name: 'w', dims: [2n ** 63n], type: GgmlType.F32, offset: 0 }] })],
    ['dims product > 2^53', 'DIMS_OVERFLOW', file({ tensors: [{ name: 'w', dims: [2 ** 27, 2 ** 27], type: GgmlType.F32, offset: 0 }] })],
    ['q8_0 row of 33', 'BAD_DIMS', file({ tensors: [{ name: 'w', dims: [33], type: GgmlType.Q8_0, offset: 0 }] })],
    ['q4_k row of 128', 'BAD_DIMS', file({ tensors: [{ name: 'w', dims: [128, 2], type: GgmlType.Q4_K, offset: 0 }] })],
    ['retired type id 4', 'UNKNOWN_TYPE', file({ tensors: [{ name: 'w', dims: [32], type: 4, offset: 0 }] })],
    ['type id 99', 'UNKNOWN_TYPE', file({ tensors: [{ name: 'w', dims: [32], type: 99, offset: 0 }] })],
    ['type id 2^32-1', 'UNKNOWN_TYPE', file({ tensors: [{ name: 'w', dims: [32], type: 0xffffffff, offset: 0 }] })],
    ['offset not aligned', 'BAD_OFFSET', file({ tensors: [{ name: 'w', dims: [4], type: GgmlType.F32, offset: 4 }] })],
    ['offset 2^63', 'TENSOR_OUT_OF_FILE', file({ tensors: [{ name: 'w', dims: [4], type: GgmlType.F32, offset: 2n ** 63n }] })],
    ['tensor past EOF', 'TENSOR_OUT_OF_FILE', file({ tensors: [{ name: 'w', dims: [4], type: GgmlType.F32, offset: 256 }] })],
    ['huge tensor past EOF', 'TENSOR_OUT_OF_FILE', file({ tensors: [{ name: 'w', dims: [2 ** 20, 2 ** 20], type: GgmlType.F32, offset: 0 }] })],
    ['overlapping tensors', 'TENSORS_OVERLAP', file({ tensors: [
      { name: 'a', dims: [16], type: GgmlType.F32, offset: 0 },
      { name: 'b', dims: [16], type: GgmlType.F32, offset: 32 },
    ] })],
    ['same offset', 'TENSORS_OVERLAP', file({ tensors: [
      { name: 'a', dims: [8], type: GgmlType.F32, offset: 64 },
      { name: 'b', dims: [8], type: GgmlType.F32, offset: 64 },
    ] })],
    ['duplicate tensor', 'DUPLICATE_TENSOR', file({ tensors: [
      { name: 'a', dims: [8], type: GgmlType.F32, offset: 0 },
      { name: 'a', dims: [8], type: GgmlType.F32, offset: 32 },
    ] })],
    ['tensor name of 64 bytes', 'BAD_NAME', file({ tensors: [{ name: 'n'.repeat(64), dims: [4], type: GgmlType.F32, offset: 0 }] })],
    ['empty tensor name', 'BAD_NAME', file({ tensors: [{ name: '', dims: [4], type: GgmlType.F32, offset: 0 }] })],
    ['more tensors claimed than present', 'TRUNCATED', file({ nTensors: 2, alignment: 1, data: new Uint8Array(0) })],
    ['header cut inside magic', 'TRUNCATED', new Uint8Array(MAGIC.slice(0, 3))],
  ];
}

const isInvalid = (code?: InvalidGgufCode) => (e: unknown) => {
  if (!(e instanceof InvalidGgufError)) return false;
  if (code !== undefined && e.code !== code) assert.fail(`expected ${code}, got ${e.code}: ${e.message}`);
  return true;
};

const MB = 1024 * 1024;

test('targeted corruptions give the named error (parseGguf, readGgufSync, readGguf)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-corrupt-'));
  const rssBefore = process.memoryUsage().rss;
  try {
    // The base file itself is valid.
    const f = parseGguf(base().bytes);
    assert.equal(f.tensors.length, 2);
    // Arrays nested 8 deep are accepted (the cap is 8).
    const deep = parseGguf(kvOnly((b) => {
      b.str('k').u32(T.ARRAY);
      for (let i = 0; i < 7; i++) b.u32(T.ARRAY).u64(1);
      b.u32(T.UINT8).u64(1).u8(9);
    }));
    assert.deepEqual(deep.get('k'), [[[[[[[[9]]]]]]]]);
    for (const [i, [what, code, bytes]] of cases().entries()) {
      assert.throws(() => parseGguf(bytes), isInvalid(code), what);
      const p = join(dir, `c${i}.gguf`);
      writeFileSync(p, bytes);
      assert.throws(() => readGgufSync(p), isInvalid(code), `${what} (file)`);
      await assert.rejects(readGguf(p), isInvalid(code), `${what} (async)`);
    }
    const grown = process.memoryUsage().rss - rssBefore;
    assert.ok(grown < 100 * MB, `rss grew by ${grown} bytes`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the message names the file, the problem and the byte offset', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-corrupt-'));
  try {
    const p = join(dir, 'big-key.gguf');
    const c = base().bytes.slice();
    c.set([0, 0, 0, 0, 0, 0, 0, 0x80], 24);
    writeFileSync(p, c);
    assert.throws(() => readGgufSync(p), (e: unknown) => {
      const m = (e as Error).message;
      return m.includes(p) && m.includes('9223372036854775808') && m.includes('(at byte 24)');
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lengths that fit a (sparse) 1 GiB file but not the header limit: no allocation', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-corrupt-'));
  const rssBefore = process.memoryUsage().rss;
  try {
    const heads: Array<[string, Uint8Array]> = [
      ['700 MB string', kvOnly((b) => b.str('k').u32(T.STRING).u64(700 * MB))],
      ['100M u64 array', kvOnly((b) => b.str('k').u32(T.ARRAY).u32(T.UINT64).u64(100 * MB))],
      ['100M strings of 8 bytes', kvOnly((b) => b.str('k').u32(T.ARRAY).u32(T.STRING).u64(100 * MB))],
    ];
    for (const [what, head] of heads) {
      const p = join(dir, 'sparse.gguf');
      const fd = openSync(p, 'w');
      writeSync(fd, head.subarray(0, 64));
      ftruncateSync(fd, 1024 * MB);
      closeSync(fd);
      assert.throws(() => readGgufSync(p), isInvalid('HEADER_TOO_LARGE'), what);
      await assert.rejects(readGguf(p), isInvalid('HEADER_TOO_LARGE'), what);
      rmSync(p);
    }
    // 2^25 + 1 bools (all-zero bytes are valid): fits file and header limit, but not the item cap.
    const p = join(dir, 'bools.gguf');
    const fd = openSync(p, 'w');
    writeSync(fd, new HandBytes().raw(MAGIC).u32(3).u64(0).u64(1).str('k').u32(T.ARRAY).u32(T.BOOL).u64(2 ** 25 + 1).bytes());
    ftruncateSync(fd, 64 * MB);
    closeSync(fd);
    assert.throws(() => readGgufSync(p), isInvalid('COUNT_TOO_LARGE'));
    const grown = process.memoryUsage().rss - rssBefore;
    assert.ok(grown < 100 * MB, `rss grew by ${grown} bytes`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('truncation at every header offset and sampled data offsets', () => {
  const { bytes, dataOffset, lastTensorEnd } = base();
  const rssBefore = process.memoryUsage().rss;
  const headerCodes = new Set<InvalidGgufCode>(['TRUNCATED', 'COUNT_TOO_LARGE', 'STRING_TOO_LONG', 'ARRAY_TOO_LONG', 'TENSOR_OUT_OF_FILE']);
  for (let k = 0; k < dataOffset; k++) {
    assert.throws(() => parseGguf(bytes.subarray(0, k)), (e: unknown) => e instanceof InvalidGgufError && headerCodes.has(e.code), `cut at ${k}`);
  }
  for (let k = dataOffset; k < lastTensorEnd; k += 7) {
    assert.throws(() => parseGguf(bytes.subarray(0, k)), isInvalid('TENSOR_OUT_OF_FILE'), `cut at ${k}`);
  }
  // Only the last tensor's padding missing: still valid (llama.cpp checks data extents only).
  assert.equal(parseGguf(bytes.subarray(0, lastTensorEnd)).tensors.length, 2);
  // A prefix with the real file size: the header parses, but the caller gave too little.
  assert.throws(() => parseGguf(bytes.subarray(0, 40), bytes.length), isInvalid('TRUNCATED'));
  // The same through real files (the buffered reader), every 5th header offset.
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-corrupt-'));
  try {
    for (let k = 0; k < dataOffset; k += 5) {
      const p = join(dir, `cut${k}.gguf`);
      writeFileSync(p, bytes.subarray(0, k));
      assert.throws(() => readGgufSync(p), (e: unknown) => e instanceof InvalidGgufError && headerCodes.has(e.code), `file cut at ${k}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const grown = process.memoryUsage().rss - rssBefore;
  assert.ok(grown < 100 * MB, `rss grew by ${grown} bytes`);
});

test('random byte flips and overwrites in the header: valid or InvalidGgufError, never another error', () => {
  const { bytes, dataOffset } = base();
  const rssBefore = process.memoryUsage().rss;
  let rejected = 0;
  const tryParse = (c: Uint8Array) => {
    try {
      parseGguf(c);
    } catch (e) {
      if (!(e instanceof InvalidGgufError)) throw e;
      rejected++;
    }
  };
  // Every header byte: xor 0xff, set to 0, set to 0x80 (high byte of a length = 2^63).
  for (let i = 0; i < dataOffset; i++) {
    for (const v of [bytes[i]! ^ 0xff, 0, 0x80, 0x7f]) {
      const c = bytes.slice();
      c[i] = v;
      tryParse(c);
    }
  }
  // Seeded random multi-byte damage.
  let x = 12345;
  const rnd = () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) / 2 ** 32; };
  for (let iter = 0; iter < 3000; iter++) {
    const c = bytes.slice();
    const n = 1 + Math.floor(rnd() * 4);
    for (let j = 0; j < n; j++) c[Math.floor(rnd() * dataOffset)] = Math.floor(rnd() * 256);
    tryParse(c);
  }
  assert.ok(rejected > 1000, `most corruptions are caught (${rejected})`);
  const grown = process.memoryUsage().rss - rssBefore;
  assert.ok(grown < 100 * 1024 * 1024, `rss grew by ${grown} bytes`);
});
