/** The expert-cache /metrics families from a real MoE model's statistics, parsed strictly. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../synth/synth.js';
import { loadModel } from '../engine/model.js';
import { Metrics } from './metrics.js';
import { parsePrometheus } from './prometheus-testing.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-moe-metrics-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('/metrics: expert hit rate per layer, reads, prediction accuracy and I/O wait equal the engine statistics', async () => {
  const path = join(dir, 'm.gguf');
  await synthesize(path, 'tiny-mixtral', 'q8_0', { seed: 3 });
  const model = await loadModel(path, { threads: 2, contextSize: 64, parallel: 1, memoryBudget: '28MiB' });
  try {
    await model.complete('Once upon a time', { temperature: 0, maxTokens: 6 });
    const stats = await model.stats();
    const e = (stats.weights as { experts: { layerHits: number[]; layerLookups: number[]; lookups: number; hits: number; bytesRead: number; predictionAccuracy: number; ioWaitSec: number; numSlots: number } }).experts;
    const samples = parsePrometheus(new Metrics('m').render({ inFlight: 0, parallel: 1, stats }));
    assert.equal(samples.get('flexinfer_expert_cache_lookups_total'), e.lookups);
    assert.equal(samples.get('flexinfer_expert_cache_hits_total'), e.hits);
    e.layerHits.forEach((h, l) => assert.equal(samples.get(`flexinfer_expert_cache_hit_rate{layer="${l}"}`), h / e.layerLookups[l]!));
    assert.equal(samples.get('flexinfer_expert_bytes_read_total'), e.bytesRead);
    assert.equal(samples.get('flexinfer_expert_prediction_accuracy'), e.predictionAccuracy);
    assert.equal(samples.get('flexinfer_expert_io_wait_seconds_total'), e.ioWaitSec);
    assert.equal(samples.get('flexinfer_expert_cache_slots'), e.numSlots);
    assert.ok(e.lookups > 0 && e.layerHits.length === 4);
  } finally {
    await model.dispose();
  }
  // A dense model has no expert families.
  const dense = new Metrics('d').render({ inFlight: 0, parallel: 1, stats: { weights: { mode: 'resident' } } });
  assert.ok(!dense.includes('flexinfer_expert_'));
});
