/**
 * A default context under a budget too small for its KV shrinks to the largest multiple of 256
 * tokens the budget holds (context-fit.ts); a given contextSize never changes. The reference is
 * the engine with an explicit contextSize: the fitted size must load when given, the next step
 * up must be refused, and both must generate the same tokens. The model: tiny-15m with a
 * 4096-token training context, so its default context's KV (27 MiB) outweighs its weights.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { synthesize } from '../synth/synth.js';
import { SYNTH_PRESETS } from '../synth/presets.js';
import { loadModel, type LoadModelOptions } from './model.js';
import { InsufficientMemoryError } from '../errors.js';
import { CONTEXT_STEP, MIN_FITTED_CONTEXT, fittedContexts } from './context-fit.js';
import { minimumBudget } from './testing.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-ctx-fit-'));
const MODEL = join(dir, 'tiny-ctx4k-q8_0.gguf');
const BIN = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));
const BASE = { threads: 1, parallel: 1 } as const;

before(async () => {
  await synthesize(MODEL, { ...SYNTH_PRESETS['tiny-15m']!, name: 'tiny-ctx4k', context: 4096 }, 'q8_0', { seed: 5 });
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** The minimum budget for these options (the error a 1-byte budget gives). */
const minimumAt = (options: LoadModelOptions) => minimumBudget(MODEL, { ...BASE, ...options });

async function greedy(options: LoadModelOptions): Promise<{ contextSize: number; tokens: number[] }> {
  const model = await loadModel(MODEL, { ...BASE, ...options });
  try {
    const r = await model.complete('Once upon a time', { temperature: 0, repeatPenalty: 1, maxTokens: 6 });
    return { contextSize: model.info.contextSize, tokens: [...r.tokens] };
  } finally {
    await model.dispose();
  }
}

test('fittedContexts: multiples of 256 below the default, largest first, down to 256', () => {
  assert.deepEqual(fittedContexts(1024), [768, 512, 256]);
  assert.deepEqual(fittedContexts(1000), [768, 512, 256]);
  assert.deepEqual(fittedContexts(257), [256]);
  assert.deepEqual(fittedContexts(256), []);
  assert.equal(fittedContexts(4096).length, 4096 / CONTEXT_STEP - 1);
  assert.equal(MIN_FITTED_CONTEXT, 256);
});

for (const memoryPool of ['elastic', 'static'] as const) {
  test(`${memoryPool}: a budget between the minimums at 256 and 4096 tokens loads the default at the largest context it holds; the same as given; a given context is not changed`, async () => {
    const full = await minimumAt({ memoryPool, contextSize: 4096 });
    const least = await minimumAt({ memoryPool, contextSize: MIN_FITTED_CONTEXT });
    assert.ok(full > least + 8 * 2 ** 20, `KV of 4096 tokens must weigh: ${full} vs ${least}`);
    const budget = Math.floor((least + full) / 2);

    const fitted = await greedy({ memoryPool, memoryBudget: budget });
    const c = fitted.contextSize;
    assert.ok(c % CONTEXT_STEP === 0 && c >= MIN_FITTED_CONTEXT && c < 4096, `fitted context ${c}`);
    // The reference: the engine given that context loads it, and the next step up is refused.
    const given = await greedy({ memoryPool, memoryBudget: budget, contextSize: c });
    assert.equal(given.contextSize, c);
    assert.deepEqual(fitted.tokens, given.tokens);
    await assert.rejects(loadModel(MODEL, { ...BASE, memoryPool, memoryBudget: budget, contextSize: c + CONTEXT_STEP }), InsufficientMemoryError);
    // A given context is never shrunk.
    await assert.rejects(loadModel(MODEL, { ...BASE, memoryPool, memoryBudget: budget, contextSize: 4096 }), InsufficientMemoryError);
    // Without a budget the default stands.
    assert.equal((await greedy({ memoryPool })).contextSize, 4096);

    if (memoryPool === 'elastic') {
      // `flexinfer plan` makes the same choice.
      const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'plan', MODEL, '--memory-budget', String(budget), '--json']);
      assert.equal((JSON.parse(stdout) as { ctxSize: number }).ctxSize, c);
    }
  });
}

test('a budget below the minimum at 256 tokens: the error names that minimum, the least memory the model runs in', async () => {
  const least = await minimumAt({ contextSize: MIN_FITTED_CONTEXT });
  await assert.rejects(loadModel(MODEL, { ...BASE, memoryBudget: least - 1 }), (e: unknown) => {
    assert.ok(e instanceof InsufficientMemoryError, String(e));
    assert.equal(e.minimum, least);
    assert.match(e.message, /one sequence of 256 tokens/);
    return true;
  });
});
