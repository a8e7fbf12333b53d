import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, openSync, closeSync, ftruncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseGguf, readGguf, readGgufSync } from './reader.js';
import { layoutGguf, writeGguf } from './writer.js';
import { GgufValueType, gv, type GgufValue } from './value.js';
import { GgmlType } from './ggml-type.js';
import { HandBytes, handGguf } from './test-bytes.js';
import { InvalidGgufError } from '../errors.js';

const T = GgufValueType;

/** A hand-assembled v3 file with every value type, alignment 64, two tensors. */
function handFile(version = 3): { bytes: Uint8Array; headerEnd: number } {
  const kv = (b: HandBytes) => {
    b.str('general.architecture').u32(T.STRING).str('llama');
    b.str('t.u8').u32(T.UINT8).u8(200);
    b.str('t.i8').u32(T.INT8).u8(-5);
    b.str('t.u16').u32(T.UINT16).u16(65535);
    b.str('t.i16').u32(T.INT16).u16(-300);
    b.str('t.u32').u32(T.UINT32).u32(4000000000);
    b.str('t.i32').u32(T.INT32).u32(-7);
    b.str('t.f32').u32(T.FLOAT32).f32(1.5);
    b.str('t.bool').u32(T.BOOL).u8(1);
    b.str('t.u64').u32(T.UINT64).u64(2n ** 60n + 1n);
    b.str('t.i64big').u32(T.INT64).u64(-(2n ** 62n));
    b.str('t.i64').u32(T.INT64).u64(-3n);
    b.str('t.f64').u32(T.FLOAT64).f64(Math.PI);
    b.str('t.str').u32(T.STRING).str('héllo 🌍 世界');
    b.str('t.u32arr').u32(T.ARRAY).u32(T.UINT32).u64(3).u32(1).u32(2).u32(3);
    b.str('t.strarr').u32(T.ARRAY).u32(T.STRING).u64(3).str('a').str('').str('ü');
    b.str('t.nested').u32(T.ARRAY).u32(T.ARRAY).u64(2);
    b.u32(T.INT8).u64(2).u8(1).u8(-1);
    b.u32(T.STRING).u64(1).str('x');
    b.str('t.empty').u32(T.ARRAY).u32(T.FLOAT32).u64(0);
    b.str('t.boolarr').u32(T.ARRAY).u32(T.BOOL).u64(2).u8(1).u8(0);
    b.str('general.alignment').u32(T.UINT32).u32(64);
  };
  const data = new HandBytes();
  for (let i = 0; i < 48; i++) data.u8(i); // tok_embd f32 [4, 3]
  data.pad(64);
  for (let i = 0; i < 72; i++) data.u8(255 - i); // blk.0.w q4_0 [64, 2]: 2 rows x 2 blocks x 18
  data.pad(64);
  const noData = handGguf({ version, kvCount: 20, kv, alignment: 1, tensors: tensorsSpec });
  const bytes = handGguf({ version, kvCount: 20, kv, alignment: 64, tensors: tensorsSpec, data: data.bytes() });
  return { bytes, headerEnd: noData.length };
}

const tensorsSpec = [
  { name: 'tok_embd', dims: [4, 3], type: GgmlType.F32, offset: 0 },
  { name: 'blk.0.w', dims: [64, 2], type: GgmlType.Q4_0, offset: 64 },
];

