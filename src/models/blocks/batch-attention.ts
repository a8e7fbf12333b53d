/**
 * Attention of a whole batch in one kernel call per layer, for each kind of KV cache:
 *
 * - dense caches (vtensor, contiguous): each run's new K/V rows are stored into its sequence's
 *   contiguous K/V, then one attentionBatch call covers every run's query rows;
 * - paged caches (vLLM's PagedAttention): the rows are scattered into their blocks through
 *   slot numbers (block * 16 + offset, vLLM's slot_mapping), then one pagedAttention call
 *   walks every sequence's block table.
 *
 * Both kernels run the same per-head code as the single-sequence kernel, so logits are
 * bitwise equal whatever the layout and however the batch is split.
 *
 * The runs are consecutive views of the forward pass's scratch rows (Transformer.splitRuns), so
 * the whole batch's q / k / v / att / positions are one view each. What only depends on the
 * batch and the block tables (slots, tables) is computed once per forward pass and reused by
 * every layer (the runs array is the forward pass's identity).
 * @internal
 */
import { isPagedKvCache, type KvCache, type PagedKvCache } from '../../kv/cache.js';
import type { SeqRun } from '../transformer.js';
import { attentionBatch, pagedAttention, pagedStoreKv, PAGED_BLOCK_TOKENS, storeKv } from '../../native/index.js';
import type { AttentionOptions } from './attention.js';

/** The batch's rows as one view per scratch buffer. */
interface BatchRows {
  m: number;
  q: Float32Array; // [m, qDim]
  k: Float32Array; // [m, kvDim]
  v: Float32Array; // [m, kvDim]
  att: Float32Array; // [m, qDim]
  positions: Int32Array; // [m]
  rowSeqs: Int32Array; // [m] index of the row's run
}

/** BatchRows plus the paged layout's slot numbers and block tables. */
interface PagedBatch extends BatchRows {
  slots: Int32Array; // [m] block * 16 + offset of each row's position
  tables: Int32Array; // [runs, stride] block ids
  stride: number;
}

const batches = new WeakMap<readonly SeqRun[], BatchRows | PagedBatch>();

/** One view over the consecutive views parts (they must follow each other in one buffer). */
function joined<T extends Float32Array | Int32Array>(parts: T[], make: (b: ArrayBufferLike, off: number, n: number) => T): T {
  const first = parts[0]!;
  let n = 0;
  for (const p of parts) {
    if (p.buffer !== first.buffer || p.byteOffset !== first.byteOffset + n * first.BYTES_PER_ELEMENT) {
      throw new Error('batch attention: the runs are not consecutive rows of one buffer (bug)');
    }
    n += p.length;
  }
  return make(first.buffer, first.byteOffset, n);
}

function batchRows(runs: readonly SeqRun[]): BatchRows {
  const f32 = (b: ArrayBufferLike, off: number, n: number) => new Float32Array(b, off, n);
  const m = runs.reduce((n, r) => n + r.n, 0);
  const rowSeqs = new Int32Array(m);
  let row = 0;
  runs.forEach((r, i) => rowSeqs.fill(i, row, (row += r.n)));
  return {
    m,
    q: joined(runs.map((r) => r.q), f32),
    k: joined(runs.map((r) => r.k), f32),
    v: joined(runs.map((r) => r.v), f32),
    att: joined(runs.map((r) => r.att), f32),
    positions: joined(runs.map((r) => r.positions), (b, off, n) => new Int32Array(b, off, n)),
    rowSeqs,
  };
}

function pagedBatch(kv: PagedKvCache, runs: readonly SeqRun[]): PagedBatch {
  const rows = batchRows(runs);
  const B = PAGED_BLOCK_TOKENS;
  const stride = Math.max(1, ...runs.map((r) => kv.blockTable(r.seq).length));
  const tables = new Int32Array(runs.length * stride);
  const slots = new Int32Array(rows.m);
  let row = 0;
  runs.forEach((r, i) => {
    const table = kv.blockTable(r.seq);
    tables.set(table, i * stride);
    for (let j = 0; j < r.n; j++, row++) {
      const p = r.positions[j]!;
      if (p >> 4 >= table.length) throw new RangeError(`sequence ${r.seq}: position ${p} has no block (the cache holds ${table.length * B} positions; ensure() first)`);
      slots[row] = table[p >> 4]! * B + (p & (B - 1));
    }
  });
  return { ...rows, slots, tables, stride };
}

/**
 * Stores every run's new K/V rows in the cache and computes the batch's attention into the
 * runs' att rows, one kernel call for the layer.
 */
export function attentionOverBatch(kv: KvCache, layer: number, runs: readonly SeqRun[], a: AttentionOptions): void {
  if (runs.length === 0) return;
  if (isPagedKvCache(kv)) {
    if (kv.headDim !== a.headDim || kv.shape.kvDim !== a.numKvHeads * a.headDim) {
      throw new RangeError(`paged KV cache of ${kv.shape.kvDim / kv.headDim} heads x ${kv.headDim} does not match the model's ${a.numKvHeads} x ${a.headDim}`);
    }
    let b = batches.get(runs) as PagedBatch | undefined;
    if (b === undefined) batches.set(runs, (b = pagedBatch(kv, runs)));
    const kPool = kv.keyPool(layer);
    const vPool = kv.valuePool(layer);
    pagedStoreKv(kPool, b.k, b.m, a.numKvHeads, a.headDim, b.slots);
    pagedStoreKv(vPool, b.v, b.m, a.numKvHeads, a.headDim, b.slots);
    pagedAttention(b.att, b.q, kPool, vPool, b.m, b.positions, b.rowSeqs, b.tables, b.stride, a.numHeads, a.numKvHeads, a.headDim, a.scale, a.softcap ?? 0, a.window ?? 0);
    return;
  }
  let b = batches.get(runs);
  if (b === undefined) batches.set(runs, (b = batchRows(runs)));
  const kvDim = a.numKvHeads * a.headDim;
  const ks = runs.map((r) => kv.keys(r.seq, layer)); // each [maxContext, kvDim] f16
  const vs = runs.map((r) => kv.values(r.seq, layer));
  runs.forEach((r, i) => {
    storeKv(ks[i]!, r.k, r.n, kvDim, r.positions);
    storeKv(vs[i]!, r.v, r.n, kvDim, r.positions);
  });
  attentionBatch(b.att, b.q, ks, vs, b.m, b.positions, b.rowSeqs, a.numHeads, a.numKvHeads, a.headDim, a.scale, a.softcap ?? 0, a.window ?? 0);
}
