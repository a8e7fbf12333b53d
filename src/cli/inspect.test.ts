import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGguf, type GgufWriteTensor } from '../gguf/writer.js';
import { gv } from '../gguf/value.js';
import { GgmlType } from '../gguf/ggml-type.js';

const bin = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));

function cli(...args: string[]) {
  return spawnSync(process.execPath, [bin, 'inspect', ...args], { encoding: 'utf8' });
}

/** A 2-layer llama-shaped file with tiny dims (hand-computed byte counts in the test). */
async function tinyModel(path: string): Promise<void> {
  const dim = 64;
  const ff = 128;
  const vocab = 32;
  const t = (name: string, type: GgmlType, dims: number[], bytes: number): GgufWriteTensor => ({ name, type, dims, data: new Uint8Array(bytes) });
  const tensors: GgufWriteTensor[] = [t('token_embd.weight', GgmlType.Q8_0, [dim, vocab], (dim / 32) * 34 * vocab)];
  for (let l = 0; l < 2; l++) {
    tensors.push(t(`blk.${l}.attn_norm.weight`, GgmlType.F32, [dim], dim * 4));
    tensors.push(t(`blk.${l}.attn_q.weight`, GgmlType.Q8_0, [dim, dim], (dim / 32) * 34 * dim));
    tensors.push(t(`blk.${l}.ffn_down.weight`, GgmlType.F16, [ff, dim], ff * 2 * dim));
  }
  tensors.push(t('output_norm.weight', GgmlType.F32, [dim], dim * 4));
  tensors.push(t('output.weight', GgmlType.MXFP4, [dim, vocab], (dim / 32) * 17 * vocab));
  await writeGguf(path, [
    ['general.architecture', gv.str('llama')],
    ['general.name', gv.str('tiny')],
    ['general.file_type', gv.u32(15)],
    ['llama.block_count', gv.u32(2)],
    ['llama.context_length', gv.u32(4096)],
    ['llama.embedding_length', gv.u32(dim)],
    ['llama.feed_forward_length', gv.u32(ff)],
    ['llama.attention.head_count', gv.u32(4)],
    ['llama.attention.head_count_kv', gv.u32(2)],
    ['llama.rope.freq_base', gv.f32(10000)],
    ['llama.attention.layer_norm_rms_epsilon', gv.f32(1e-5)],
    ['tokenizer.ggml.model', gv.str('gpt2')],
    ['tokenizer.ggml.pre', gv.str('llama-bpe')],
    ['tokenizer.ggml.tokens', gv.strArr(Array.from({ length: vocab }, (_, i) => `t${i}`))],
    ['tokenizer.ggml.merges', gv.strArr(['t 1', 't 2', 't 3'])],
    ['tokenizer.ggml.bos_token_id', gv.u32(1)],
    ['tokenizer.ggml.eos_token_id', gv.u32(2)],
    ['tokenizer.chat_template', gv.str('{{ messages }}')],
  ], tensors);
}

test('inspect --json reports format, hyperparameters, tokenizer and tensor bytes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-inspect-'));
  try {
    const p = join(dir, 'tiny.gguf');
    await tinyModel(p);
    const res = cli(p, '--json');
    assert.equal(res.status, 0, res.stderr);
    const r = JSON.parse(res.stdout);
    assert.equal(r.version, 3);
    assert.equal(r.fileSize, readFileSync(p).length);
    assert.equal(r.alignment, 32);
    assert.equal(r.architecture, 'llama');
    assert.equal(r.name, 'tiny');
    assert.equal(r.fileType, 15);
    assert.equal(r.fileTypeName, 'Q4_K_M');
    assert.equal(r.hyperparameters.block_count, 2);
    assert.equal(r.hyperparameters.embedding_length, 64);
    assert.equal(r.hyperparameters.feed_forward_length, 128);
    assert.equal(r.hyperparameters['attention.head_count'], 4);
    assert.equal(r.hyperparameters['attention.head_count_kv'], 2);
    assert.equal(r.hyperparameters['rope.freq_base'], 10000);
    assert.equal(r.hyperparameters['attention.layer_norm_rms_epsilon'], 1e-5); // shortest float32 form
    assert.deepEqual(r.tokenizer, { model: 'gpt2', pre: 'llama-bpe', vocabSize: 32, merges: 3, bosTokenId: 1, eosTokenId: 2, chatTemplate: true });
    assert.equal(r.tensorCount, 9);
    // q8_0: embd 2*34*32=2176, attn_q 2*34*64=4352 per layer; f32: 256 per norm; f16 ffn_down 128*2*64=16384
    assert.deepEqual(r.bytesByType, {
      q8_0: { tensors: 3, bytes: 2176 + 2 * 4352, supported: true },
      f32: { tensors: 3, bytes: 3 * 256, supported: true },
      f16: { tensors: 2, bytes: 2 * 16384, supported: true },
      mxfp4: { tensors: 1, bytes: 2 * 17 * 32, supported: false },
    });
    assert.deepEqual(r.layers, [
      { layer: 0, tensors: 3, bytes: 256 + 4352 + 16384 },
      { layer: 1, tensors: 3, bytes: 256 + 4352 + 16384 },
    ]);
    assert.deepEqual(r.nonLayerTensors.map((t: { name: string }) => t.name), ['token_embd.weight', 'output_norm.weight', 'output.weight']);
    assert.deepEqual(r.nonLayerTensors[0], { name: 'token_embd.weight', type: 'q8_0', dims: [64, 32], bytes: 2176 });

    const txt = cli(p);
    assert.equal(txt.status, 0, txt.stderr);
    assert.match(txt.stdout, /GGUF v3/);
    assert.match(txt.stdout, /file_type 15 \(Q4_K_M\)/);
    assert.match(txt.stdout, /llama\.attention\.head_count_kv\s+2/);
    assert.match(txt.stdout, /mxfp4 \(not supported\)/);
    assert.match(txt.stdout, /blk\.1\s+20\.5 KiB\s+3 tensors/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('inspect: corrupt or missing file exits non-zero with a one-line message; --help', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-inspect-'));
  try {
    const p = join(dir, 'bad.gguf');
    writeFileSync(p, Buffer.from('GGUF\x01\x00\x00\x00' + '\x00'.repeat(16), 'latin1'));
    const res = cli(p);
    assert.equal(res.status, 1);
    assert.equal(res.stdout, '');
    assert.equal(res.stderr.trim().split('\n').length, 1, res.stderr);
    assert.match(res.stderr, /invalid GGUF: version 1/);

    const missing = cli(join(dir, 'nope.gguf'));
    assert.equal(missing.status, 1);
    assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);

    const noArg = cli();
    assert.notEqual(noArg.status, 0);
    const help = cli('--help');
    assert.equal(help.status, 0);
    assert.match(help.stdout, /Usage: flexinfer inspect FILE/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
