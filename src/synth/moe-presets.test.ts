/** MoE presets: the real Qwen3-30B-A3B shapes and parameter count, routers kept f32, mixes on experts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../gguf/ggml-type.js';
import { planSynth } from './plan.js';

test('qwen3-30b-a3b: 30,532,122,624 parameters (the HF safetensors total), 48 blocks of 128 stacked experts', () => {
  const plan = planSynth('qwen3-30b-a3b', 'q4_k_m');
  assert.equal(plan.numParams, 30_532_122_624);
  assert.equal(plan.tensors.length, 48 * 12 + 3);
  const t = (name: string) => plan.tensors.find((x) => x.name === name)!;
  assert.deepEqual(t('blk.0.ffn_gate_exps.weight').dims, [2048, 768, 128]);
  assert.deepEqual(t('blk.0.ffn_down_exps.weight').dims, [768, 2048, 128]);
  assert.deepEqual(t('blk.0.ffn_gate_inp.weight').dims, [2048, 128]);
  assert.equal(t('blk.0.ffn_gate_inp.weight').type, GgmlType.F32);
  assert.deepEqual(t('blk.0.attn_q.weight').dims, [2048, 4096]);
  assert.deepEqual(t('blk.0.attn_k_norm.weight').dims, [128]);
  assert.equal(t('blk.7.ffn_up_exps.weight').type, GgmlType.Q4_K);
  // Q4_K_M: ffn_down Q6_K in the use_more_bits layers (0..5, 42..47, every third between).
  assert.equal(t('blk.0.ffn_down_exps.weight').type, GgmlType.Q6_K);
  assert.equal(t('blk.7.ffn_down_exps.weight').type, GgmlType.Q4_K);
  assert.equal(t('blk.8.ffn_down_exps.weight').type, GgmlType.Q6_K);
  // Each expert is a 4096-multiple of bytes in every stacked tensor: O_DIRECT reads when the file is aligned.
  for (const name of ['blk.0.ffn_gate_exps.weight', 'blk.0.ffn_down_exps.weight', 'blk.7.ffn_down_exps.weight']) assert.equal((t(name).byteSize / 128) % 4096, 0, name);
  assert.ok(plan.fileSize > 18.5e9 && plan.fileSize < 18.7e9, `${plan.fileSize}`);
  const meta = new Map(plan.metadata.map(([k, v]) => [k, v.value]));
  assert.equal(meta.get('general.architecture'), 'qwen3moe');
  assert.equal(meta.get('qwen3moe.expert_count'), 128);
  assert.equal(meta.get('qwen3moe.expert_used_count'), 8);
  assert.equal(meta.get('qwen3moe.expert_feed_forward_length'), 768);
  assert.equal(meta.get('qwen3moe.attention.key_length'), 128);
});

test('tiny-mixtral: a llama file with llama.expert_count and no expert_feed_forward_length (the width is feed_forward_length)', () => {
  const plan = planSynth('tiny-mixtral', 'q8_0');
  const meta = new Map(plan.metadata.map(([k, v]) => [k, v.value]));
  assert.equal(meta.get('general.architecture'), 'llama');
  assert.equal(meta.get('llama.expert_count'), 8);
  assert.equal(meta.get('llama.expert_feed_forward_length'), undefined);
  assert.equal(meta.get('llama.feed_forward_length'), 256);
  assert.ok(!plan.tensors.some((t) => t.name.endsWith('ffn_gate.weight')));
});
