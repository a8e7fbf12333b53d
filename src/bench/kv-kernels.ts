/**
 * Attention kernel benchmark of `flexinfer bench --kv-sweep`: the same attention work over the
 * three KV layouts, each holding its K/V as the engine does (one layer of the model's heads).
 *
 * - vtensor: VTensorKvManager, every sequence one virtually contiguous tensor over mapped
 *   64 KiB chunks; the dense kernel (attentionBatch, one call for the batch).
 * - paged: PagedKvManager, 16-token blocks from one pool whose free queue was churned first
 *   (sequences of random lengths allocated and released in random order), so a sequence's
 *   blocks are scattered as in a server that has run a while; pagedAttention through the
 *   block tables, one call for the batch.
 * - contiguous: ContiguousKvManager max-context slots; the dense kernel.
 *
 * Decode: one query row per sequence at the last position (context 512 .. 32k, 1 or 16
 * sequences). Prefix-prefill (the paper's case): sequences that reuse a cached prefix compute
 * their new rows' attention over prefix + own rows; the reuse itself (matchPrefix + ensure:
 * chunk mapping and tail copy, block-table upkeep, or a slot copy) is timed apart.
 *
 * Every timed call starts with cold caches (a buffer the size of the reported L3 is streamed
 * first), as in a real step where the other layers' weights and K/V pass through the caches
 * between two visits of a layer. Layouts alternate inside every run; figures are medians.
 */
import { attentionBatch, pagedAttention } from '../native/index.js';
import { ContiguousKvManager, PagedKvManager, VTensorKvManager, kvPoolSize, type KvManager, type KvShape, type SeqId } from '../kv/index.js';
import { mulberry32 } from '../kv/random.js';
import { f32ToF16Array } from '../gguf/f16.js';
import { median, ratio, round } from './stats.js';

export const KERNEL_LAYOUTS = ['vtensor', 'paged', 'contiguous'] as const;
type Layout = (typeof KERNEL_LAYOUTS)[number];

/** Attention geometry of the benchmarked layer. */
export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

export interface KernelBenchOptions {
  attn: AttentionShape;
  /** Decode contexts (default 512, 4096, 16384, 32768). */
  contexts?: number[];
  /** Sequence counts (default 1, 16). */
  sequences?: number[];
  /** Prefix lengths of the prefix-prefill case (default 512, 4096, 16384). */
  prefixes?: number[];
  /** Sequences and new rows per sequence of the prefix-prefill case (default 4 x 32). */
  prefillSequences?: number;
  prefillRows?: number;
  runs: number;
  /** Skip a context whose three pools would need more bytes (default 3 GiB). */
  maxBytes?: number;
  onLog: (line: string) => void;
}

export interface DecodeKernelRow {
  context: number;
  sequences: number;
  vtensor_ms: number;
  paged_ms: number;
  contiguous_ms: number;
  /** Median over runs of paged / vtensor time (> 1: vtensor faster, as the paper's 3.15x). */
  vtensor_speedup_vs_paged: number | null;
}

export interface PrefixPrefillRow {
  prefix: number;
  sequences: number;
  new_rows: number;
  vtensor_ms: number;
  paged_ms: number;
  contiguous_ms: number;
  vtensor_speedup_vs_paged: number | null;
  /** One-time cost of taking the prefix from the cache and making room (matchPrefix + ensure), ms for all sequences. */
  vtensor_reuse_ms: number;
  paged_reuse_ms: number;
  contiguous_reuse_ms: number;
}

export interface KernelBenchResult {
  attention: AttentionShape;
  decode: DecodeKernelRow[];
  prefix_prefill: PrefixPrefillRow[];
  skipped: string[];
}

/** Streams a buffer the size of the reported L3 cache (at most 512 MiB) to evict K/V from the caches. */
class CacheEvictor {
  private readonly buf: Float64Array;
  sink = 0;
  constructor() {
    this.buf = new Float64Array(512 << 17); // 512 MiB / 8 (what getconf reports as this VM's L3)
    this.buf.fill(1);
  }
  evict(): void {
    const b = this.buf;
    let s = 0;
    for (let i = 0; i < b.length; i += 8) s += b[i]!;
    this.sink += s;
  }
}

/** Random f16 K/V rows to copy into the caches: [rows, kvDim]. */
function randomRows(rows: number, kvDim: number, seed: number): Uint16Array {
  const r = mulberry32(seed);
  return f32ToF16Array(Float32Array.from({ length: rows * kvDim }, () => r() * 2 - 1));
}

