/**
 * A streaming model behind the server: /metrics shows its reads (rate per path, I/O wait per
 * token, reads in flight), and when the model file is truncated under it, the request in
 * flight ends with an OpenAI-shaped 500, later requests get the same, and /health turns 503.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { InsufficientMemoryError, loadModel, type Model } from '../index.js';
import { createServer, type FlexinferServer } from './server.js';
import { parsePrometheus } from './prometheus-testing.js';

let dir: string;
let path: string;
let model: Model;
let server: FlexinferServer;
let base: string;
const LOAD = { threads: 1, contextSize: 2048, parallel: 2 };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-io-server-'));
  const source = join(dir, 'source.gguf');
  await synthesize(source, 'tiny-15m', 'q4_0', { seed: 3 });
  path = join(dir, 'tiny.gguf');
  copyFileSync(source, path);
  // The smallest budget this engine takes: nearly every weight streams.
  let minimum = 0;
  await loadModel(path, { ...LOAD, memoryBudget: 1 << 20 }).catch((e: unknown) => {
    assert.ok(e instanceof InsufficientMemoryError, String(e));
    minimum = e.minimum;
  });
  model = await loadModel(path, { ...LOAD, memoryBudget: minimum + (1 << 20) });
  server = createServer(model, { modelId: 'tiny', port: 0, parallel: 2 });
  base = await server.listen();
});

after(async () => {
  await server?.close();
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function post(body: unknown): Promise<Response> {
  return fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

test('/metrics: read rate per path, I/O wait per token and reads in flight of a streaming model', async () => {
  const r = await post({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
  assert.equal(r.status, 200);
  const samples = parsePrometheus(await (await fetch(`${base}/metrics`)).text());
  const stats = (await model.stats()) as { weights: { streaming: { pathRates: Record<string, { bytes: number }>; ioWaitSecPerToken: number } } };
  const st = stats.weights.streaming;
  const direct = samples.get('flexinfer_io_read_bytes_total{path="direct"}')!;
  const buffered = samples.get('flexinfer_io_read_bytes_total{path="buffered"}')!;
  assert.ok(direct + buffered > 0, 'weights were read from the file');
  // The scrape came after the request: the engine read nothing in between.
  assert.equal(direct, st.pathRates['direct']!.bytes);
  assert.equal(buffered, st.pathRates['buffered']!.bytes);
  const rate = (p: string) => samples.get(`flexinfer_io_read_bytes_per_second{path="${p}"}`)!;
  assert.ok(rate('direct') > 0 || rate('buffered') > 0);
  if (direct === 0) assert.equal(rate('direct'), 0);
  assert.ok(samples.get('flexinfer_io_wait_seconds_per_token')! >= 0);
  assert.equal(samples.get('flexinfer_io_wait_seconds_per_token'), st.ioWaitSecPerToken);
  assert.ok(samples.get('flexinfer_io_mean_reads_in_flight')! >= 1);
  assert.ok(samples.has('flexinfer_io_reads_in_flight'));
  assert.ok(samples.get('flexinfer_io_read_latency_seconds{quantile="0.99"}')! >= samples.get('flexinfer_io_read_latency_seconds{quantile="0.5"}')!);
});

test('a model file truncated under a streaming request: OpenAI-shaped 500s and an unhealthy /health', async () => {
  assert.equal((await fetch(`${base}/health`)).status, 200);
  const res = await post({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 1800, temperature: 0, stream: true });
  assert.equal(res.status, 200);
  const events: Array<Record<string, any>> = [];
  let truncated = false;
  let buf = '';
  const decoder = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(part, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const data = buf.slice(0, i).replace(/^data: /, '');
      buf = buf.slice(i + 2);
      if (data === '[DONE]') continue;
      events.push(JSON.parse(data));
      if (!truncated && events.length >= 2) {
        truncateSync(path, 4096); // mid-generation
        truncated = true;
      }
    }
  }
  assert.ok(truncated, 'the stream ran long enough to truncate the file under it');
  const last = events.at(-1)!;
  assert.ok(last.error, `the stream ends with an error event, got ${JSON.stringify(last).slice(0, 200)}`);
  assert.equal(last.error.type, 'server_error');
  assert.equal(last.error.code, 'model_file_changed');
  assert.ok(last.error.message.includes(path) && /truncated/.test(last.error.message), last.error.message);
  // Later requests: the same error as a 500 in the OpenAI shape.
  const again = await post({ model: 'tiny', prompt: 'Hello', max_tokens: 4 });
  assert.equal(again.status, 500);
  const body = (await again.json()) as { error: { type: string; code: string; message: string } };
  assert.equal(body.error.type, 'server_error');
  assert.equal(body.error.code, 'model_file_changed');
  assert.doesNotMatch(body.error.message, /\n\s+at /, 'no stack trace');
  // /health: 503 with the reason, so a router sends traffic elsewhere.
  const health = await fetch(`${base}/health`);
  assert.equal(health.status, 503);
  const hb = (await health.json()) as { status: string; failing: Record<string, string> };
  assert.equal(hb.status, 'unhealthy');
  assert.match(hb.failing['model']!, /truncated/);
});
