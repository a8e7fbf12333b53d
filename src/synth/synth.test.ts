import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GgmlType } from '../gguf/ggml-type.js';
import { dequantize } from '../gguf/quant.js';
import { readGgufSync } from '../gguf/reader.js';
import { SYNTH_TYPES, planSynth } from './plan.js';
import { llama3RopeFactors } from './presets.js';
import { synthesize } from './synth.js';
import { ggmlQuantize } from '../gguf/quant/ggml-oracle.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-synth-test-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Tensor data of a file as bytes. */
function tensorBytes(path: string, name: string): { type: GgmlType; n: number; bytes: Uint8Array } {
  const f = readGgufSync(path);
  const t = f.tensor(name)!;
  const buf = readFileSync(path);
  return { type: t.type, n: t.numElements, bytes: new Uint8Array(buf.buffer, buf.byteOffset + t.fileOffset, t.byteSize) };
}

function stats(x: Float32Array): { mean: number; std: number } {
  let s = 0;
  let s2 = 0;
  for (const v of x) {
    s += v;
    s2 += v * v;
  }
  const mean = s / x.length;
  return { mean, std: Math.sqrt(s2 / x.length - mean * mean) };
}

// Expected ggml type of each tiny-15m tensor, derived by hand from llama.cpp's rules
// (llama_tensor_get_type, mixes.ts): dim 288, ffn 768, 6 layers, 6/6 heads (n_gqa 1), tied
// token_embd (quantized as the output). Rows of 288 are not whole 256-blocks, so K-quants fall
// back (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K / Q3_K -> Q4_0, IQ4_XS -> IQ4_NL); only
// ffn_down (rows of 768 = 3 * 256) keeps its K-quant. The output's Q6_K (Q8_0 when 288 is not a
// whole block of the file's type) falls back to Q8_0 too. use_more_bits(i, 6), in C's integer
// arithmetic, is true for layers 2 ((2 - 6/8) % 3 == 2) and 5 (i >= 7*6/8 = 5); 6/8 = 0.
function expectedTiny(type: string, name: string): GgmlType {
  const G = GgmlType;
  if (!name.endsWith('.weight') || /norm|rope_freqs/.test(name)) return G.F32;
  const plain: Record<string, GgmlType> = { f32: G.F32, f16: G.F16, bf16: G.BF16, q8_0: G.Q8_0 };
  if (plain[type] !== undefined) return plain[type]!;
  const layer = Number(/^blk\.(\d+)\./.exec(name)?.[1] ?? -1);
  const more = layer === 2 || layer === 5;
  const is = (role: string) => name.endsWith(`${role}.weight`);
  if (type === 'q4_k') return is('ffn_down') ? G.Q4_K : G.Q5_0; // --pure: no output rule either
  if (is('token_embd')) return G.Q8_0;
  const legacy: Record<string, GgmlType> = { q4_0: G.Q4_0, q4_1: G.Q4_1, q5_0: G.Q5_0, q5_1: G.Q5_1, iq4_nl: G.IQ4_NL };
  if (legacy[type] !== undefined) return legacy[type]!;
  switch (type) {
    case 'q6_k': return is('ffn_down') ? G.Q6_K : G.Q8_0;
    case 'q5_k_s': return is('ffn_down') ? G.Q5_K : G.Q5_1;
    case 'q5_k_m':
      if (is('ffn_down')) return more ? G.Q6_K : G.Q5_K;
      return is('attn_v') && more ? G.Q8_0 : G.Q5_1;
    case 'q4_k_s':
      if (is('ffn_down')) return G.Q4_K; // layer < 6/8: none
      return is('attn_v') && layer < 4 ? G.Q5_1 : G.Q5_0;
    case 'q4_k_m':
      if (is('ffn_down')) return more ? G.Q6_K : G.Q4_K;
      return is('attn_v') && more ? G.Q8_0 : G.Q5_0;
    case 'iq4_xs': return is('ffn_down') ? G.IQ4_XS : G.IQ4_NL; // n_gqa < 4: attn_v keeps IQ4_XS
    case 'q3_k_s': return is('ffn_down') ? G.Q3_K : G.Q4_0;
    case 'q3_k_m':
      if (is('ffn_down')) return G.Q4_K; // layer < 6/16: none
      if (is('attn_v')) return layer < 2 ? G.Q5_1 : G.Q5_0;
      return is('attn_output') ? G.Q5_0 : G.Q4_0;
    case 'q3_k_l':
      if (is('ffn_down')) return G.Q5_K;
      return is('attn_v') || is('attn_output') ? G.Q5_1 : G.Q4_0;
    case 'q2_k':
      return is('ffn_down') ? G.Q3_K : G.Q4_0; // attn_v (n_gqa < 4) and attn_output: Q3_K -> Q4_0
    default: throw new Error(`no expectation for ${type}`);
  }
}