/** Writes K/V rows [from, to) of `seq` (from `src`, cycled) into any layout. */
function writeRows(m: KvManager, seq: SeqId, from: number, to: number, src: Uint16Array): void {
  const d = m.shape.kvDim;
  const srcRows = src.length / d;
  if (m instanceof PagedKvManager) {
    const table = m.blockTable(seq);
    const be = m.geometry.blockElems;
    const hd = m.headDim;
    for (let p = from; p < to; p++) {
      const s = (p % srcRows) * d;
      const base = table[p >> 4]! * be + (p & 15) * hd;
      for (let h = 0; h < m.numKvHeads; h++) {
        const row = src.subarray(s + h * hd, s + (h + 1) * hd);
        m.keyPool(0).set(row, base + h * 16 * hd);
        m.valuePool(0).set(row, base + h * 16 * hd);
      }
    }
    return;
  }
  const k = m.keys(seq, 0);
  const v = m.values(seq, 0);
  for (let p = from; p < to; ) {
    const n = Math.min(to - p, srcRows - (p % srcRows));
    const rows = src.subarray((p % srcRows) * d, (p % srcRows + n) * d);
    k.set(rows, p * d);
    v.set(rows, p * d);
    p += n;
  }
}

function tokenIds(n: number, seed: number): Uint32Array {
  return Uint32Array.from({ length: n }, (_, i) => 1 + ((i * 2654435761 + seed * 40503) >>> 8) % 30000);
}

/** A manager of the layout sized as the engine sizes it for `sequences` sequences. */
function createLayout(layout: Layout, shape: KvShape, sequences: number, headDim: number): KvManager {
  const { kvBytes, chunkBytes } = kvPoolSize(shape, sequences, layout);
  if (layout === 'vtensor') return new VTensorKvManager({ shape, capacityBytes: kvBytes, chunkBytes });
  if (layout === 'paged') return new PagedKvManager({ shape, capacityBytes: kvBytes, headDim });
  return new ContiguousKvManager({ shape, capacityBytes: kvBytes, maxSequences: sequences });
}

/** Allocates and releases sequences of random lengths until the free queue is well mixed. */
function churn(m: PagedKvManager, seed: number): void {
  const r = mulberry32(seed);
  for (let round = 0; round < 2; round++) {
    const held: SeqId[] = [];
    for (;;) {
      const s = m.createSequence()!;
      const n = Math.min(m.shape.maxContext, 1 + Math.floor(r() * 48 * 16));
      if (!m.ensure(s, n)) {
        m.release(s);
        break;
      }
      held.push(s);
    }
    while (held.length > 0) m.release(held.splice(Math.floor(r() * held.length), 1)[0]!);
  }
}

/** One decode step's attention: a query row per sequence at position length - 1. */
function decodeCall(m: KvManager, seqs: SeqId[], a: AttentionShape, q: Float32Array, out: Float32Array): () => void {
  const n = seqs.length;
  const positions = Int32Array.from(seqs, (s) => m.length(s) - 1);
  const rowSeqs = Int32Array.from(seqs, (_, i) => i);
  return attentionCall(m, seqs, a, q, out, n, positions, rowSeqs);
}

/** A closure running attention for `m` rows (row i of sequence seqs[rowSeqs[i]] at positions[i]). */
function attentionCall(m: KvManager, seqs: SeqId[], a: AttentionShape, q: Float32Array, out: Float32Array, rows: number, positions: Int32Array, rowSeqs: Int32Array): () => void {
  const scale = 1 / Math.sqrt(a.headDim);
  if (m instanceof PagedKvManager) {
    const stride = Math.max(...seqs.map((s) => m.blockTable(s).length));
    const tables = new Int32Array(seqs.length * stride);
    seqs.forEach((s, i) => tables.set(m.blockTable(s), i * stride));
    return () => pagedAttention(out, q, m.keyPool(0), m.valuePool(0), rows, positions, rowSeqs, tables, stride, a.numHeads, a.numKvHeads, a.headDim, scale);
  }
  const ks = seqs.map((s) => m.keys(s, 0));
  const vs = seqs.map((s) => m.values(s, 0));
  return () => attentionBatch(out, q, ks, vs, rows, positions, rowSeqs, a.numHeads, a.numKvHeads, a.headDim, scale);
}

