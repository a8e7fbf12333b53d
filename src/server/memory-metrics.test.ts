/**
 * flexinfer_memory_* (memory-metrics.ts) on a real server with a memory budget: the parts add
 * up to the budget as the engine's pool accounts it, the counters are the pool's, and a server
 * without a budget exports none of them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { loadModel, type Model } from '../index.js';
import { InsufficientMemoryError } from '../errors.js';
import { createServer, type FlexinferServer } from './server.js';
import { Metrics } from './metrics.js';
import { registerMemoryMetrics } from './memory-metrics.js';
import { parsePrometheus, type Samples } from './prometheus-testing.js';

let dir: string;
let model: Model;
let server: FlexinferServer;
let base: string;
let budget = 0;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-memory-metrics-'));
  const path = join(dir, 'tiny.gguf');
  await synthesize(path, 'tiny-15m', 'q8_0', { seed: 31 });
  // A KV floor above the runtime reserve (at most 10 MiB at parallel 2) plus two sequences (12
  // chunks of 576 KiB each): the reserve lives in its unused part.
  const load = { threads: 2, contextSize: 256, parallel: 2, kvFloor: 24 << 20 } as const;
  const min = await loadModel(path, { ...load, memoryBudget: 1 }).then(
    () => assert.fail('a 1-byte budget loaded'),
    (e: unknown) => (e instanceof InsufficientMemoryError ? e.minimum : assert.fail(String(e))),
  );
  budget = min + (4 << 20);
  model = await loadModel(path, { ...load, memoryBudget: budget });
  server = createServer(model, { modelId: 'tiny', port: 0, parallel: 2 });
  base = await server.listen();
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

test('flexinfer_memory_*: the split adds up to the budget, the counters are the pool\'s', async () => {
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }) });
  assert.equal(r.status, 200);
  const s = await scrape();
  const pool = (await model.stats()).pool as { budget: number; scratchBytes: number; runtimeBytes: number; floorBytes: number; poolBytes: number; level: number; events: Record<string, number> };
  assert.equal(s.get('flexinfer_memory_budget_bytes'), budget);
  assert.equal(pool.budget, budget);
  const part = (p: string) => s.get(`flexinfer_memory_bytes{part="${p}"}`)!;
  assert.equal(part('scratch'), pool.scratchBytes);
  assert.equal(s.get('flexinfer_memory_kv_floor_bytes'), pool.floorBytes);
  // Idle, KV within what the runtime reserve leaves of the floor: the pool is the weights'
  // memory plus what is free.
  // The reserve (10 MiB at parallel 2) as far as the 4 MiB above the minimum allow.
  assert.ok(pool.runtimeBytes > 0 && pool.runtimeBytes <= 4 << 20, `runtime ${pool.runtimeBytes}`);
  assert.ok(part('kv_live') + part('kv_prefix_cache') <= pool.floorBytes - pool.runtimeBytes);
  assert.equal(part('resident_weights') + part('stream_buffers') + part('weights_loading') + part('free'), pool.poolBytes);
  assert.equal(part('runtime'), pool.runtimeBytes);
  assert.equal(pool.scratchBytes + pool.floorBytes + pool.poolBytes, budget);
  assert.ok(part('resident_weights') > 0);
  assert.ok(s.get('flexinfer_memory_streamed_bytes_per_token')! > 0, 'a tight budget streams');
  assert.equal(s.get('flexinfer_memory_weight_level'), pool.level);
  for (const [name, key] of [['demotions_total', 'demotions'], ['promotions_total', 'promotions'], ['kv_refusals_total', 'kvRefusals']] as const) {
    assert.equal(s.get(`flexinfer_memory_${name}`), pool.events[key], name);
  }
});

test('no flexinfer_memory_* without a budget', () => {
  const m = new Metrics('x');
  registerMemoryMetrics(m);
  const text = m.render({ inFlight: 0, parallel: 1, stats: { pool: { mode: 'static', budget: null } } });
  assert.doesNotMatch(text, /flexinfer_memory_/);
  parsePrometheus(text);
});