test('tiny-15m synthesizes in every type; the file reads back with the planned tensors and metadata', async () => {
  for (const type of SYNTH_TYPES) {
    const path = join(dir, `tiny-${type}.gguf`);
    const align = type === 'q8_0' ? 64 : 4096;
    const { plan } = await synthesize(path, 'tiny-15m', type, { seed: 7, alignment: align });
    const f = readGgufSync(path);
    assert.equal(f.alignment, align);
    assert.equal(f.fileSize, plan.fileSize);
    // 1 embedding + 6 layers x 9 + output_norm; tied output: no output.weight
    assert.equal(f.tensors.length, 56, type);
    assert.equal(f.tensor('output.weight'), undefined);
    assert.deepEqual(f.tensor('token_embd.weight')!.dims, [288, 32000]);
    assert.deepEqual(f.tensor('blk.3.ffn_gate.weight')!.dims, [288, 768]);
    assert.deepEqual(f.tensor('blk.3.ffn_down.weight')!.dims, [768, 288]);
    assert.deepEqual(f.tensor('blk.5.attn_k.weight')!.dims, [288, 288]);
    assert.deepEqual(f.tensor('output_norm.weight')!.dims, [288]);
    for (const t of f.tensors) {
      assert.equal(t.fileOffset % align, 0, `${t.name} offset`);
      assert.equal(t.type, expectedTiny(type, t.name), `${type}: ${t.name} type`);
    }
    assert.equal(f.get('general.architecture'), 'llama');
    assert.equal(f.get('llama.embedding_length'), 288);
    assert.equal(f.get('llama.block_count'), 6);
    assert.equal(f.get('llama.attention.head_count'), 6);
    assert.equal(f.get('llama.attention.head_count_kv'), 6);
    assert.equal(f.get('llama.feed_forward_length'), 768);
    assert.equal(f.get('llama.context_length'), 256);
    assert.equal(f.get('llama.rope.dimension_count'), 48);
    assert.equal(f.get('llama.rope.freq_base'), 10000);
    assert.equal(f.get('llama.attention.layer_norm_rms_epsilon'), Math.fround(1e-5));
    assert.equal(f.get('llama.vocab_size'), 32000);
    const ftypes: Record<string, number> = {
      f32: 0, f16: 1, q4_0: 2, q4_1: 3, q8_0: 7, q5_0: 8, q5_1: 9, q2_k: 10, q3_k_s: 11, q3_k_m: 12, q3_k_l: 13,
      q4_k: 14, q4_k_s: 14, q4_k_m: 15, q5_k_s: 16, q5_k_m: 17, q6_k: 18, iq4_nl: 25, iq4_xs: 30, bf16: 32,
    }; // llama.h's llama_ftype
    assert.equal(f.get('general.file_type'), ftypes[type]);
    assert.equal(f.get('tokenizer.ggml.model'), 'llama');
    assert.equal(f.getStringArray('tokenizer.ggml.tokens')!.length, 32000);
    assert.equal(f.getStringArray('tokenizer.ggml.tokens')![1], '<s>');
    assert.equal(f.get('tokenizer.ggml.bos_token_id'), 1);
    assert.equal(f.get('tokenizer.ggml.eos_token_id'), 2);
    assert.equal((f.getArray('tokenizer.ggml.scores') as Float32Array).length, 32000);
    assert.equal((f.getArray('tokenizer.ggml.token_type') as Int32Array).length, 32000);
    assert.equal(f.get('tokenizer.ggml.add_bos_token'), true);
  }
});

