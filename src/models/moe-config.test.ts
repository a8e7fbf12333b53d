/** MoE configs from GGUF metadata and tensors: values, and typed errors for inconsistent files. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planSynth } from '../synth/plan.js';
import { modelConfigFromGguf } from './registry.js';
import type { GgufMetadataSource } from './config.js';
import { InvalidModelError } from '../errors.js';

/** A planned synthetic file as the config reader sees it, with edits. */
function source(preset: string, edit: (meta: Map<string, unknown>, tensors: Array<{ name: string; type: number; dims: number[] }>) => void = () => {}): GgufMetadataSource {
  const plan = planSynth(preset, 'q8_0');
  const meta = new Map<string, unknown>(plan.metadata.map(([k, v]) => [k, v.value]));
  const tensors = plan.tensors.map((t) => ({ name: t.name, type: t.type, dims: [...t.dims] }));
  edit(meta, tensors);
  return { get: (k) => meta.get(k), tensors };
}

test('qwen3moe and Mixtral-style llama configs: expert counts and width; ffnDim is the expert width', () => {
  const q = modelConfigFromGguf(source('tiny-qwen3moe'));
  assert.deepEqual(q.moe, { numExperts: 16, numExpertsUsed: 4, expertFfnDim: 256, weightsScale: 0 });
  assert.equal(q.ffnDim, 256);
  assert.equal(q.headDim, 128);
  const m = modelConfigFromGguf(source('tiny-mixtral'));
  assert.deepEqual(m.moe, { numExperts: 8, numExpertsUsed: 2, expertFfnDim: 256, weightsScale: 0 });
  assert.equal(modelConfigFromGguf(source('tiny-15m')).moe, undefined);
});

test('MoE configs: missing keys, counts that disagree and tensors of the wrong shape are InvalidModelErrors', () => {
  const bad = (preset: string, edit: Parameters<typeof source>[1], re: RegExp) =>
    assert.throws(() => modelConfigFromGguf(source(preset, edit)), (e: unknown) => e instanceof InvalidModelError && re.test(e.message));
  bad('tiny-qwen3moe', (m) => m.delete('qwen3moe.expert_used_count'), /needs 'qwen3moe.expert_count' and 'qwen3moe.expert_used_count'/);
  bad('tiny-qwen3moe', (m) => m.set('qwen3moe.expert_used_count', 17), /expert_used_count 17 exceeds expert_count 16/);
  bad('tiny-qwen3moe', (m) => m.set('qwen3moe.expert_count', 0), /should be a positive integer/);
  bad('tiny-qwen3moe', (_, t) => t.find((x) => x.name === 'blk.2.ffn_up_exps.weight')!.dims.splice(2, 1, 15), /blk.2.ffn_up_exps.weight' has dims \[256, 256, 15\], expected \[256, 256, 16\]/);
  bad('tiny-mixtral', (_, t) => t.splice(t.findIndex((x) => x.name === 'blk.1.ffn_gate_inp.weight'), 1), /blk.1.ffn_gate_inp.weight' is missing/);
  bad('tiny-qwen3moe', (_, t) => t.splice(t.findIndex((x) => x.name === 'blk.3.attn_k_norm.weight'), 1), /blk.3.attn_k_norm.weight' is missing/);
});
