// Paged attention and its K/V store: rows land where the block layout says (checked by hand
// arithmetic), results are bitwise those of the dense kernel over the same K/V (the layouts'
// logits must be identical) and close to the naive reference, any block order, several
// sequences in one call, rows in any order; bad tables and pools are typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { f32ToF16Array } from '../gguf/f16.js';
import { attention, attentionBatch, pagedAttention, pagedStoreKv, PAGED_BLOCK_TOKENS as B, setKernelPath } from './ops.js';
import { assertClose, attentionRef, forEachPath, randomArray, rng } from './ops-testing.js';

/** Index of element d of kv head h of token t of block b in a pool [blocks, kvHeads, 16, hd]. */
const poolIndex = (b: number, h: number, t: number, d: number, kvHeads: number, hd: number) => ((b * kvHeads + h) * B + t) * hd + d;

/** Copies dense K (or V) rows [n, kvHeads * hd] into `pool` through `table` (plain TS, no kernel). */
function scatter(pool: Uint16Array, dense: Uint16Array, n: number, table: Int32Array, kvHeads: number, hd: number): void {
  for (let j = 0; j < n; j++)
    for (let h = 0; h < kvHeads; h++)
      for (let d = 0; d < hd; d++) pool[poolIndex(table[j >> 4]!, h, j & 15, d, kvHeads, hd)] = dense[j * kvHeads * hd + h * hd + d]!;
}

