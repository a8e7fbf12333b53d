/**
 * llama.cpp (through node-llama-cpp) loads and runs a model written by our writer: its GGUF
 * loader checks every tensor offset against the layout it expects, so this pins our layout
 * (alignment, per-tensor padding) to llama.cpp's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeGguf, type GgufWriteTensor } from './writer.js';
import { readGgufSync } from './reader.js';
import { gv } from './value.js';
import { GgmlType } from './ggml-type.js';

const dim = 64;
const ff = 128;
const vocab = 256;
const nLayers = 2;
const heads = 4;

function tensor(name: string, dims: number[], type = GgmlType.F32): GgufWriteTensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return {
    name,
    type,
    dims,
    data: () => {
      if (type === GgmlType.F16) return new Uint8Array(n * 2); // zeros are valid f16
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37 + name.length) * 0.1;
      return new Uint8Array(a.buffer);
    },
  };
}

async function writeTinyLlama(path: string, alignment: number, version: 2 | 3): Promise<void> {
  const tensors = [tensor('token_embd.weight', [dim, vocab])];
  for (let l = 0; l < nLayers; l++) {
    for (const [n, d] of [
      ['attn_norm', [dim]], ['attn_q', [dim, dim]], ['attn_k', [dim, dim / 2]], ['attn_v', [dim, dim / 2]],
      ['attn_output', [dim, dim]], ['ffn_norm', [dim]], ['ffn_gate', [dim, ff]], ['ffn_up', [dim, ff]],
    ] as const) {
      tensors.push(tensor(`blk.${l}.${n}.weight`, [...d]));
    }
    tensors.push(tensor(`blk.${l}.ffn_down.weight`, [ff, dim], GgmlType.F16)); // 2-byte type: odd sizes before padding
  }
  tensors.push(tensor('output_norm.weight', [dim]), tensor('output.weight', [dim, vocab]));
  // Byte tokens <0x00>..<0xFF> after the 3 specials keep the SPM vocabulary well-formed.
  const tokens = Array.from({ length: vocab }, (_, i) => (i < 3 ? ['<unk>', '<s>', '</s>'][i]! : `<0x${(i - 3).toString(16).toUpperCase().padStart(2, '0')}>`));
  await writeGguf(path, [
    ['general.architecture', gv.str('llama')],
    ['llama.block_count', gv.u32(nLayers)],
    ['llama.context_length', gv.u32(256)],
    ['llama.embedding_length', gv.u32(dim)],
    ['llama.feed_forward_length', gv.u32(ff)],
    ['llama.attention.head_count', gv.u32(heads)],
    ['llama.attention.head_count_kv', gv.u32(2)],
    ['llama.attention.layer_norm_rms_epsilon', gv.f32(1e-5)],
    ['llama.rope.dimension_count', gv.u32(dim / heads)],
    ['tokenizer.ggml.model', gv.str('llama')],
    ['tokenizer.ggml.tokens', gv.strArr(tokens)],
    ['tokenizer.ggml.scores', gv.f32Arr(new Float32Array(vocab))],
    ['tokenizer.ggml.token_type', gv.i32Arr(Int32Array.from(tokens, (_, i) => (i < 3 ? 3 : 6)))],
    ['tokenizer.ggml.bos_token_id', gv.u32(1)],
    ['tokenizer.ggml.eos_token_id', gv.u32(2)],
    ['tokenizer.ggml.unknown_token_id', gv.u32(0)],
  ], tensors, { alignment, version });
}

test('llama.cpp loads and evaluates models our writer wrote (alignments 32 and 4096, v2 and v3)', async () => {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-llamacpp-'));
  try {
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    for (const [alignment, version] of [[32, 3], [4096, 2]] as const) {
      const p = join(dir, `tiny-${alignment}.gguf`);
      await writeTinyLlama(p, alignment, version);
      assert.equal(readGgufSync(p).tensors.length, 2 + 9 * nLayers + 1);
      const model = await llama.loadModel({ modelPath: p });
      try {
        assert.equal(model.trainContextSize, 256);
        const ctx = await model.createContext({ contextSize: 32 });
        const seq = ctx.getSequence();
        const next = await seq.evaluate([1, 50, 60] as unknown as Parameters<typeof seq.evaluate>[0]).next();
        assert.equal(typeof next.value, 'number');
        await ctx.dispose();
      } finally {
        await model.dispose();
      }
    }
    await llama.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
