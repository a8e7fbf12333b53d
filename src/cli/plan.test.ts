import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync } from '../gguf/reader.js';
import { planInputs } from '../weights/create.js';
import { planResidency } from '../weights/plan.js';
import { tinyModelTensors, writeTestGguf } from '../weights/testing.js';
import { estimateScratchBytes, formatPlan, modelShapes } from './plan.js';

test('plan: model shapes from metadata, a table row per layer with R/s per kind', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-plan-'));
  try {
    const path = join(dir, 'm.gguf');
    writeTestGguf(path, 'llama', 8, tinyModelTensors({ dim: 128, ffn: 320, kvDim: 64, vocab: 40, layers: 8 }, 2), 4096);
    const file = readGgufSync(path);
    const shapes = modelShapes(file);
    assert.equal(shapes.numLayers, 8);
    assert.equal(shapes.vocab, 40);
    // The test file has no head counts: one head, K and V of embedding_length (0 here) -> 0.
    assert.equal(shapes.kvBytesPerToken, 0);
    assert.equal(estimateScratchBytes({ dim: 10, ffn: 20, vocab: 7 }, 2), 4 * (2 * (60 + 60) + 7));
    const plan = planResidency(planInputs(file), { budget: Math.floor(0.5 * file.fileSize), hardware: { readBytesPerSec: 1e9 }, window: 1 });
    const text = formatPlan(plan, path, file.fileSize, { ctxSize: 128, parallel: 1, hardwareSource: 'given' });
    const rows = text.split('\n').filter((l) => /^\s*\d+\s/.test(l));
    assert.equal(rows.length, 8);
    for (const r of rows) assert.match(r, /\b(R|s|Rs)\b/);
    assert.match(text, /prefetch window 1 layer; ring 2 x/);
    assert.match(text, /tokens\/s/);
    assert.doesNotMatch(text, /budget of the file's size/);
    // A budget of exactly the file's size: KV and scratch displace some weights, which stream.
    const full = planResidency(planInputs(file), { budget: file.fileSize, hardware: { readBytesPerSec: 1e9 }, window: 1, kvBytes: Math.floor(file.fileSize / 5) });
    assert.ok(full.tensors.some((t) => t.placement === 'streamed'), 'with KV inside the budget some weights must stream');
    const fullText = formatPlan(full, path, file.fileSize, { ctxSize: 128, parallel: 1, hardwareSource: 'given' });
    assert.match(fullText, /note: +a budget of the file's size still streams .* omit --memory-budget/);
    // A budget far above the file: no layer streams, so no ring to describe; the embeddings'
    // rows (read per token where the planner keeps them on disk) are not "streaming weights".
    const huge = planResidency(planInputs(file), { budget: 1000 * file.fileSize, hardware: { readBytesPerSec: 1e9 }, window: 1, kvBytes: 64 * 1024 });
    assert.ok(huge.tensors.every((t) => t.placement !== 'streamed' && t.placement !== 'slices'));
    const hugeText = formatPlan(huge, path, file.fileSize, { ctxSize: 128, parallel: 1, hardwareSource: 'given' });
    assert.match(hugeText, /strategy: .*; no layer streams \(no ring\)/);
    assert.doesNotMatch(hugeText, /budget of the file's size|prefetch window/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