test('synthetic weights have the planned scale (dequantized from the file)', () => {
  const path = join(dir, 'tiny-q4_k_m.gguf'); // written by the test above
  const dim = 288;
  const ffn = 768;
  const check = (name: string, std: number, mean: number, tol: number) => {
    const { type, n, bytes } = tensorBytes(path, name);
    const s = stats(dequantize(type, bytes, n));
    assert.ok(Math.abs(s.mean - mean) < tol * std + 1e-3 * Math.abs(mean), `${name} mean ${s.mean}`);
    assert.ok(Math.abs(s.std - std) < tol * std, `${name} std ${s.std}, planned ${std}`);
  };
  check('token_embd.weight', 1 / Math.sqrt(dim), 0, 0.1);
  check('blk.0.attn_q.weight', 1 / Math.sqrt(dim), 0, 0.1);
  check('blk.1.attn_output.weight', 1 / Math.sqrt(dim) / Math.sqrt(12), 0, 0.1);
  check('blk.0.ffn_down.weight', 1 / Math.sqrt(ffn) / Math.sqrt(12), 0, 0.1);
  check('blk.4.ffn_norm.weight', 0.02, 1, 0.2);
});

test('K-quant tensors are llama.cpp quantizations of the f32 weights (--ref-quant), or close to them (default)', async () => {
  // Values depend on (seed, tensor name) only, so the f32 file holds the exact weights.
  const f32 = join(dir, 'tiny-f32.gguf'); // seed 7, written by the first test
  const ref = join(dir, 'tiny-q4_k_m-ref.gguf');
  await synthesize(ref, 'tiny-15m', 'q4_k_m', { seed: 7, referenceQuant: true, threads: 2 });
  const fast = join(dir, 'tiny-q4_k_m.gguf'); // seed 7, default (search-free) K-quants
  for (const name of ['blk.0.ffn_down.weight', 'blk.1.ffn_down.weight']) { // Q6_K and Q4_K
    const w = tensorBytes(f32, name);
    const values = new Float32Array(w.bytes.slice().buffer);
    const r = tensorBytes(ref, name);
    assert.ok(r.type === GgmlType.Q6_K || r.type === GgmlType.Q4_K, `${name}: ${GgmlType[r.type]}`);
    assert.equal(hex(r.bytes), hex(ggmlQuantize(r.type, values)), `${name}: bytes differ from llama.cpp's quantize_row_${GgmlType[r.type]}_ref`);
    const q = tensorBytes(fast, name);
    const back = dequantize(q.type, q.bytes, q.n);
    let se = 0;
    let ss = 0;
    for (let i = 0; i < q.n; i++) {
      se += (back[i]! - values[i]!) ** 2;
      ss += values[i]! ** 2;
    }
    assert.ok(Math.sqrt(se / ss) < 0.09, `${name}: fast K-quant relative error ${Math.sqrt(se / ss)}`);
  }
});

test('same seed gives identical bytes; another seed different weights but the same layout', async () => {
  const a = join(dir, 'seed-a.gguf');
  const b = join(dir, 'seed-b.gguf');
  const c = join(dir, 'seed-c.gguf');
  await synthesize(a, 'tiny-15m', 'q4_0', { seed: 123, threads: 1 });
  await synthesize(b, 'tiny-15m', 'q4_0', { seed: 123, threads: 3 }); // worker threads: same bytes
  await synthesize(c, 'tiny-15m', 'q4_0', { seed: 124 });
  assert.equal(sha(a), sha(b));
  assert.notEqual(sha(a), sha(c));
  const fa = readGgufSync(a);
  const fc = readGgufSync(c);
  assert.equal(fa.fileSize, fc.fileSize);
  assert.deepEqual(fa.tensors.map((t) => t.fileOffset), fc.tensors.map((t) => t.fileOffset));
  // every tensor differs, not just one
  const da = readFileSync(a);
  const dc = readFileSync(c);
  for (const t of fa.tensors) {
    assert.ok(!da.subarray(t.fileOffset, t.fileOffset + t.byteSize).equals(dc.subarray(t.fileOffset, t.fileOffset + t.byteSize)), t.name);
  }
});

// Published parameter counts (model cards / HF safetensors totals).
const PUBLISHED: Array<[string, number, number]> = [
  // preset, exact published count, tensors
  ['tinyllama-1.1b', 1_100_048_384, 22 * 9 + 3],
  ['llama-3.2-1b', 1_235_814_400, 16 * 9 + 2 + 1 /* rope_freqs */],
  ['qwen2.5-0.5b', 494_032_768, 24 * 12 + 2],
  ['llama-2-7b', 6_738_415_616, 32 * 9 + 3],
];