/** Times each layout's call `runs` times, alternating layouts (rotated order), cold caches. */
function timeAlternating(calls: Record<Layout, () => void>, runs: number, ev: CacheEvictor): Record<Layout, number[]> {
  const times: Record<Layout, number[]> = { vtensor: [], paged: [], contiguous: [] };
  for (const l of KERNEL_LAYOUTS) calls[l](); // warm-up (scratch buffers, page tables)
  for (let r = 0; r < runs; r++) {
    for (let i = 0; i < KERNEL_LAYOUTS.length; i++) {
      const l = KERNEL_LAYOUTS[(r + i) % KERNEL_LAYOUTS.length]!;
      ev.evict();
      const t0 = performance.now();
      calls[l]();
      times[l].push(performance.now() - t0);
    }
  }
  return times;
}

function speedup(t: Record<Layout, number[]>): number | null {
  return ratio(median(t.paged.map((p, i) => p / t.vtensor[i]!)), 1);
}

/** Runs the decode and prefix-prefill kernel sweeps. */
export function runKernelBench(o: KernelBenchOptions): KernelBenchResult {
  const a = o.attn;
  const kvDim = a.numKvHeads * a.headDim;
  const qDim = a.numHeads * a.headDim;
  const contexts = o.contexts ?? [512, 4096, 16384, 32768];
  const counts = o.sequences ?? [1, 16];
  const maxBytes = o.maxBytes ?? 3 * 2 ** 30;
  const ev = new CacheEvictor();
  const src = randomRows(4096, kvDim, 7);
  const qr = mulberry32(11);
  const skipped: string[] = [];
  const decode: DecodeKernelRow[] = [];
  const n = Math.max(...counts);
  for (const ctx of contexts) {
    const bytes = 3 * n * ctx * 4 * kvDim;
    if (bytes > maxBytes) {
      skipped.push(`decode at context ${ctx}: the three pools need ${(bytes / 2 ** 30).toFixed(1)} GiB (limit ${(maxBytes / 2 ** 30).toFixed(1)} GiB)`);
      continue;
    }
    const shape: KvShape = { numLayers: 1, kvDim, maxContext: ctx };
    const managers = {} as Record<Layout, KvManager>;
    const seqs = {} as Record<Layout, SeqId[]>;
    try {
      for (const l of KERNEL_LAYOUTS) {
        const m = createLayout(l, shape, n, a.headDim);
        managers[l] = m;
        if (m instanceof PagedKvManager) churn(m, ctx);
        const ss = Array.from({ length: n }, () => m.createSequence()!);
        // Prompts arrive in 256-token chunks, sequences interleaved (continuous batching).
        for (let done = 0; done < ctx; done += 256) {
          for (const [i, s] of ss.entries()) {
            const to = Math.min(ctx, done + 256);
            if (!m.ensure(s, to)) throw new Error(`${l}: pool short while filling context ${ctx} (bug)`);
            writeRows(m, s, done, to, src);
            m.commit(s, tokenIds(to, i));
          }
        }
        seqs[l] = ss;
      }
      for (const count of counts) {
        const q = Float32Array.from({ length: count * qDim }, () => qr() * 2 - 1);
        const out = new Float32Array(count * qDim);
        const calls = {} as Record<Layout, () => void>;
        for (const l of KERNEL_LAYOUTS) calls[l] = decodeCall(managers[l], seqs[l].slice(0, count), a, q, out);
        const t = timeAlternating(calls, o.runs, ev);
        const row: DecodeKernelRow = {
          context: ctx,
          sequences: count,
          vtensor_ms: round(median(t.vtensor), 3),
          paged_ms: round(median(t.paged), 3),
          contiguous_ms: round(median(t.contiguous), 3),
          vtensor_speedup_vs_paged: speedup(t),
        };
        decode.push(row);
        o.onLog(`(k) decode attention, context ${ctx}, ${count} seq: vtensor ${row.vtensor_ms} ms, paged ${row.paged_ms} ms, contiguous ${row.contiguous_ms} ms (vtensor ${row.vtensor_speedup_vs_paged}x paged)`);
      }
    } finally {
      for (const m of Object.values(managers)) m.dispose();
    }
  }
  const prefixPrefill = runPrefixPrefill(o, ev, src, skipped);
  return { attention: a, decode, prefix_prefill: prefixPrefill, skipped };
}