test('hand-built v3 file parses to the expected values', () => {
  const { bytes, headerEnd } = handFile();
  const f = parseGguf(bytes);
  assert.equal(f.version, 3);
  assert.equal(f.alignment, 64);
  assert.equal(f.dataOffset, Math.ceil(headerEnd / 64) * 64);
  assert.equal(f.fileSize, bytes.length);
  assert.equal(f.architecture, 'llama');
  assert.equal(f.get('t.u8'), 200);
  assert.equal(f.get('t.i8'), -5);
  assert.equal(f.get('t.u16'), 65535);
  assert.equal(f.get('t.i16'), -300);
  assert.equal(f.get('t.u32'), 4000000000);
  assert.equal(f.get('t.i32'), -7);
  assert.equal(f.get('t.f32'), 1.5);
  assert.equal(f.get('t.bool'), true);
  assert.equal(f.get('t.u64'), 2n ** 60n + 1n);
  assert.equal(f.get('t.i64big'), -(2n ** 62n));
  assert.equal(f.get('t.i64'), -3);
  assert.equal(f.get('t.f64'), Math.PI);
  assert.equal(f.get('t.str'), 'héllo 🌍 世界');
  assert.deepEqual(f.get('t.u32arr'), [1, 2, 3]); // short numeric arrays are number[]
  assert.deepEqual(f.get('t.strarr'), ['a', '', 'ü']);
  assert.deepEqual(f.get('t.nested'), [[1, -1], ['x']]);
  assert.deepEqual(f.get('t.empty'), []);
  assert.deepEqual(f.metadata.get('t.u32arr'), { type: T.ARRAY, value: { itemType: T.UINT32, items: new Uint32Array([1, 2, 3]) } });
  assert.deepEqual(f.get('t.boolarr'), [true, false]);
  assert.equal(f.get('missing'), undefined);
  // on-disk types are kept
  assert.deepEqual(f.metadata.get('t.i16'), { type: T.INT16, value: -300 });
  assert.deepEqual(f.metadata.get('t.u64'), { type: T.UINT64, value: 2n ** 60n + 1n });
  assert.deepEqual([...f.metadata.keys()].slice(0, 3), ['general.architecture', 't.u8', 't.i8']);

  assert.equal(f.tensors.length, 2);
  assert.deepEqual(f.tensor('tok_embd'), {
    name: 'tok_embd', type: GgmlType.F32, dims: [4, 3], offset: 0, fileOffset: f.dataOffset, numElements: 12, byteSize: 48,
  });
  assert.deepEqual(f.tensor('blk.0.w'), {
    name: 'blk.0.w', type: GgmlType.Q4_0, dims: [64, 2], offset: 64, fileOffset: f.dataOffset + 64, numElements: 128, byteSize: 72,
  });
  assert.equal(bytes[f.tensor('blk.0.w')!.fileOffset], 255);
  assert.equal(f.tensor('nope'), undefined);
});

test('typed getters', () => {
  const f = parseGguf(handFile().bytes);
  assert.equal(f.getString('t.str'), 'héllo 🌍 世界');
  assert.equal(f.getString('missing'), undefined);
  assert.equal(f.getString('missing', 'dflt'), 'dflt');
  assert.equal(f.getNumber('t.u32'), 4000000000);
  assert.equal(f.getNumber('t.i64'), -3);
  assert.equal(f.getNumber('missing', 7), 7);
  assert.deepEqual(f.getStringArray('t.strarr'), ['a', '', 'ü']);
  assert.deepEqual(f.getArray('t.u32arr'), [1, 2, 3]);
  const code = (fn: () => unknown, c: string) =>
    assert.throws(fn, (e: unknown) => e instanceof InvalidGgufError && e.code === c);
  code(() => f.getString('t.u32'), 'WRONG_VALUE_TYPE');
  code(() => f.getNumber('t.str'), 'WRONG_VALUE_TYPE');
  code(() => f.getNumber('t.u64'), 'BAD_VALUE'); // 2^60+1 is not exact as a number
  code(() => f.getArray('t.str'), 'WRONG_VALUE_TYPE');
  code(() => f.getStringArray('t.u32arr'), 'WRONG_VALUE_TYPE');
});

test('v2 parses the same as v3', () => {
  const f2 = parseGguf(handFile(2).bytes);
  const f3 = parseGguf(handFile(3).bytes);
  assert.equal(f2.version, 2);
  assert.deepEqual(f2.metadata, f3.metadata);
  assert.deepEqual(f2.tensors, f3.tensors);
});

