/**
 * Embeddings: last-token embeddings against llama.cpp's (node-llama-cpp's embedding context on the
 * same file and tokens), mean / cls pooling against last-token embeddings of the prefixes (a causal
 * model's row i is the last row of prefix i), and /v1/embeddings with the openai client (batches,
 * token inputs, base64, 400s).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Model } from '../index.js';
import { startTestServer, type TestServer } from './server-testing.js';

const MODEL_ID = 'tiny';
let t: TestServer;
let model: Model;

before(async () => {
  t = await startTestServer({ modelId: MODEL_ID, seed: 15, contextSize: 256, parallel: 4 });
  model = t.model;
});

after(async () => {
  await t?.close();
});

const cosine = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
};

describe('embeddings', () => {
  test("last-token embeddings agree with llama.cpp's on the same file", async () => {
    const mod = await import('node-llama-cpp');
    const llama = await mod.getLlama({ gpu: false, build: 'never', logLevel: mod.LlamaLogLevel.error, progressLogs: false });
    try {
      const ref = await llama.loadModel({ modelPath: model.info.path });
      const ctx = await ref.createEmbeddingContext({ contextSize: 256, threads: 2 });
      for (const text of ['Once upon a time, there was a little girl.', 'The cat sat.']) {
        const tokens = model.tokenize(text);
        const ours = await model.embed(tokens, { normalize: false });
        const theirs = (await ctx.getEmbeddingFor(Array.from(tokens) as never[])).vector;
        assert.equal(ours.length, theirs.length);
        const c = cosine(ours, theirs);
        assert.ok(c > 0.999, `cosine ${c}`);
      }
      await ctx.dispose();
      await ref.dispose();
    } finally {
      await llama.dispose();
    }
  });

  test('mean and cls pooling equal the mean / first of the prefixes\' last-token states; vectors are L2-normalized', async () => {
    assert.equal(model.info.pooling, 'last'); // no pooling_type in a decoder's file
    const tokens = model.tokenize('A small test of pooling here');
    const rows: Float32Array[] = [];
    for (let i = 1; i <= tokens.length; i++) rows.push(await model.embed(tokens.subarray(0, i), { normalize: false }));
    const mean = await model.embed(tokens, { pooling: 'mean', normalize: false });
    const cls = await model.embed(tokens, { pooling: 'cls', normalize: false });
    for (let d = 0; d < mean.length; d++) {
      const want = rows.reduce((s, r) => s + r[d]!, 0) / rows.length;
      assert.ok(Math.abs(mean[d]! - want) < 1e-3 * (1 + Math.abs(want)), `dim ${d}: ${mean[d]} vs ${want}`);
    }
    assert.ok(cosine(cls, rows[0]!) > 0.9999);
    const unit = await model.embed(tokens);
    assert.ok(Math.abs(Math.hypot(...unit) - 1) < 1e-5);
    assert.ok(cosine(unit, rows[rows.length - 1]!) > 0.9999);
  });

  test('/v1/embeddings: batches of strings or token ids, base64, usage; bad input is a 400 naming it', async () => {
    const texts = ['first text', 'the second one', 'third'];
    const r = await t.client.embeddings.create({ model: MODEL_ID, input: texts, encoding_format: 'float' });
    assert.equal(r.object, 'list');
    assert.deepEqual(r.data.map((d) => d.index), [0, 1, 2]);
    let numTokens = 0;
    for (const [i, d] of r.data.entries()) {
      const want = await model.embed(texts[i]!);
      assert.equal(d.embedding.length, model.info.dim);
      assert.ok(cosine(d.embedding, want) > 0.9999);
      numTokens += model.tokenize(texts[i]!, { special: true }).length;
    }
    assert.equal(r.usage.prompt_tokens, numTokens);
    const ids = Array.from(model.tokenize('first text', { special: true }));
    const byIds = await t.client.embeddings.create({ model: MODEL_ID, input: [ids, ids.slice(0, 2)], encoding_format: 'float' });
    assert.ok(cosine(byIds.data[0]!.embedding, r.data[0]!.embedding) > 0.9999);
    // base64: little-endian float32, what the openai client decodes by default.
    const b64 = await t.client.embeddings.create({ model: MODEL_ID, input: 'third' });
    assert.ok(cosine(b64.data[0]!.embedding, r.data[2]!.embedding) > 0.9999);
    const bad = async (body: object, param: string): Promise<void> => {
      const res = await fetch(`${t.base}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL_ID, ...body }) });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: { param: string } }).error.param, param);
    };
    await bad({ input: ['ok', ''] }, 'input[1]');
    await bad({ input: 'x', dimensions: 3 }, 'dimensions');
    await bad({ input: [[1, 99999999]] }, 'input[0]');
    await bad({ input: 'x', extra: 1 }, 'extra');
  });
});
