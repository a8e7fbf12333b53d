/**
 * A model file that changes under a streaming store: truncated, written to, replaced or
 * deleted while tokens run. Each ends the run with a ModelFileChangedError naming the file
 * and the change, at the latest at the next token (never wrong weights, never a hang).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, mkdtempSync, renameSync, rmSync, truncateSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelFileChangedError } from '../errors.js';
import { readGgufSync } from '../gguf/reader.js';
import { planInputs } from './create.js';
import { planResidency } from './plan.js';
import { StreamingWeightStore } from './streaming.js';
import { tinyModelTensors, writeTestGguf } from './testing.js';

const SHAPE = { dim: 256, ffn: 640, kvDim: 128, vocab: 96, layers: 12 };

/** Runs `tokens` passes over all layers (acquire + release each). */
function runTokens(store: StreamingWeightStore, tokens: number): void {
  for (let t = 0; t < tokens; t++) {
    for (let l = 0; l < store.numLayers; l++) {
      store.acquire(l);
      store.release(l);
    }
  }
}

async function withStore(change: (path: string, dir: string) => void, check: (e: ModelFileChangedError, path: string) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fi-change-'));
  const path = join(dir, 'm.gguf');
  try {
    writeTestGguf(path, 'llama', SHAPE.layers, tinyModelTensors(SHAPE, 5), 4096);
    const file = readGgufSync(path);
    const plan = planResidency(planInputs(file), { budget: Math.floor(0.4 * file.fileSize), hardware: { readBytesPerSec: 1e9 }, window: 2 });
    assert.ok(plan.streamedBytesPerToken > 0);
    const store = await StreamingWeightStore.open(file, plan, {});
    try {
      runTokens(store, 2); // fine before the change
      change(path, dir);
      assert.throws(
        () => runTokens(store, 3),
        (e: unknown) => {
          assert.ok(e instanceof ModelFileChangedError, `got ${String(e)}`);
          assert.equal(e.path, path);
          assert.ok(e.message.includes(path));
          check(e, path);
          return true;
        },
      );
    } finally {
      store.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a truncated model file: ModelFileChangedError (truncated) with the sizes', async () => {
  await withStore(
    (path) => truncateSync(path, 8192),
    (e) => {
      assert.equal(e.reason, 'truncated');
      assert.match(e.message, /was truncated while the model was running/);
      assert.match(e.message, /load it again/);
    },
  );
});

test('a model file written to in place: ModelFileChangedError (modified)', async () => {
  await withStore(
    (path) => appendFileSync(path, new Uint8Array(4096)),
    (e) => assert.equal(e.reason, 'modified'),
  );
});

test('a model file replaced by another (rename over it): ModelFileChangedError (replaced)', async () => {
  await withStore(
    (path, dir) => {
      const other = join(dir, 'other.gguf');
      copyFileSync(path, other);
      renameSync(other, path);
    },
    (e) => {
      assert.equal(e.reason, 'replaced');
      assert.match(e.message, /was replaced while the model was running: the path now names another file/);
    },
  );
});

test('a deleted model file: ModelFileChangedError (deleted)', async () => {
  await withStore(
    (path) => unlinkSync(path),
    (e) => assert.equal(e.reason, 'deleted'),
  );
});