test('writer output equals the hand-built bytes', async () => {
  const md: Array<[string, GgufValue]> = [
    ['general.architecture', gv.str('llama')],
    ['t.u8', gv.u8(200)],
    ['t.i8', gv.i8(-5)],
    ['t.u16', gv.u16(65535)],
    ['t.i16', gv.i16(-300)],
    ['t.u32', gv.u32(4000000000)],
    ['t.i32', gv.i32(-7)],
    ['t.f32', gv.f32(1.5)],
    ['t.bool', gv.bool(true)],
    ['t.u64', gv.u64(2n ** 60n + 1n)],
    ['t.i64big', gv.i64(-(2n ** 62n))],
    ['t.i64', gv.i64(-3)],
    ['t.f64', gv.f64(Math.PI)],
    ['t.str', gv.str('héllo 🌍 世界')],
    ['t.u32arr', gv.arr(T.UINT32, [1, 2, 3])],
    ['t.strarr', gv.strArr(['a', '', 'ü'])],
    ['t.nested', gv.arr(T.ARRAY, [{ itemType: T.INT8, items: new Int8Array([1, -1]) }, { itemType: T.STRING, items: ['x'] }])],
    ['t.empty', gv.f32Arr([])],
    ['t.boolarr', gv.arr(T.BOOL, [true, false])],
  ];
  const { bytes } = handFile();
  const f = parseGguf(bytes);
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-gguf-'));
  try {
    const out = join(dir, 'w.gguf');
    const tensors = f.tensors.map((t) => ({ name: t.name, type: t.type, dims: t.dims, data: bytes.slice(t.fileOffset, t.fileOffset + t.byteSize) }));
    await writeGguf(out, md, tensors, { alignment: 64 });
    const { readFileSync } = await import('node:fs');
    assert.deepEqual(new Uint8Array(readFileSync(out)), bytes);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readGgufSync and readGguf read a real file; a large header grows the read', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-gguf-'));
  try {
    const p = join(dir, 'a.gguf');
    writeFileSync(p, handFile().bytes);
    const s = readGgufSync(p);
    const a = await readGguf(p);
    assert.equal(s.path, p);
    assert.deepEqual(a.metadata, parseGguf(handFile().bytes).metadata);
    assert.deepEqual(s.tensors, a.tensors);

    // A 3 MiB vocabulary: more than the first 1 MiB read.
    const tokens = Array.from({ length: 200_000 }, (_, i) => `tok${i}_`.padEnd(10, 'x'));
    const big = join(dir, 'big.gguf');
    await writeGguf(big, [['tokenizer.ggml.tokens', gv.strArr(tokens)]], [{ name: 'w', type: GgmlType.F32, dims: [2], data: new Uint8Array(8) }]);
    const fb = readGgufSync(big);
    assert.deepEqual(fb.getStringArray('tokenizer.ggml.tokens'), tokens);
    assert.deepEqual((await readGguf(big)).tensors, fb.tensors);
    assert.throws(() => readGgufSync(big, { maxMetadataBytes: 1 << 20 }), (e: unknown) => e instanceof InvalidGgufError && e.code === 'HEADER_TOO_LARGE');
    await assert.rejects(readGguf(big, { maxMetadataBytes: 1 << 20 }), (e: unknown) => e instanceof InvalidGgufError && e.code === 'HEADER_TOO_LARGE');

    // One item larger than a read window (6 MB array) between small ones.
    const scores = Float32Array.from({ length: 1_500_000 }, (_, i) => i * 0.5);
    const wide = join(dir, 'wide.gguf');
    await writeGguf(wide, [['a', gv.str('x'.repeat(1000))], ['s', gv.f32Arr(scores)], ['z', gv.u8(7)]], []);
    for (const fw of [readGgufSync(wide), await readGguf(wide)]) {
      assert.deepEqual(fw.get('s'), scores);
      assert.equal(fw.get('z'), 7);
      assert.equal(fw.get('a'), 'x'.repeat(1000));
    }

    assert.throws(() => readGgufSync(join(dir, 'missing.gguf')), /cannot read/);
    await assert.rejects(readGguf(join(dir, 'missing.gguf')), /cannot read/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a sparse 10 GB file opens without reading its data', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-gguf-'));
  try {
    // 4096-aligned like the synth; 5 GB of q8_0 per tensor (only the header is real bytes).
    const tensors = [
      { name: 'a', type: GgmlType.Q8_0, dims: [65536, 77_000] },
      { name: 'b', type: GgmlType.Q8_0, dims: [65536, 77_000] },
    ];
    const lay = layoutGguf([['general.architecture', gv.str('llama')]], tensors, { alignment: 4096 });
    assert.ok(lay.fileSize > 10e9);
    const p = join(dir, 'sparse.gguf');
    const fd = openSync(p, 'w');
    try {
      writeSync(fd, lay.header);
      ftruncateSync(fd, lay.fileSize);
    } finally {
      closeSync(fd);
    }
    const f = readGgufSync(p);
    assert.equal(f.fileSize, lay.fileSize);
    assert.equal(f.tensors[1]!.byteSize, (65536 / 32) * 34 * 77_000);
    assert.equal(f.tensors[1]!.fileOffset % 4096, 0);
    assert.equal(f.tensors[1]!.fileOffset, lay.dataOffset + lay.offsets[1]!);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('strings decode like TextDecoder, valid or not (random bytes, tokens, emoji)', () => {
  let x = 99;
  const rnd = (n: number) => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) % n; };
  const enc = new TextEncoder();
  const samples: Uint8Array[] = ['', 'Ġthe', 'é', '世界', '🌍x', '\u0000', 'a'.repeat(48), 'ü'.repeat(30), '\uffff'].map((s) => enc.encode(s));
  const pieces = [[0xc3, 0xa9], [0xe4, 0xb8, 0x96], [0xf0, 0x9f, 0x8c, 0x8d], [0x41], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe0, 0x80, 0x80], [0xff], [0xc3], [0xf0, 0x9f]];
  for (let i = 0; i < 3000; i++) {
    const parts: number[] = [];
    const n = rnd(12);
    for (let j = 0; j < n; j++) parts.push(...(rnd(3) === 0 ? [rnd(256)] : pieces[rnd(pieces.length)]!));
    samples.push(Uint8Array.from(parts));
  }
  const b = new HandBytes();
  b.str('s').u32(T.ARRAY).u32(T.STRING).u64(samples.length);
  for (const s of samples) b.u64(s.length).raw(s);
  const f = parseGguf(handGguf({ kvCount: 1, kv: (h) => h.raw(b.bytes()), tensors: [] }));
  const got = f.getStringArray('s')!;
  const dec = new TextDecoder('utf-8');
  for (const [i, s] of samples.entries()) assert.equal(got[i], dec.decode(s), `sample ${i}: ${[...s].map((v) => v.toString(16))}`);
});

test('get(): short numeric arrays are number[], long ones typed arrays; 64-bit items exact', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-gguf-'));
  try {
    const p = join(dir, 'arrays.gguf');
    await writeGguf(p, [
      ['kv_heads', gv.arr(T.UINT32, Array.from({ length: 1024 }, (_, i) => i % 8))],
      ['scores', gv.f32Arr(new Float32Array(1025).fill(0.5))],
      ['u64s', gv.arr(T.UINT64, [1n, 2n ** 60n])],
      ['i64s', gv.arr(T.INT64, new BigInt64Array(2000).fill(-1n))],
    ], []);
    const f = readGgufSync(p);
    const kv = f.get('kv_heads');
    assert.ok(Array.isArray(kv) && kv.length === 1024 && kv[9] === 1);
    assert.ok(f.get('scores') instanceof Float32Array);
    assert.deepEqual(f.get('u64s'), [1, 2n ** 60n]);
    assert.ok(f.get('i64s') instanceof BigInt64Array);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
