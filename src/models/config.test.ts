/** ModelConfig from GGUF metadata: values, defaults, and typed errors for bad files. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { modelConfigFromGguf, getArchitecture, supportedArchitectures } from './registry.js';
import type { GgufMetadataSource } from './config.js';
import { GgmlType } from '../gguf/ggml-type.js';
import { InvalidModelError, UnsupportedArchitectureError, UnsupportedTensorTypeError } from '../errors.js';

type T = { name: string; type: number; dims: number[] };

function fakeFile(arch: string, meta: Record<string, unknown>, opts: { tied?: boolean; bias?: boolean; types?: Record<string, number> } = {}): GgufMetadataSource {
  const m = new Map<string, unknown>([['general.architecture', arch], ...Object.entries(meta)]);
  const dim = Number(meta[`${arch}.embedding_length`] ?? 64);
  const tensors: T[] = [
    { name: 'token_embd.weight', type: GgmlType.Q8_0, dims: [dim, 100] },
    { name: 'output_norm.weight', type: GgmlType.F32, dims: [dim] },
  ];
  if (!opts.tied) tensors.push({ name: 'output.weight', type: GgmlType.Q8_0, dims: [dim, 100] });
  const blocks = Number(meta[`${arch}.block_count`] ?? 1);
  for (let l = 0; l < blocks; l++) {
    for (const n of ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down']) {
      tensors.push({ name: `blk.${l}.${n}.weight`, type: n.endsWith('norm') ? GgmlType.F32 : GgmlType.Q4_K, dims: [dim, dim] });
    }
    if (opts.bias) for (const n of ['attn_q', 'attn_k', 'attn_v']) tensors.push({ name: `blk.${l}.${n}.bias`, type: GgmlType.F32, dims: [dim] });
  }
  for (const [name, type] of Object.entries(opts.types ?? {})) tensors.find((t) => t.name === name)!.type = type;
  return { get: (k) => m.get(k), tensors };
}

const LLAMA = {
  'llama.embedding_length': 64, 'llama.block_count': 2, 'llama.attention.head_count': 8, 'llama.attention.head_count_kv': 2,
  'llama.feed_forward_length': 128, 'llama.context_length': 4096, 'llama.attention.layer_norm_rms_epsilon': 1e-6,
  'llama.rope.freq_base': 500000, 'llama.rope.scaling.type': 'linear', 'llama.rope.scaling.factor': 4,
};

test('llama config: hyperparameters, GQA, linear rope scaling, untied output', () => {
  const c = modelConfigFromGguf(fakeFile('llama', LLAMA));
  assert.deepEqual(c, {
    architecture: 'llama', dim: 64, numLayers: 2, numHeads: 8, numKvHeads: 2, headDim: 8, ffnDim: 128, vocabSize: 100,
    contextLength: 4096, rmsEps: 1e-6, ropeFreqBase: 500000, ropeScale: 4, tiedOutput: false, hasRopeFreqs: false, ropeDim: 8,
  });
});

test('qwen2 config: tied output, defaults for absent keys', () => {
  const meta = { 'qwen2.embedding_length': 64, 'qwen2.block_count': 1, 'qwen2.attention.head_count': 4, 'qwen2.feed_forward_length': 96 };
  const c = modelConfigFromGguf(fakeFile('qwen2', meta, { tied: true, bias: true }));
  assert.equal(c.tiedOutput, true);
  assert.equal(c.numKvHeads, 4); // no head_count_kv: no GQA
  assert.equal(c.ropeFreqBase, 10000);
  assert.equal(c.ropeScale, 1);
});

test('unknown architecture, unsupported tensor type, missing keys and tensors: typed errors', () => {
  assert.deepEqual(supportedArchitectures(), ['llama', 'qwen2', 'qwen3', 'qwen3moe', 'smollm3', 'gemma2', 'gemma3', 'phi3']);
  assert.throws(() => getArchitecture('mamba'), (e: unknown) => e instanceof UnsupportedArchitectureError && e.message === "architecture 'mamba' is not supported; supported: llama, qwen2, qwen3, qwen3moe, smollm3, gemma2, gemma3, phi3");
  assert.throws(
    () => modelConfigFromGguf(fakeFile('llama', LLAMA, { types: { 'blk.1.ffn_down.weight': GgmlType.IQ2_XXS } })),
    (e: unknown) => e instanceof UnsupportedTensorTypeError && e.tensor === 'blk.1.ffn_down.weight' && /type iq2_xxs, which is not supported/.test(e.message),
  );
  assert.throws(() => modelConfigFromGguf(fakeFile('llama', LLAMA, { types: { 'blk.0.attn_q.weight': GgmlType.IQ2_XS } })), /iq2_xs/);
  const noFfn: Record<string, unknown> = { ...LLAMA };
  delete noFfn['llama.feed_forward_length'];
  assert.throws(() => modelConfigFromGguf(fakeFile('llama', noFfn)), (e: unknown) => e instanceof InvalidModelError && /'llama.feed_forward_length' is missing/.test(e.message));
  assert.throws(() => modelConfigFromGguf(fakeFile('llama', { ...LLAMA, 'llama.attention.head_count_kv': 3 })), /not a multiple/);
  // partial rotary: phi3 only (Phi-4-mini rotates 96 of 128); llama rotates whole heads
  assert.throws(
    () => modelConfigFromGguf(fakeFile('llama', { ...LLAMA, 'llama.rope.dimension_count': 6 })),
    (e: unknown) => e instanceof InvalidModelError && /rope.dimension_count 6 with head dim 8 is not supported by 'llama'/.test(e.message),
  );
  const f = fakeFile('qwen2', { 'qwen2.embedding_length': 64, 'qwen2.block_count': 1, 'qwen2.attention.head_count': 4, 'qwen2.feed_forward_length': 96 }, { tied: true });
  assert.throws(() => modelConfigFromGguf(f), /tensor 'blk.0.attn_q.bias' is missing/);
});