/** The prefix-prefill case (see file comment). */
function runPrefixPrefill(o: KernelBenchOptions, ev: CacheEvictor, src: Uint16Array, skipped: string[]): PrefixPrefillRow[] {
  const a = o.attn;
  const kvDim = a.numKvHeads * a.headDim;
  const qDim = a.numHeads * a.headDim;
  const nSeq = o.prefillSequences ?? 4;
  const nNew = o.prefillRows ?? 32;
  const maxBytes = o.maxBytes ?? 3 * 2 ** 30;
  const qr = mulberry32(13);
  const rows: PrefixPrefillRow[] = [];
  for (const prefix of o.prefixes ?? [512, 4096, 16384]) {
    const ctx = prefix + nNew;
    const bytes = 3 * (nSeq + 2) * ctx * 4 * kvDim;
    if (bytes > maxBytes) {
      skipped.push(`prefix-prefill at prefix ${prefix}: ${(bytes / 2 ** 30).toFixed(1)} GiB`);
      continue;
    }
    const shape: KvShape = { numLayers: 1, kvDim, maxContext: ctx };
    const managers = {} as Record<Layout, KvManager>;
    const seqs = {} as Record<Layout, SeqId[]>;
    const reuseMs = {} as Record<Layout, number>;
    const prefixTokens = tokenIds(prefix, 99);
    try {
      for (const l of KERNEL_LAYOUTS) {
        // The cached prefix needs its own room next to the sequences (a parked slot for contiguous).
        const m = createLayout(l, shape, nSeq + 1, a.headDim);
        managers[l] = m;
        if (m instanceof PagedKvManager) churn(m, prefix);
        const parent = m.createSequence()!;
        if (!m.ensure(parent, prefix)) throw new Error(`${l}: pool short for the prefix (bug)`);
        writeRows(m, parent, 0, prefix, src);
        m.commit(parent, prefixTokens);
        m.release(parent, true);
        const t0 = performance.now();
        const ss: SeqId[] = [];
        for (let i = 0; i < nSeq; i++) {
          const tokens = Uint32Array.from([...prefixTokens, ...tokenIds(nNew, 1000 + i)]);
          const hit = m.matchPrefix(tokens);
          if (hit === null || hit.numTokens !== prefix) throw new Error(`${l}: prefix not reused (${hit?.numTokens ?? 0} of ${prefix} tokens) (bug)`);
          if (!m.ensure(hit.seq, ctx)) throw new Error(`${l}: pool short for the new rows (bug)`);
          ss.push(hit.seq);
        }
        reuseMs[l] = performance.now() - t0;
        for (const s of ss) writeRows(m, s, prefix, ctx, src);
        seqs[l] = ss;
      }
      const m = nSeq * nNew;
      const positions = Int32Array.from({ length: m }, (_, i) => prefix + (i % nNew));
      const rowSeqs = Int32Array.from({ length: m }, (_, i) => Math.floor(i / nNew));
      const q = Float32Array.from({ length: m * qDim }, () => qr() * 2 - 1);
      const out = new Float32Array(m * qDim);
      const calls = {} as Record<Layout, () => void>;
      for (const l of KERNEL_LAYOUTS) calls[l] = attentionCall(managers[l], seqs[l], a, q, out, m, positions, rowSeqs);
      const t = timeAlternating(calls, o.runs, ev);
      const row: PrefixPrefillRow = {
        prefix,
        sequences: nSeq,
        new_rows: nNew,
        vtensor_ms: round(median(t.vtensor), 3),
        paged_ms: round(median(t.paged), 3),
        contiguous_ms: round(median(t.contiguous), 3),
        vtensor_speedup_vs_paged: speedup(t),
        vtensor_reuse_ms: round(reuseMs.vtensor, 3),
        paged_reuse_ms: round(reuseMs.paged, 3),
        contiguous_reuse_ms: round(reuseMs.contiguous, 3),
      };
      rows.push(row);
      o.onLog(`(k) prefix-prefill, prefix ${prefix}, ${nSeq} x ${nNew} new rows: vtensor ${row.vtensor_ms} ms, paged ${row.paged_ms} ms, contiguous ${row.contiguous_ms} ms (vtensor ${row.vtensor_speedup_vs_paged}x paged); reuse ${row.vtensor_reuse_ms} / ${row.paged_reuse_ms} / ${row.contiguous_reuse_ms} ms`);
    } finally {
      for (const mm of Object.values(managers)) mm.dispose();
    }
  }
  return rows;
}