test('plans of the big presets match the published parameter counts, shapes and byte sizes', () => {
  for (const [name, params, count] of PUBLISHED) {
    const plan = planSynth(name, 'f16');
    const ropeFreqs = plan.tensors.find((t) => t.name === 'rope_freqs.weight')?.numElements ?? 0;
    assert.equal(plan.numParams - ropeFreqs, params, name);
    assert.equal(plan.tensors.length, count, name);
    // f16: 2 bytes per weight for every matrix, 4 bytes per f32 vector value
    let bytes = 0;
    for (const t of plan.tensors) bytes += t.dims.length === 2 ? t.numElements * 2 : t.numElements * 4;
    assert.equal(plan.tensors.reduce((s, t) => s + t.byteSize, 0), bytes, name);
    assert.ok(plan.fileSize >= bytes && plan.fileSize < bytes + plan.tensors.length * 4096 + (32 << 20), name); // + padding + header
  }
  const q = planSynth('qwen2.5-0.5b', 'q4_k_m');
  assert.deepEqual(q.tensors.find((t) => t.name === 'token_embd.weight')!.dims, [896, 151936]);
  assert.deepEqual(q.tensors.find((t) => t.name === 'blk.0.attn_k.weight')!.dims, [896, 128]);
  assert.deepEqual(q.tensors.find((t) => t.name === 'blk.0.attn_k.bias')!.dims, [128]);
  assert.equal(q.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!.type, GgmlType.Q5_0); // 896-wide rows: Q4_K -> Q5_0
  assert.equal(q.tensors.find((t) => t.name === 'token_embd.weight')!.type, GgmlType.Q8_0); // tied: the output's Q6_K -> Q8_0
  assert.equal(q.tensors.find((t) => t.name === 'blk.0.ffn_down.weight')!.type, GgmlType.Q6_K); // 4864 = 19 * 256
  assert.equal(q.metadata.find(([k]) => k === 'qwen2.rope.freq_base')![1].value, 1e6);
  assert.equal(q.metadata.find(([k]) => k === 'general.architecture')![1].value, 'qwen2');
});

test('q4_k_m on llama-2-7b: Q6_K output, Q6_K attn_v/ffn_down in 16 of 32 layers, Q4_K elsewhere', () => {
  const plan = planSynth('llama-2-7b', 'q4_k_m');
  const byType = (suffix: string, type: GgmlType) => plan.tensors.filter((t) => t.name.endsWith(suffix) && t.type === type).length;
  // use_more_bits(i, 32): i < 4, i >= 28, and (i - 4) % 3 == 2 -> 6, 9, ..., 27 (8 layers): 16 in all
  assert.equal(byType('attn_v.weight', GgmlType.Q6_K), 16);
  assert.equal(byType('attn_v.weight', GgmlType.Q4_K), 16);
  assert.equal(byType('ffn_down.weight', GgmlType.Q6_K), 16);
  assert.equal(byType('attn_k.weight', GgmlType.Q4_K), 32);
  assert.equal(byType('attn_q.weight', GgmlType.Q4_K), 32);
  assert.equal(plan.tensors.find((t) => t.name === 'output.weight')!.type, GgmlType.Q6_K);
  assert.equal(plan.tensors.find((t) => t.name === 'token_embd.weight')!.type, GgmlType.Q4_K);
  assert.equal(plan.tensors.find((t) => t.name === 'blk.6.attn_v.weight')!.type, GgmlType.Q6_K);
  assert.equal(plan.tensors.find((t) => t.name === 'blk.7.attn_v.weight')!.type, GgmlType.Q4_K);
});

