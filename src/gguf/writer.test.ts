import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync } from './reader.js';
import { writeGguf, type GgufWriteTensor } from './writer.js';
import { GgufValueType, gv, type GgufValue } from './value.js';
import { GgmlType, allGgmlTypes } from './ggml-type.js';
import { InvalidGgufError } from '../errors.js';

const T = GgufValueType;

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'flexinfer-ggufw-'));
}

/** Deterministic pseudo-random bytes (xorshift32). */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Metadata exercising every value type, edge values, nesting, empties and unicode. */
function everyValue(): Array<[string, GgufValue]> {
  return [
    ['general.architecture', gv.str('llama')],
    ['v.u8', gv.u8(255)],
    ['v.i8', gv.i8(-128)],
    ['v.u16', gv.u16(65535)],
    ['v.i16', gv.i16(-32768)],
    ['v.u32', gv.u32(0xffffffff)],
    ['v.i32', gv.i32(-0x80000000)],
    ['v.f32', gv.f32(Math.fround(-1.2345e-7))],
    ['v.f64', gv.f64(-Number.MAX_VALUE)],
    ['v.f32.nan', gv.f32(NaN)],
    ['v.bool.t', gv.bool(true)],
    ['v.bool.f', gv.bool(false)],
    ['v.u64.max', gv.u64(2n ** 64n - 1n)],
    ['v.u64.small', gv.u64(12345)],
    ['v.i64.min', gv.i64(-(2n ** 63n))],
    ['v.i64.beyond53', gv.i64(2n ** 53n + 1n)],
    ['v.str.empty', gv.str('')],
    ['v.str.unicode', gv.str('Grüße, 世界 🌍 \u0000 tab\t')],
    ['v.arr.u8', gv.arr(T.UINT8, [0, 1, 255])],
    ['v.arr.i8', gv.arr(T.INT8, [-128, 127])],
    ['v.arr.u16', gv.arr(T.UINT16, [65535])],
    ['v.arr.i16', gv.arr(T.INT16, [-1, 2])],
    ['v.arr.u32', gv.arr(T.UINT32, [4e9])],
    ['v.arr.i32', gv.i32Arr([-5, 6, 7])],
    ['v.arr.f32', gv.f32Arr(new Float32Array([0.5, -0, Infinity]))],
    ['v.arr.f64', gv.arr(T.FLOAT64, [Math.E])],
    ['v.arr.u64', gv.arr(T.UINT64, [2n ** 63n, 1n])],
    ['v.arr.i64', gv.arr(T.INT64, [-(2n ** 60n), 3])],
    ['v.arr.bool', gv.arr(T.BOOL, [true, false, true])],
    ['v.arr.str', gv.strArr(['', 'ü', '<|im_start|>', 'Ġthe'])],
    ['v.arr.empty.str', gv.strArr([])],
    ['v.arr.empty.f32', gv.f32Arr([])],
    ['v.arr.empty.arr', gv.arr(T.ARRAY, [])],
    ['v.arr.nested', gv.arr(T.ARRAY, [
      { itemType: T.ARRAY, items: [{ itemType: T.STRING, items: ['deep'] }, { itemType: T.BOOL, items: [] }] },
      { itemType: T.ARRAY, items: [] },
    ])],
  ];
}

/** One tensor of every ggml type, random data, some multi-dimensional. */
function everyTensor(): GgufWriteTensor[] {
  return allGgmlTypes().map((info, i) => {
    const dims = i % 3 === 0 ? [info.blockSize * 2, 3] : i % 3 === 1 ? [info.blockSize, 2, 2] : [info.blockSize * 3];
    const n = dims.reduce((a, b) => a * b, 1);
    const bytes = randomBytes((n / info.blockSize) * info.typeSize, i + 1);
    return { name: `t.${info.name}`, type: info.type, dims, data: i % 2 === 0 ? bytes : () => Promise.resolve(bytes) };
  });
}

async function dataOf(t: GgufWriteTensor): Promise<Uint8Array> {
  return typeof t.data === 'function' ? await t.data() : t.data;
}