/** A random permutation of [0, n). */
function shuffled(r: () => number, n: number): Int32Array {
  const a = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function bitsEqual(a: Float32Array, b: Float32Array, what: string): void {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i}: ${a[i]} vs ${b[i]}`);
}

test('pagedStoreKv writes each kv head of a row into its block run, and nothing else', () => {
  const r = rng(21);
  forEachPath((path) => {
    for (const [kvHeads, hd] of [[1, 7], [2, 16], [4, 64], [3, 33]] as const) {
      const numBlocks = 5;
      const pool = new Uint16Array(numBlocks * kvHeads * B * hd).fill(0x1234);
      const want = Uint16Array.from(pool);
      const slots = new Int32Array([3 * B + 15, 0, 4 * B + 7, B + 1]);
      const src = randomArray(r, slots.length * kvHeads * hd, 50);
      pagedStoreKv(pool, src, slots.length, kvHeads, hd, slots);
      slots.forEach((slot, i) => {
        const row = f32ToF16Array(src.subarray(i * kvHeads * hd, (i + 1) * kvHeads * hd));
        for (let h = 0; h < kvHeads; h++)
          for (let d = 0; d < hd; d++) want[poolIndex(slot >> 4, h, slot & 15, d, kvHeads, hd)] = row[h * hd + d]!;
      });
      assert.deepEqual(pool, want, `${path} kvHeads ${kvHeads} hd ${hd}`);
    }
  });
});

test('pagedAttention over shuffled blocks of several sequences, and attentionBatch over their dense K/V, are bitwise the per-sequence dense kernel', () => {
  const r = rng(22);
  // [heads, kvHeads, headDim]: the AVX-512 grouped sizes, generic sizes, MHA and GQA
  const shapes: Array<[number, number, number]> = [[4, 2, 16], [14, 2, 64], [8, 4, 128], [6, 3, 80], [3, 3, 33], [2, 1, 7], [12, 4, 48], [2, 2, 256]];
  forEachPath((path) => {
    for (const [heads, kvHeads, hd] of shapes) {
      const kvDim = kvHeads * hd, qDim = heads * hd, scale = 1 / Math.sqrt(hd);
      // Three sequences: a decode row deep in its context, a prefill run, a short one.
      const seqs = [
        { len: 150 + Math.floor(r() * 60), rows: 1 },
        { len: 40 + Math.floor(r() * 40), rows: 9 },
        { len: 1 + Math.floor(r() * 20), rows: 1 },
      ];
      const numBlocksPer = seqs.map((s) => Math.ceil(s.len / B));
      const totalBlocks = numBlocksPer.reduce((a, b) => a + b, 0) + 3; // a few unused blocks
      const perm = shuffled(r, totalBlocks);
      const stride = Math.max(...numBlocksPer) + 1; // tables padded, as vLLM's [numSeqs, maxBlocks]
      const tables = new Int32Array(seqs.length * stride).fill(-1); // padding must never be read
      const kPool = f32ToF16Array(randomArray(r, totalBlocks * kvHeads * B * hd, 1.5)); // garbage in unused blocks
      const vPool = f32ToF16Array(randomArray(r, totalBlocks * kvHeads * B * hd, 1));
      let next = 0;
      const dense = seqs.map((s, i) => {
        const table = tables.subarray(i * stride, (i + 1) * stride);
        for (let b = 0; b < numBlocksPer[i]!; b++) table[b] = perm[next++]!;
        const k = f32ToF16Array(randomArray(r, s.len * kvDim, 1.5));
        const v = f32ToF16Array(randomArray(r, s.len * kvDim, 1));
        scatter(kPool, k, s.len, table, kvHeads, hd);
        scatter(vPool, v, s.len, table, kvHeads, hd);
        const q = randomArray(r, s.rows * qDim, 1.5);
        const pos = Int32Array.from({ length: s.rows }, (_, j) => s.len - s.rows + j);
        const out = new Float32Array(s.rows * qDim);
        attention(out, q, k, v, s.rows, pos, heads, kvHeads, hd, scale);
        assertClose(out, attentionRef(q, k, v, s.rows, pos, heads, kvHeads, hd, scale), 5e-4, `${path} dense reference`);
        return { q, pos, out, k, v };
      });
      // All rows in one call, in a shuffled order.
      const rows = seqs.flatMap((s, i) => Array.from({ length: s.rows }, (_, j) => [i, j] as const));
      const order = shuffled(r, rows.length);
      const m = rows.length;
      const q = new Float32Array(m * qDim), positions = new Int32Array(m), rowTables = new Int32Array(m);
      order.forEach((o, i) => {
        const [s, j] = rows[o]!;
        q.set(dense[s]!.q.subarray(j * qDim, (j + 1) * qDim), i * qDim);
        positions[i] = dense[s]!.pos[j]!;
        rowTables[i] = s;
      });
      const out = new Float32Array(m * qDim);
      pagedAttention(out, q, kPool, vPool, m, positions, rowTables, tables, stride, heads, kvHeads, hd, scale);
      const batched = new Float32Array(m * qDim);
      attentionBatch(batched, q, dense.map((d) => d.k), dense.map((d) => d.v), m, positions, rowTables, heads, kvHeads, hd, scale);
      order.forEach((o, i) => {
        const [s, j] = rows[o]!;
        const want = dense[s]!.out.subarray(j * qDim, (j + 1) * qDim);
        bitsEqual(out.subarray(i * qDim, (i + 1) * qDim), want, `paged ${path} heads ${heads}/${kvHeads} hd ${hd} seq ${s} row ${j}`);
        bitsEqual(batched.subarray(i * qDim, (i + 1) * qDim), want, `batched ${path} heads ${heads}/${kvHeads} hd ${hd} seq ${s} row ${j}`);
      });
    }
  });
});

test('soft-capping and a sliding window: pagedAttention and attentionBatch are bitwise the dense kernel, and never read keys (nor blocks) before the window', () => {
  // K/V rows before each sequence's earliest window start are NaN (a read would spread NaN to
  // the output); the table entries of blocks wholly before it are -1 (freed blocks).
  const r = rng(24);
  const NaN16 = 0x7e00, window = 20, cap = 7;
  forEachPath((path) => {
    for (const [heads, kvHeads, hd] of [[8, 2, 64], [4, 2, 128], [3, 3, 33]] as const) {
      const kvDim = kvHeads * hd, qDim = heads * hd, scale = 1 / Math.sqrt(hd);
      const seqs = [{ len: 150, rows: 1 }, { len: 61, rows: 9 }, { len: 12, rows: 1 }];
      const stride = Math.ceil(150 / B);
      const tables = new Int32Array(seqs.length * stride).fill(-1);
      const perm = shuffled(r, seqs.length * stride);
      const kPool = new Uint16Array(perm.length * kvHeads * B * hd).fill(NaN16), vPool = Uint16Array.from(kPool);
      const dense = seqs.map((s, i) => {
        const start = Math.max(0, s.len - s.rows + 1 - window); // the earliest row's window start
        const table = tables.subarray(i * stride, (i + 1) * stride);
        for (let b = 0; b < Math.ceil(s.len / B); b++) table[b] = perm[i * stride + b]!;
        const k = f32ToF16Array(randomArray(r, s.len * kvDim, 1.5)), v = f32ToF16Array(randomArray(r, s.len * kvDim, 1));
        k.fill(NaN16, 0, start * kvDim);
        v.fill(NaN16, 0, start * kvDim);
        scatter(kPool, k, s.len, table, kvHeads, hd);
        scatter(vPool, v, s.len, table, kvHeads, hd);
        table.fill(-1, 0, Math.floor(start / B));
        const q = randomArray(r, s.rows * qDim, 3);
        const pos = Int32Array.from({ length: s.rows }, (_, j) => s.len - s.rows + j);
        const out = new Float32Array(s.rows * qDim);
        attention(out, q, k, v, s.rows, pos, heads, kvHeads, hd, scale, cap, window);
        assert.ok(out.every(Number.isFinite), `${path} dense: a key before the window was read`);
        return { q, pos, out, k, v };
      });
      const rows = seqs.flatMap((s, i) => Array.from({ length: s.rows }, (_, j) => [i, j] as const));
      const m = rows.length;
      const q = new Float32Array(m * qDim), positions = new Int32Array(m), rowTables = new Int32Array(m);
      rows.forEach(([s, j], i) => {
        q.set(dense[s]!.q.subarray(j * qDim, (j + 1) * qDim), i * qDim);
        positions[i] = dense[s]!.pos[j]!;
        rowTables[i] = s;
      });
      const paged = new Float32Array(m * qDim), batched = new Float32Array(m * qDim);
      pagedAttention(paged, q, kPool, vPool, m, positions, rowTables, tables, stride, heads, kvHeads, hd, scale, cap, window);
      attentionBatch(batched, q, dense.map((d) => d.k), dense.map((d) => d.v), m, positions, rowTables, heads, kvHeads, hd, scale, cap, window);
      rows.forEach(([s, j], i) => {
        const want = dense[s]!.out.subarray(j * qDim, (j + 1) * qDim);
        bitsEqual(paged.subarray(i * qDim, (i + 1) * qDim), want, `paged ${path} heads ${heads}/${kvHeads} hd ${hd} seq ${s} row ${j}`);
        bitsEqual(batched.subarray(i * qDim, (i + 1) * qDim), want, `batched ${path} heads ${heads}/${kvHeads} hd ${hd} seq ${s} row ${j}`);
      });
      // Without the window the same call must reach the freed blocks: the table check says so.
      assert.throws(() => pagedAttention(paged, q, kPool, vPool, m, positions, rowTables, tables, stride, heads, kvHeads, hd, scale, cap), /is not a block of the pool/);
    }
  });
});

test('pagedAttention: a sequence that shares its prefix blocks with another reads them, not copies', () => {
  // Two tables point at the same first blocks (a shared prefix): each row equals the dense
  // kernel over its own sequence's K/V (prefix + its own tail).
  const r = rng(23);
  const [heads, kvHeads, hd] = [8, 2, 64];
  const kvDim = kvHeads * hd, qDim = heads * hd;
  const prefix = 48, tail = 21;
  const kPool = new Uint16Array(10 * kvHeads * B * hd), vPool = new Uint16Array(10 * kvHeads * B * hd);
  const tables = new Int32Array([5, 1, 7, 2, 8, /* */ 5, 1, 7, 3, 9]);
  const kPre = f32ToF16Array(randomArray(r, prefix * kvDim)), vPre = f32ToF16Array(randomArray(r, prefix * kvDim));
  const outs: Float32Array[] = [], wants: Float32Array[] = [];
  const q = randomArray(r, 2 * qDim);
  for (let s = 0; s < 2; s++) {
    const k = new Uint16Array((prefix + tail) * kvDim), v = new Uint16Array((prefix + tail) * kvDim);
    k.set(kPre);
    v.set(vPre);
    k.set(f32ToF16Array(randomArray(r, tail * kvDim)), prefix * kvDim);
    v.set(f32ToF16Array(randomArray(r, tail * kvDim)), prefix * kvDim);
    scatter(kPool, k, prefix + tail, tables.subarray(s * 5, s * 5 + 5), kvHeads, hd);
    scatter(vPool, v, prefix + tail, tables.subarray(s * 5, s * 5 + 5), kvHeads, hd);
    const want = new Float32Array(qDim);
    attention(want, q.subarray(s * qDim, (s + 1) * qDim), k, v, 1, new Int32Array([prefix + tail - 1]), heads, kvHeads, hd, 0.125);
    wants.push(want);
  }
  const out = new Float32Array(2 * qDim);
  pagedAttention(out, q, kPool, vPool, 2, new Int32Array([prefix + tail - 1, prefix + tail - 1]), new Int32Array([0, 1]), tables, 5, heads, kvHeads, hd, 0.125);
  outs.push(out.subarray(0, qDim), out.subarray(qDim));
  for (let s = 0; s < 2; s++) bitsEqual(outs[s]!, wants[s]!, `sequence ${s}`);
});

test('pagedAttention, attentionBatch and pagedStoreKv reject bad pools, tables, sequences and slots', () => {
  setKernelPath('auto');
  const [heads, kvHeads, hd] = [4, 2, 8];
  const be = kvHeads * B * hd;
  const pool = new Uint16Array(3 * be);
  const q = new Float32Array(2 * heads * hd), out = new Float32Array(2 * heads * hd);
  const pos = new Int32Array([20, 5]);
  const rowT = new Int32Array([0, 1]);
  const tables = new Int32Array([2, 0, 1, 0]);
  const call = (o: Partial<{ k: Uint16Array; v: Uint16Array; pos: Int32Array; rowT: Int32Array; tables: Int32Array; stride: number }>) =>
    pagedAttention(out, q, o.k ?? pool, o.v ?? pool, 2, o.pos ?? pos, o.rowT ?? rowT, o.tables ?? tables, o.stride ?? 2, heads, kvHeads, hd, 0.3);
  assert.doesNotThrow(() => call({}));
  assert.throws(() => call({ k: pool.subarray(1) }), /kPool holds 767 elements, not a whole number of blocks of 256/);
  assert.throws(() => call({ v: pool.subarray(be) }), /vPool holds 512 elements, kPool 768/);
  assert.throws(() => call({ tables: new Int32Array([2, 3, 1, 0]) }), /tables\[1\] = 3 \(table 0, block 1\) is not a block of the pool \(3 blocks\)/);
  assert.throws(() => call({ tables: new Int32Array([2, -1, 1, 0]) }), /tables\[1\] = -1/);
  assert.throws(() => call({ pos: new Int32Array([32, 5]) }), /positions\[0\] = 32 is past the 32 tokens a table of 2 blocks holds/);
  assert.throws(() => call({ pos: new Int32Array([-1, 5]) }), /negative/);
  assert.throws(() => call({ rowT: new Int32Array([0, 2]) }), /rowTables\[1\] = 2 is not a table \(there are 2\)/);
  assert.throws(() => call({ tables: new Int32Array([2, 0, 1]) }), /not a multiple of tableStride 2/);
  assert.throws(() => call({ stride: 0 }), /tableStride must be at least 1/);
  assert.throws(() => pagedAttention(q, q, pool, pool, 2, pos, rowT, tables, 2, heads, kvHeads, hd, 0.3), /alias/);
  assert.throws(() => pagedAttention(out, q, pool, pool, 2, pos, rowT, tables, 2, heads, 3, hd, 0.3), /multiple of numKvHeads/);
  const ks = [pool.subarray(0, 21 * kvHeads * hd), pool.subarray(0, 6 * kvHeads * hd)];
  assert.doesNotThrow(() => attentionBatch(out, q, ks, ks, 2, pos, rowT, heads, kvHeads, hd, 0.3));
  assert.throws(() => attentionBatch(out, q, ks, ks, 2, new Int32Array([21, 5]), rowT, heads, kvHeads, hd, 0.3), /ks\[0\] holds 336 elements, row 0 needs 352/);
  assert.throws(() => attentionBatch(out, q, ks, ks.slice(1), 2, pos, rowT, heads, kvHeads, hd, 0.3), /ks has 2 sequences, vs 1/);
  assert.throws(() => attentionBatch(out, q, ks, ks, 2, pos, new Int32Array([0, 2]), heads, kvHeads, hd, 0.3), /rowSeqs\[1\] = 2 is not a sequence/);
  assert.throws(() => attentionBatch(out, q, [new Float32Array(4) as unknown as Uint16Array, ks[1]!], ks, 2, pos, rowT, heads, kvHeads, hd, 0.3), /ks\[0\] must be a Uint16Array/);
  assert.throws(() => pagedStoreKv(pool, new Float32Array(2 * kvHeads * hd), 2, kvHeads, hd, new Int32Array([0, 48])), /slots\[1\] = 48 is outside the pool \(3 blocks of 16 tokens\)/);
  assert.throws(() => pagedStoreKv(pool, new Float32Array(2 * kvHeads * hd - 1), 2, kvHeads, hd, new Int32Array([0, 1])), /src holds 31/);
  assert.throws(() => pagedStoreKv(pool.subarray(2), new Float32Array(kvHeads * hd), 1, kvHeads, hd, new Int32Array([0])), /not a whole number of blocks/);
});