test('q5_k_m (llama.cpp Q5_K_M) on llama-2-7b and tinyllama: Q6_K output, attn_v/ffn_down in use_more_bits layers, else Q5_K', () => {
  const plan = planSynth('llama-2-7b', 'q5_k_m');
  const byType = (suffix: string, type: GgmlType) => plan.tensors.filter((t) => t.name.endsWith(suffix) && t.type === type).length;
  // use_more_bits(i, 32): i < 4, i >= 28, and (i - 4) % 3 == 2 -> 6, 9, ..., 27 (8 layers): 16 in all
  assert.equal(byType('attn_v.weight', GgmlType.Q6_K), 16);
  assert.equal(byType('attn_v.weight', GgmlType.Q5_K), 16);
  assert.equal(byType('ffn_down.weight', GgmlType.Q6_K), 16);
  assert.equal(byType('ffn_down.weight', GgmlType.Q5_K), 16);
  for (const role of ['attn_q', 'attn_k', 'attn_output', 'ffn_gate', 'ffn_up']) assert.equal(byType(`${role}.weight`, GgmlType.Q5_K), 32, role);
  assert.equal(plan.tensors.find((t) => t.name === 'output.weight')!.type, GgmlType.Q6_K);
  assert.equal(plan.tensors.find((t) => t.name === 'token_embd.weight')!.type, GgmlType.Q5_K); // untied: no special rule
  assert.equal(plan.tensors.find((t) => t.name === 'blk.27.ffn_down.weight')!.type, GgmlType.Q6_K);
  assert.equal(plan.tensors.find((t) => t.name === 'blk.26.ffn_down.weight')!.type, GgmlType.Q5_K);
  assert.equal(plan.metadata.find(([k]) => k === 'general.file_type')![1].value, 17); // LLAMA_FTYPE_MOSTLY_Q5_K_M
  // tinyllama: 22 layers; use_more_bits(i, 22) in C's integer arithmetic: i < 22/8 = 2 (0, 1),
  // i >= 7*22/8 = 19 (19, 20, 21), (i - 2) % 3 == 2 (4, 7, ..., 19)
  const tl = planSynth('tinyllama-1.1b', 'q5_k_m');
  const more = tl.tensors.filter((t) => t.name.endsWith('attn_v.weight') && t.type === GgmlType.Q6_K).map((t) => Number(t.name.split('.')[1]));
  assert.deepEqual(more, [0, 1, 4, 7, 10, 13, 16, 19, 20, 21]);
});

test('llama-3.2-1b rope_freqs: 15 ones, 3 interpolated, 14 x32 (hand-derived band edges)', () => {
  // wavelength 2*pi*500000^(2i/64) < 8192/4 for i <= 14; > 8192 for i >= 18
  const r = llama3RopeFactors(64, 500000, { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 });
  assert.equal(r.length, 32);
  for (let i = 0; i <= 14; i++) assert.equal(r[i], 1);
  for (let i = 18; i < 32; i++) assert.equal(r[i], 32);
  for (let i = 15; i <= 17; i++) assert.ok(r[i]! > 1 && r[i]! < 32 && r[i]! > r[i - 1]!, `r[${i}] = ${r[i]}`);
  // i = 16: wavelen = 2*pi*500000^0.5 = 4442.88; smooth = (8192/4442.88 - 1)/3 = 0.28129;
  // factor = 1 / ((1 - 0.28129)/32 + 0.28129) = 1 / 0.30375 = 3.2922
  assert.ok(Math.abs(r[16]! - 3.2922) < 1e-3, String(r[16]));
  const plan = planSynth('llama-3.2-1b', 'f16');
  const t = plan.tensors[0]!;
  assert.equal(t.name, 'rope_freqs.weight');
  assert.equal(t.type, GgmlType.F32);
  assert.deepEqual(t.dims, [32]);
});

test('flexinfer synth CLI: --json summary, bad options exit non-zero with a message', () => {
  const bin = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));
  const out = join(dir, 'cli.gguf');
  const ok = spawnSync(process.execPath, [bin, 'synth', '--preset', 'tiny-15m', '--type', 'q8_0', '-o', out, '--json', '--seed', '5'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  const summary = JSON.parse(ok.stdout);
  assert.equal(summary.preset, 'tiny-15m');
  assert.equal(summary.tensors, 56);
  assert.equal(summary.bytes, readFileSync(out).length);
  assert.equal(ok.stderr, ''); // no progress bar when stderr is not a TTY
  const bad = spawnSync(process.execPath, [bin, 'synth', '--preset', 'tiny-15m', '--type', 'q3_k', '-o', out], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--type: unknown type 'q3_k'; known: f32, f16/);
  const align = spawnSync(process.execPath, [bin, 'synth', '--preset', 'tiny-15m', '--type', 'f16', '-o', out, '--align', '48'], { encoding: 'utf8' });
  assert.match(align.stderr, /--align: 48 is not a power of two/);
  const nodir = spawnSync(process.execPath, [bin, 'synth', '--preset', 'tiny-15m', '--type', 'f16', '-o', join(dir, 'no', 'such', 'x.gguf')], { encoding: 'utf8' });
  assert.equal(nodir.status, 1);
  assert.match(nodir.stderr, /^flexinfer: cannot write .*x\.gguf: ENOENT/);
});