for (const version of [2, 3] as const) {
  for (const alignment of [undefined, 1, 64, 4096]) {
    test(`round trip v${version}, alignment ${alignment ?? 'default'}: every value type and every tensor type`, async () => {
      const dir = tmp();
      try {
        const p = join(dir, 'rt.gguf');
        const md = everyValue();
        const tensors = everyTensor();
        await writeGguf(p, md, tensors, { version, alignment });
        const f = readGgufSync(p);
        const a = alignment ?? 32;
        assert.equal(f.version, version);
        assert.equal(f.alignment, a);
        const expectedMd = new Map(md);
        if (alignment !== undefined) expectedMd.set('general.alignment', gv.u32(alignment));
        assert.deepEqual(f.metadata, expectedMd);
        const file = readFileSync(p);
        assert.equal(f.tensors.length, tensors.length);
        for (const [i, t] of tensors.entries()) {
          const r = f.tensors[i]!;
          assert.equal(r.name, t.name);
          assert.equal(r.type, t.type);
          assert.deepEqual(r.dims, t.dims);
          assert.equal(r.fileOffset % a, 0);
          assert.deepEqual(new Uint8Array(file.subarray(r.fileOffset, r.fileOffset + r.byteSize)), await dataOf(t));
        }
        // Rewriting what was read gives the same bytes.
        const p2 = join(dir, 'rt2.gguf');
        await writeGguf(p2, f.metadata, f.tensors.map((t) => ({ ...t, data: file.subarray(t.fileOffset, t.fileOffset + t.byteSize) })), { version });
        assert.ok(readFileSync(p2).equals(file), 'rewrite is byte-identical');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}

test('llama.cpp\'s GGUF reader (node-llama-cpp) reads what the writer wrote', async () => {
  const { readGgufFileInfo } = await import('node-llama-cpp');
  const dir = tmp();
  try {
    const p = join(dir, 'ref.gguf');
    const tensors = everyTensor().filter((t) => [GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.BF16].includes(t.type));
    await writeGguf(p, [
      ['general.architecture', gv.str('llama')],
      ['llama.block_count', gv.u32(2)],
      ['llama.rope.freq_base', gv.f32(500000)],
      ['x.big', gv.u64(2n ** 60n + 1n)],
      ['tokenizer.ggml.tokens', gv.strArr(['<s>', 'ü', 'Ġthe'])],
      ['tokenizer.ggml.scores', gv.f32Arr([0, -1.5, 2])],
    ], tensors, { alignment: 64 });
    const info = await readGgufFileInfo(p, { readTensorInfo: true });
    const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
    assert.equal(info.version, 3);
    assert.equal(md.general!.architecture, 'llama');
    assert.equal(md.general!.alignment, 64);
    assert.equal((md.llama as Record<string, unknown>).block_count, 2);
    assert.equal(((md.llama as Record<string, Record<string, unknown>>).rope!).freq_base, 500000);
    assert.equal(BigInt(md.x!.big as bigint), 2n ** 60n + 1n);
    assert.deepEqual([...((md.tokenizer as Record<string, Record<string, unknown[]>>).ggml!.tokens!)], ['<s>', 'ü', 'Ġthe']);
    assert.deepEqual([...((md.tokenizer as Record<string, Record<string, number[]>>).ggml!.scores!)], [0, -1.5, 2]);
    const mine = readGgufSync(p);
    const theirs = info.fullTensorInfo ?? info.tensorInfo ?? [];
    assert.equal(theirs.length, tensors.length);
    for (const [i, t] of theirs.entries()) {
      assert.equal(t.name, mine.tensors[i]!.name);
      assert.deepEqual(t.dimensions.map(Number), mine.tensors[i]!.dims);
      assert.equal(t.ggmlType, mine.tensors[i]!.type);
      assert.equal(Number(t.offset), mine.tensors[i]!.offset);
      assert.equal(Number(t.fileOffset), mine.tensors[i]!.fileOffset);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('data is fetched lazily, in order; progress reaches the file size', async () => {
  const dir = tmp();
  try {
    const order: string[] = [];
    const tensors: GgufWriteTensor[] = ['a', 'b', 'c'].map((name) => ({
      name, type: GgmlType.F32, dims: [5], data: () => { order.push(name); return new Uint8Array(20).fill(name.charCodeAt(0)); },
    }));
    const progress: Array<[number, number]> = [];
    const p = join(dir, 'lazy.gguf');
    await writeGguf(p, [], tensors, { onProgress: (d, t) => progress.push([d, t]) });
    assert.deepEqual(order, ['a', 'b', 'c']);
    const size = readFileSync(p).length;
    assert.deepEqual(progress.at(-1), [size, size]);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i]![0] > progress[i - 1]![0]);
    // 3 tensors of 20 bytes, each padded to 32: the file ends with the last tensor's padding.
    const f = readGgufSync(p);
    assert.equal(size, f.dataOffset + 96);
    assert.deepEqual(f.tensors.map((t) => t.offset), [0, 32, 64]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('wrong data length, abort: error, and neither the file nor a temp file remains', async () => {
  const dir = tmp();
  try {
    const p = join(dir, 'bad.gguf');
    await assert.rejects(
      writeGguf(p, [], [{ name: 'a', type: GgmlType.Q8_0, dims: [64], data: new Uint8Array(67) }]),
      (e: unknown) => e instanceof InvalidGgufError && e.code === 'BAD_DATA' && /needs 68 bytes/.test(e.message),
    );
    const ac = new AbortController();
    await assert.rejects(
      writeGguf(p, [], [
        { name: 'a', type: GgmlType.F32, dims: [4], data: () => { ac.abort(); return new Uint8Array(16); } },
        { name: 'b', type: GgmlType.F32, dims: [4], data: new Uint8Array(16) },
      ], { signal: ac.signal }),
      (e: unknown) => (e as Error).name === 'AbortError',
    );
    assert.equal(existsSync(p), false);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad writer input is rejected before writing', async () => {
  const dir = tmp();
  const p = join(dir, 'x.gguf');
  const f32 = (name: string, dims: number[]) => ({ name, type: GgmlType.F32, dims, data: new Uint8Array(4 * dims.reduce((a, b) => a * b, 1)) });
  const cases: Array<[string, Parameters<typeof writeGguf>[1], GgufWriteTensor[], Parameters<typeof writeGguf>[3]]> = [
    ['DUPLICATE_TENSOR', [], [f32('a', [1]), f32('a', [1])], {}],
    ['BAD_NAME', [], [f32('x'.repeat(64), [1])], {}],
    ['BAD_NAME', [], [f32('', [1])], {}],
    ['BAD_DIMS', [], [f32('a', [])], {}],
    ['BAD_DIMS', [], [f32('a', [1, 1, 1, 1, 1])], {}],
    ['BAD_DIMS', [], [f32('a', [0])], {}],
    ['BAD_DIMS', [], [{ name: 'q', type: GgmlType.Q4_K, dims: [128], data: new Uint8Array(0) }], {}],
    ['DIMS_OVERFLOW', [], [{ name: 'q', type: GgmlType.F32, dims: [2 ** 30, 2 ** 30, 2 ** 30], data: new Uint8Array(0) }], {}],
    ['UNKNOWN_TYPE', [], [{ name: 'q', type: 4 as GgmlType, dims: [32], data: new Uint8Array(0) }], {}],
    ['DUPLICATE_KEY', [['k', gv.u8(1)], ['k', gv.u8(2)]], [], {}],
    ['BAD_KEY', [['', gv.u8(1)]], [], {}],
    ['BAD_VALUE', [['k', { type: T.UINT8, value: 256 }]], [], {}],
    ['BAD_VALUE', [['k', { type: T.UINT32, value: 1.5 }]], [], {}],
    ['BAD_VALUE', [['k', { type: T.UINT64, value: -1n }]], [], {}],
    ['BAD_VALUE', [['k', { type: T.STRING, value: 5 as unknown as string }]], [], {}],
    ['UNKNOWN_VALUE_TYPE', [['k', { type: 13, value: 0 } as unknown as GgufValue]], [], {}],
    ['BAD_ALIGNMENT', [], [], { alignment: 48 }],
    ['BAD_ALIGNMENT', [['general.alignment', gv.u32(64)]], [], { alignment: 32 }],
    ['BAD_ALIGNMENT', [['general.alignment', gv.u64(64)]], [], {}],
    ['UNSUPPORTED_VERSION', [], [], { version: 1 as 2 }],
  ];
  try {
    for (const [code, md, tensors, opts] of cases) {
      await assert.rejects(writeGguf(p, md, tensors, opts), (e: unknown) => e instanceof InvalidGgufError && e.code === code, code);
    }
    assert.deepEqual(readdirSync(dir), []);
    // gv constructors range-check where the value is made
    assert.throws(() => gv.u8(256), RangeError);
    assert.throws(() => gv.i32(2 ** 31), RangeError);
    assert.throws(() => gv.u64(-1), RangeError);
    assert.throws(() => gv.u64(2 ** 60), RangeError); // unsafe number: pass a bigint
    assert.throws(() => gv.arr(T.INT16, [1, 40000]), RangeError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
