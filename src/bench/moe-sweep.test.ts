import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFigures } from './moe-sweep.js';

test('MoE sweep: generation-phase figures are the difference of two stats snapshots (hand-computed)', () => {
  const snap = (experts: Record<string, number>, denseBytes = 0) => ({ weights: { experts, streaming: { bytesRead: denseBytes } } });
  const first = snap({ passes: 1, lookups: 80, hits: 10, prefetchUsed: 4, bytesRead: 700, prefetchBytes: 100, prefetchUsedBytes: 40, ioWaitSec: 1, predictedLookups: 50, predictedCorrect: 20 }, 5);
  const last = snap({ passes: 11, lookups: 480, hits: 110, prefetchUsed: 64, bytesRead: 4700, prefetchBytes: 1100, prefetchUsedBytes: 640, ioWaitSec: 3, predictedLookups: 450, predictedCorrect: 220 }, 105);
  const d = decodeFigures(first, last)!;
  assert.equal(d.tokens, 10);
  assert.equal(d.hitRate, 100 / 400);
  // 60 of the 100 hits were experts this step's prefetch had read: 40 were in the cache before
  assert.equal(d.cacheHitRate, 40 / 400);
  // (4000 expert + 100 dense) / 10 tokens; required drops the 1000 - 600 bytes of unused prefetches.
  assert.equal(d.bytesPerToken, 410);
  assert.equal(d.requiredBytesPerToken, 370);
  assert.equal(d.ioWaitSecPerToken, 0.2);
  assert.equal(d.predictionAccuracy, 0.5);
  assert.equal(decodeFigures(undefined, last), null);
  assert.equal(decodeFigures(last, last), null);
});

test('MoE sweep --sample-seed: both children sample reproducibly with the seed, and flexinfer sampled is not its greedy run', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { execFileSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const { synthesize } = await import('../synth/synth.js');
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-moe-sweep-'));
  try {
    const path = join(dir, 'tiny-15m-q8_0.gguf');
    await synthesize(path, 'tiny-15m', 'q8_0', { seed: 2 });
    const here = fileURLToPath(new URL('.', import.meta.url));
    const child = (name: string, extra: string[]) => {
      const out = execFileSync(process.execPath, [join(here, name), path, '2', '128', '8', '16', ...extra], { encoding: 'utf8', timeout: 120_000 });
      const j = JSON.parse(out.trim().split('\n').pop()!) as { tokens?: number[]; error?: string };
      assert.ok(j.tokens, `${name}: ${j.error}`);
      return j.tokens;
    };
    const flex = (seed: string) => child('flexinfer-child.js', ['-', '-', '{}', seed]);
    const a = flex('5');
    assert.deepEqual(flex('5'), a);
    assert.notDeepEqual(flex('-'), a);
    const l = child('llamacpp-child.js', ['5']);
    assert.deepEqual(child('llamacpp-child.js', ['5']), l);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('MoE sweep --merge: points run apart make one table, bounds from each row\'s own probes (best, and best O_DIRECT: hand-computed); other files refused', async () => {
  const { mergeBudgetSweeps } = await import('./budget-sweep.js');
  const probes = (direct: number, buffered: number) => ({ probes: [{ direct: true, depth: 8, bytesPerSec: direct }, { direct: false, depth: 4, bytesPerSec: buffered }] });
  const row = (pct: number, tps: number, required: number, llama: number | null) => ({
    budget_percent: pct,
    storage: { before: probes(1e9, 2e9), after: probes(1.5e9, 4e9), best_bytes_per_sec: 4e9 },
    flexinfer: { status: 'ok', gen_tps: tps, required_bytes_per_token: required },
    llamacpp: { status: llama === null ? 'oom' : 'ok', gen_tps: llama },
  });
  const meta = { model: 'm.gguf', file_bytes: 100, threads: 2, gen_tokens: 16, prompt_tokens: 16, routing: 'as the file routes', decoding: 'sampled (temperature 1, seed 1)' };
  const out = mergeBudgetSweeps([
    { name: 'a.json', json: { ...meta, runs: 1, rows: [row(12.5, 0.5, 1e9, null)] } },
    { name: 'b.json', json: { ...meta, runs: 2, rows: [row(25, 1.2, 1e9, 0.4)] } },
  ]);
  const r = out.result as { runs: string; rows: Array<Record<string, any>> };
  assert.deepEqual(r.rows.map((x) => x.budget_percent), [25, 12.5]);
  assert.equal(r.runs, '1-2');
  const [p25, p12] = r.rows as [Record<string, any>, Record<string, any>];
  assert.equal(p25.ratio, 3); // 1.2 / 0.4
  assert.equal(p25.flexinfer_io_bound_tps, 4); // 4 GB/s / 1 GB per token
  assert.equal(p25.flexinfer_fraction_of_bound, 0.3);
  assert.equal(p25.storage.best_direct_bytes_per_sec, 1.5e9); // the best O_DIRECT probe of before and after
  assert.equal(p25.flexinfer_direct_bound_tps, 1.5);
  assert.equal(p25.flexinfer_fraction_of_direct_bound, 0.8);
  assert.equal(p12.ratio, null);
  assert.match(out.table, /12\.5%/);
  assert.match(out.svg, /<svg/);
  assert.throws(() => mergeBudgetSweeps([{ name: 'a.json', json: { ...meta, runs: 1, rows: [row(25, 1, 1e9, null)] } }, { name: 'c.json', json: { ...meta, threads: 4, runs: 1, rows: [row(50, 1, 1e9, null)] } }]), /c.json has threads 4/);
});

test('MoE sweep routing label: synthetic skew for a --router-skew file, synthetic uniform for another synth file, and the plot says which', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { routingLabel, mergeMoeSweeps } = await import('./moe-sweep.js');
  const { synthesize } = await import('../synth/synth.js');
  const { SYNTH_PRESETS } = await import('../synth/presets.js');
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-moe-label-'));
  try {
    const plain = join(dir, 'u.gguf');
    const skewed = join(dir, 's.gguf');
    const base = SYNTH_PRESETS['tiny-mixtral']!;
    await synthesize(plain, base, 'q8_0', { threads: 1 });
    await synthesize(skewed, { ...base, moe: { ...base.moe!, routerSkew: 1.5 } }, 'q8_0', { threads: 1 });
    assert.match(routingLabel(plain), /^synthetic uniform/);
    assert.equal(routingLabel(skewed), 'synthetic skew (synth --router-skew 1.5)');
    const part = (routing: string) => [{ name: 'a.json', json: { model: 'm', file_bytes: 1, threads: 2, gen_tokens: 1, prompt_tokens: 1, decoding: 'greedy', routing, runs: 1, rows: [{ budget_percent: 25, storage: { best_bytes_per_sec: 1e9 }, flexinfer: { status: 'ok', gen_tps: 1, required_bytes_per_token: 1e8 }, llamacpp: null }] } }];
    assert.match(mergeMoeSweeps(part(routingLabel(plain))).svg, /\[synthetic uniform\]/);
    assert.match(mergeMoeSweeps(part(routingLabel(skewed))).svg, /\[synthetic skew\]/);
    assert.doesNotMatch(mergeMoeSweeps(part('as the file routes')).svg, /synthetic/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
