/**
 * The vllm:* metrics routers read (metrics.ts, VLLM_METRICS) against what 16 concurrent clients
 * saw on loopback:
 * - gauges: while 16 long streams are open on a server running 4 at a time, the clients that
 *   received tokens are vllm:num_requests_running and the others vllm:num_requests_waiting;
 *   the KV pool is in use while they run and free (cached prefixes do not count) after;
 * - counters: prompt / generation tokens and prefix-cache queries / hits move by the sums of
 *   the usage the clients received, request_success_total by their finish reasons;
 * - histograms: one observation per request (TTFT, e2e) or per token after the first (ITL),
 *   with sums bounded by the latencies the clients measured;
 * - cache_config_info: block_size * num_gpu_blocks tokens fit the KV pool the engine reports.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { synthesize } from '../synth/synth.js';
import { loadModel, type Model } from '../index.js';
import { createServer, type FlexinferServer } from './server.js';
import { parsePrometheus, vllm, type Samples } from './prometheus-testing.js';

const MODEL_ID = 'tiny-metrics';
const PARALLEL = 4;
const NUM_CLIENTS = 16;
let dir: string;
let model: Model;
let server: FlexinferServer;
let base: string;
let client: OpenAI;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-server-metrics-'));
  const path = join(dir, 'tiny.gguf');
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 21 });
  model = await loadModel(path, { threads: 2, contextSize: 2048, parallel: PARALLEL, kv: 'vtensor' });
  server = createServer(model, { modelId: MODEL_ID, port: 0, parallel: PARALLEL, maxQueue: 64 });
  base = await server.listen();
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  await server?.close();
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function scrape(): Promise<Samples> {
  const r = await fetch(`${base}/metrics`);
  assert.equal(r.status, 200);
  return parsePrometheus(await r.text());
}

const g = (s: Samples, name: string): number => vllm(s, name, MODEL_ID);

test('gauges: 16 open streams, 4 running: running / waiting equal the clients that got tokens / did not; KV usage', async () => {
  const idle = await scrape();
  assert.equal(g(idle, 'num_requests_running'), 0);
  assert.equal(g(idle, 'num_requests_waiting'), 0);
  assert.equal(g(idle, 'kv_cache_usage_perc'), 0);

  // 16 long streams; each client records whether it has seen a token and whether it ended.
  const state = Array.from({ length: NUM_CLIENTS }, () => ({ tokens: 0, ended: false }));
  const aborts = state.map(() => new AbortController());
  const runs = state.map(async (st, i) => {
    try {
      const stream = await client.completions.create(
        { model: MODEL_ID, prompt: `Client ${i} tells a long story about`, max_tokens: 1900, temperature: 0, stream: true },
        { signal: aborts[i]!.signal },
      );
      for await (const c of stream) if (c.choices[0]?.text) st.tokens++;
    } catch {
      // aborted below
    }
    st.ended = true;
  });
  const snapshot = (): string => state.map((s) => (s.ended ? 'E' : s.tokens > 0 ? 'R' : 'W')).join('');
  let checked = false;
  try {
    for (let attempt = 0; attempt < 50 && !checked; attempt++) {
      await new Promise((r) => setTimeout(r, 50));
      const before = snapshot();
      if (before.split('').filter((c) => c === 'R').length < PARALLEL) continue; // not all started yet
      const s = await scrape();
      await new Promise((r) => setTimeout(r, 100)); // tokens written before the scrape have arrived
      const afterSnap = snapshot();
      if (afterSnap !== before) continue; // a request started or ended meanwhile: look again
      // A client with no token yet may still be sending its request (on a loaded machine: seen at
      // load average 20, 9 of 12 waiting clients had reached the server): look again until all have.
      if (g(s, 'num_requests_running') + g(s, 'num_requests_waiting') !== NUM_CLIENTS - afterSnap.split('').filter((c) => c === 'E').length) continue;
      const running = afterSnap.split('').filter((c) => c === 'R').length;
      const waiting = afterSnap.split('').filter((c) => c === 'W').length;
      assert.equal(g(s, 'num_requests_running'), running, `clients ${afterSnap}`);
      assert.equal(g(s, 'num_requests_waiting'), waiting, `clients ${afterSnap}`);
      assert.equal(running, PARALLEL);
      const usage = g(s, 'kv_cache_usage_perc');
      assert.ok(usage > 0 && usage <= 1, `kv_cache_usage_perc ${usage}`);
      assert.equal(g(s, 'gpu_cache_usage_perc'), usage, 'the older name carries the same value');
      checked = true;
    }
    assert.ok(checked, `no stable moment with ${PARALLEL} running streams: ${snapshot()}`);
  } finally {
    // also on a failure: 16 streams left running would spoil the next test's counters
    for (const a of aborts) a.abort();
    await Promise.all(runs);
  }
  // The engine frees aborted sequences at its next step.
  let s = await scrape();
  for (let i = 0; i < 100 && g(s, 'num_requests_running') + g(s, 'num_requests_waiting') > 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    s = await scrape();
  }
  assert.equal(g(s, 'num_requests_running'), 0);
  assert.equal(g(s, 'num_requests_waiting'), 0);
  assert.equal(g(s, 'kv_cache_usage_perc'), 0, 'no live sequence: the pool is free');
});

test('counters and histograms: 16 concurrent clients, the vllm:* deltas equal the sums of what they received', async () => {
  // Completed requests only here; the previous test's cut streams are in the "before" scrape.
  await new Promise((r) => setTimeout(r, 50));
  const before = await scrape();
  const shared = 'You are a helpful assistant. Answer in one short sentence, please.';
  const results = await Promise.all(
    Array.from({ length: NUM_CLIENTS }, async (_, i) => {
      const t0 = performance.now();
      if (i % 2 === 0) {
        let finish = '';
        let usage: OpenAI.CompletionUsage | undefined;
        const stream = await client.chat.completions.create({
          model: MODEL_ID,
          messages: [
            { role: 'system', content: shared },
            { role: 'user', content: `Question ${i % 4}?` },
          ],
          max_tokens: 6 + (i % 5),
          temperature: 0,
          stream: true,
          stream_options: { include_usage: true },
        });
        for await (const c of stream) {
          if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
          if (c.usage) usage = c.usage;
        }
        return { usage: usage!, finish, ms: performance.now() - t0 };
      }
      const r = await client.completions.create({ model: MODEL_ID, prompt: `${shared} Item ${i % 3}:`, max_tokens: 5 + (i % 4), temperature: 0 });
      return { usage: r.usage!, finish: r.choices[0]!.finish_reason, ms: performance.now() - t0 };
    }),
  );
  const after = await scrape();
  const d = (name: string, extra = ''): number => vllm(after, name, MODEL_ID, extra) - (before.has(`vllm:${name}{model_name="${MODEL_ID}"${extra ? `,${extra}` : ''}}`) ? vllm(before, name, MODEL_ID, extra) : 0);
  const sum = (f: (r: (typeof results)[number]) => number): number => results.reduce((a, r) => a + f(r), 0);

  assert.equal(d('prompt_tokens_total'), sum((r) => r.usage.prompt_tokens));
  assert.equal(d('generation_tokens_total'), sum((r) => r.usage.completion_tokens));
  const cached = sum((r) => r.usage.prompt_tokens_details?.cached_tokens ?? 0);
  assert.ok(cached > 0, 'the shared system prompt is served from the prefix cache');
  assert.equal(d('prefix_cache_hits_total'), cached);
  assert.equal(d('prefix_cache_queries_total'), sum((r) => r.usage.prompt_tokens));
  assert.equal(d('gpu_prefix_cache_hits_total'), cached, 'older name, same value');
  assert.equal(d('gpu_prefix_cache_queries_total'), sum((r) => r.usage.prompt_tokens));
  for (const reason of ['stop', 'length']) {
    const seen = results.filter((r) => r.finish === reason).length;
    const key = `finished_reason="${reason}"`;
    const delta = after.has(`vllm:request_success_total{model_name="${MODEL_ID}",${key}}`) ? d('request_success_total', key) : 0;
    assert.equal(delta, seen, `request_success_total{${key}}`);
  }
  // Histograms: one e2e and one TTFT per request, one ITL per token after the first.
  assert.equal(d('e2e_request_latency_seconds_count'), NUM_CLIENTS);
  assert.equal(d('time_to_first_token_seconds_count'), results.filter((r) => r.usage.completion_tokens > 0 || r.finish === 'stop').length);
  assert.equal(d('inter_token_latency_seconds_count'), sum((r) => Math.max(0, r.usage.completion_tokens - 1)));
  const e2eSum = d('e2e_request_latency_seconds_sum');
  assert.ok(e2eSum > 0 && e2eSum <= sum((r) => r.ms) / 1000, `server e2e ${e2eSum} s vs clients ${sum((r) => r.ms) / 1000} s`);
  const ttftSum = d('time_to_first_token_seconds_sum');
  assert.ok(ttftSum > 0 && ttftSum <= e2eSum, `TTFT sum ${ttftSum} s`);
  assert.ok(d('inter_token_latency_seconds_sum') <= e2eSum);
  const busy = await scrape();
  assert.equal(g(busy, 'num_requests_running') + g(busy, 'num_requests_waiting'), 0);
});

test('cache_config_info: block_size x num_gpu_blocks tokens fit the KV pool the engine reports, within one block', async () => {
  const s = await scrape();
  const key = [...s.keys()].find((k) => k.startsWith('vllm:cache_config_info{'));
  assert.ok(key, 'cache_config_info is exported');
  assert.equal(s.get(key), 1);
  const label = (name: string): number => Number(new RegExp(`${name}="(\\d+)"`).exec(key)![1]);
  const blockSize = label('block_size');
  const numBlocks = label('num_gpu_blocks');
  assert.ok(Number.isInteger(blockSize) && blockSize > 0 && Number.isInteger(numBlocks) && numBlocks > 0, key);
  // Bytes of one token over all layers' K and V in f16, from the model's shape (not from the KV code).
  const info = model.info;
  const bytesPerToken = info.numLayers * 2 * info.numKvHeads * info.headDim * 2;
  const capacity = s.get('flexinfer_engine_kv_capacity_bytes')!;
  const poolTokens = capacity / bytesPerToken;
  assert.ok(blockSize * numBlocks <= poolTokens, `${blockSize} x ${numBlocks} > ${poolTokens}`);
  assert.ok(blockSize * (numBlocks + 1) > poolTokens, `${blockSize} x ${numBlocks} leaves more than a block of ${poolTokens}`);
  // A vTensor chunk is a whole number of 4 KiB pages of one tensor's rows.
  assert.equal((blockSize * info.numKvHeads * info.headDim * 2) % 4096, 0);
});