// Model cards' rounded counts (total, non-embedding) and the tensor count of the published
// GGUF (SmolLM3-3B-Q4_K_M.gguf has 326 tensors).
const CARDS: Array<[string, number, number | null, number]> = [
  ['qwen3-0.6b', 0.6e9, 0.44e9, 28 * 11 + 2],
  ['qwen3-4b', 4.0e9, 3.6e9, 36 * 11 + 2],
  ['smollm3-3b', 3.08e9, null, 326],
  // Phi-3.5-mini-instruct: 3.8B; its GGUF has 197 tensors (6 per block, rope_factors_long/short)
  ['phi-3.5-mini', 3.8e9, null, 32 * 6 + 5],
];

test('plans of the qwen3, smollm3 and phi3 presets match their model cards (parameters within rounding, tensor count, head width)', () => {
  for (const [name, total, nonEmbedding, count] of CARDS) {
    const plan = planSynth(name, 'q8_0');
    const emb = plan.tensors.find((t) => t.name === 'token_embd.weight')!.numElements;
    const digits = (x: number) => Math.pow(10, Math.floor(Math.log10(x)) - 1); // rounding of the card's figure
    assert.ok(Math.abs(plan.numParams - total) <= digits(total) / 2 + 1e7, `${name}: ${plan.numParams} vs ${total}`);
    if (nonEmbedding !== null) assert.ok(Math.abs(plan.numParams - emb - nonEmbedding) <= digits(nonEmbedding) / 2 + 1e7, `${name} non-embedding`);
    assert.equal(plan.tensors.length, count, name);
  }
  const q = planSynth('qwen3-0.6b', 'f16');
  assert.deepEqual(q.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!.dims, [1024, 2048]); // 16 heads of 128
  assert.deepEqual(q.tensors.find((t) => t.name === 'blk.0.attn_output.weight')!.dims, [2048, 1024]);
  assert.deepEqual(q.tensors.find((t) => t.name === 'blk.0.attn_q_norm.weight')!.dims, [128]);
  assert.equal(q.metadata.find(([k]) => k === 'qwen3.attention.key_length')![1].value, 128);
  assert.equal(q.tensors.some((t) => t.name === 'output.weight'), false); // tied
  // phi3: fused q|k|v (32 heads of 96, no GQA) and gate|up; longrope metadata as the converter
  // writes it for Phi-3.5 (attn_factor sqrt(1 + ln(131072 / 4096) / ln(4096)) = 1.190238...)
  const p = planSynth('phi-3.5-mini', 'q4_k_m');
  const t = (n: string) => p.tensors.find((x) => x.name === n)!;
  assert.deepEqual(t('blk.0.attn_qkv.weight').dims, [3072, 3 * 3072]);
  assert.deepEqual(t('blk.0.ffn_up.weight').dims, [3072, 2 * 8192]);
  assert.deepEqual(t('rope_factors_long.weight').dims, [48]);
  // llama.cpp's Q4_K_M counts fused qkv as attn_v (category_is_attn_v): Q6_K in the
  // use_more_bits layers (the first and last eighth, then every third: 0-3, 6, 9, ..., 28-31), else Q4_K
  assert.equal(t('blk.0.attn_qkv.weight').type, GgmlType.Q6_K);
  assert.equal(t('blk.4.attn_qkv.weight').type, GgmlType.Q4_K);
  assert.equal(t('blk.6.attn_qkv.weight').type, GgmlType.Q6_K);
  const meta = (k: string) => p.metadata.find(([key]) => key === k)![1].value as number;
  assert.equal(meta('phi3.rope.scaling.original_context_length'), 4096);
  assert.ok(Math.abs(meta('phi3.rope.scaling.attn_factor') - 1.1902380714238083) < 1e-6);
});
