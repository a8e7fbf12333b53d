import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgmlType } from '../gguf/ggml-type.js';
import { ResidentWeightStore } from './resident.js';
import { f32Bytes, tinyModelTensors, writeTestGguf, type TestTensor } from './testing.js';

const SHAPE = { dim: 64, ffn: 160, kvDim: 32, vocab: 50, layers: 3 };

function withFile(tensors: TestTensor[], alignment: number, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fi-resident-'));
  const path = join(dir, 'm.gguf');
  writeTestGguf(path, 'llama', SHAPE.layers, tensors, alignment);
  return fn(path).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test('ResidentWeightStore holds every tensor byte for byte, by layer and short name', async () => {
  const tensors = tinyModelTensors(SHAPE, 5);
  // maxBufferBytes 64 KiB: the data section in several buffers (segments.ts), as a file over 4 GiB is.
  for (const [alignment, maxBufferBytes] of [[32, undefined], [4096, undefined], [32, 65536], [4096, 65536]] as const) {
    await withFile(tensors, alignment, async (path) => {
      const progress: [number, number][] = [];
      const store = await ResidentWeightStore.load(path, { onProgress: (d, t) => progress.push([d, t]), ...(maxBufferBytes ? { maxBufferBytes } : {}) });
      assert.equal(store.numLayers, 3);
      for (const t of tensors) {
        const m = /^blk\.(\d+)\.(.+)$/.exec(t.name);
        const w = m ? store.acquire(Number(m[1])).get(m[2]!) : store.global(t.name)!;
        assert.equal(w.name, t.name);
        assert.equal(w.type, t.type);
        assert.deepEqual([...w.dims], t.dims);
        assert.deepEqual(w.data, t.data, t.name);
        if (m) store.release(Number(m[1]));
      }
      assert.equal(store.acquire(0).find('attn_q.bias'), undefined);
      assert.throws(() => store.acquire(1).get('nope.weight'), /blk\.1\.nope\.weight.*missing/);
      assert.throws(() => store.acquire(3), RangeError);
      assert.equal(store.global('rope_freqs.weight'), undefined);
      const [done, total] = progress.at(-1)!;
      assert.equal(done, total);
      assert.ok(total >= tensors.reduce((a, t) => a + t.data.length, 0));
      // The data section of the file, whole.
      const file = readFileSync(path);
      assert.ok(store.residentBytes >= file.length - 4096);
      store.dispose();
    });
  }
});

test('ResidentWeightStore.embed returns the rows of token_embd (f32 and f16)', async () => {
  const tensors = tinyModelTensors(SHAPE, 9);
  // f32 embeddings: the expected rows are the raw floats.
  const embdBytes = f32Bytes(SHAPE.dim * SHAPE.vocab, 77);
  tensors[0] = { name: 'token_embd.weight', type: GgmlType.F32, dims: [SHAPE.dim, SHAPE.vocab], data: embdBytes };
  await withFile(tensors, 32, async (path) => {
    const store = await ResidentWeightStore.load(path);
    const embd = new Float32Array(embdBytes.buffer, embdBytes.byteOffset, SHAPE.dim * SHAPE.vocab);
    const tokens = Int32Array.from([7, 0, 49, 7]);
    const out = new Float32Array(tokens.length * SHAPE.dim);
    store.embed(tokens, out);
    tokens.forEach((t, i) => assert.deepEqual(out.subarray(i * SHAPE.dim, (i + 1) * SHAPE.dim), embd.subarray(t * SHAPE.dim, (t + 1) * SHAPE.dim)));
    assert.throws(() => store.embed(Int32Array.from([50]), out), /outside the vocabulary/);
  });
  // f16 embeddings: 1.0 (0x3c00) at the row's token index, -2.0 (0xc000) elsewhere.
  const f16 = new Uint16Array(SHAPE.dim * SHAPE.vocab).fill(0xc000);
  for (let t = 0; t < SHAPE.vocab; t++) f16[t * SHAPE.dim + (t % SHAPE.dim)] = 0x3c00;
  tensors[0] = { name: 'token_embd.weight', type: GgmlType.F16, dims: [SHAPE.dim, SHAPE.vocab], data: new Uint8Array(f16.buffer) };
  await withFile(tensors, 32, async (path) => {
    const store = await ResidentWeightStore.load(path);
    const out = new Float32Array(SHAPE.dim);
    store.embed(Int32Array.from([10]), out);
    for (let i = 0; i < SHAPE.dim; i++) assert.equal(out[i], i === 10 ? 1 : -2);
  });
});

test('ResidentWeightStore.load honours an AbortSignal', async () => {
  await withFile(tinyModelTensors(SHAPE, 2), 32, async (path) => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(ResidentWeightStore.load(path, { signal: ac.signal }), { name: 'AbortError' });
  });
});

test('embed of quantized token_embd (q8_0, q4_k) equals the TypeScript codec on the same rows', async () => {
  const { quantize, dequantize } = await import('../gguf/quant.js');
  const dim = 256;
  for (const type of [GgmlType.Q8_0, GgmlType.Q4_K]) {
    const tensors = tinyModelTensors({ ...SHAPE, dim }, 4);
    const f = new Float32Array(f32Bytes(dim * SHAPE.vocab, 31).buffer);
    tensors[0] = { name: 'token_embd.weight', type, dims: [dim, SHAPE.vocab], data: quantize(type, f) };
    await withFile(tensors, 32, async (path) => {
      const store = await ResidentWeightStore.load(path);
      const tokens = Int32Array.from([3, 49, 0]);
      const out = new Float32Array(tokens.length * dim);
      store.embed(tokens, out);
      const all = dequantize(type, tensors[0]!.data, dim * SHAPE.vocab);
      tokens.forEach((t, i) => assert.deepEqual(out.subarray(i * dim, (i + 1) * dim), all.subarray(t * dim, (t + 1) * dim), `${type} token ${t}`));
    });
  }
});
