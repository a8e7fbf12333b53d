import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bestBeside, diskDay, mergeBudgetSweeps, type StorageMeasurement } from './budget-sweep.js';
import { InvalidOptionError } from '../errors.js';

const meta = { model: 'm.gguf', file_bytes: 1000, threads: 2, gen_tokens: 32, prompt_tokens: 16, runs: 3, compute_bytes_per_sec: 1e10 };

function row(pct: number, flex: number | null, llama: number | null): Record<string, unknown> {
  return {
    budget_percent: pct,
    flexinfer: { gen_tps: flex, status: flex == null ? 'oom' : 'ok' },
    llamacpp: llama == null ? null : { gen_tps: llama, status: 'ok' },
    ratio: flex != null && llama != null ? flex / llama : null,
    flexinfer_streamed_bytes_per_token: 100,
    flexinfer_streamed_bytes_per_sec: 1e9,
    flexinfer_fraction_of_best_path: 0.9,
    flexinfer_io_bound_tps: 3,
    storage: { best_path: 'direct@32', best_path_bytes_per_sec: 2e9, fio_bytes_per_sec: 1.9e9, disk_day: 'middling' },
  };
}

test('merged sweep parts: rows from the largest budget down, monotonic check over all parts, table and plot', () => {
  const parts = [
    { name: 'p50.json', json: { ...meta, rows: [row(50, 2.5, 1.2)] } },
    { name: 'p100.json', json: { ...meta, rows: [row(100, 20, 15)] } },
    { name: 'p75.json', json: { ...meta, rows: [row(75, 5, 1.5)] } },
  ];
  const out = mergeBudgetSweeps(parts);
  const r = out.result as { rows: Array<{ budget_percent: number }>; flexinfer_monotonic: boolean };
  assert.deepEqual(r.rows.map((x) => x.budget_percent), [100, 75, 50]);
  assert.equal(r.flexinfer_monotonic, true);
  assert.match(out.table, /falls monotonically/);
  assert.match(out.svg, /llama\.cpp/);
  // 25% faster than 50%: not monotonic.
  const bad = mergeBudgetSweeps([...parts, { name: 'p25.json', json: { ...meta, rows: [row(25, 3, 1)] } }]);
  assert.equal((bad.result as { flexinfer_monotonic: boolean }).flexinfer_monotonic, false);
  assert.match(bad.table, /does NOT fall monotonically/);
});

test('merging refuses parts of another file or settings, repeated points and other JSON', () => {
  const a = { name: 'a.json', json: { ...meta, rows: [row(75, 5, 1.5)] } };
  assert.throws(() => mergeBudgetSweeps([a, { name: 'b.json', json: { ...meta, runs: 1, rows: [row(50, 2, 1)] } }]), (e: unknown) => e instanceof InvalidOptionError && /b\.json has runs 1/.test(e.message));
  assert.throws(() => mergeBudgetSweeps([a, { name: 'c.json', json: { ...meta, rows: [row(75, 5, 1.5)] } }]), /75% appears in more than one file/);
  assert.throws(() => mergeBudgetSweeps([a, { name: 'd.json', json: { rows: 3 } }]), /d\.json is not the JSON of a budget sweep/);
  assert.throws(() => mergeBudgetSweeps([]), InvalidOptionError);
});

test('best path beside a point: the highest before/after mean of one path, not the highest single probe', () => {
  const m = (rates: Array<[boolean, number, number]>): StorageMeasurement => ({
    at: '',
    probes: rates.map(([direct, depth, bytesPerSec]) => ({ direct, depth, bytes: 1, seconds: 1, bytesPerSec })),
    best: { direct: true, depth: 1, bytes: 1, seconds: 1, bytesPerSec: 0 },
    fio: null,
  });
  // buffered@4 peaks at 3.0 once but means (3.0 + 1.0) / 2 = 2.0; direct@32 means 2.2.
  const before = m([[true, 32, 2.0e9], [false, 4, 3.0e9]]);
  const after = m([[true, 32, 2.4e9], [false, 4, 1.0e9]]);
  const best = bestBeside(before, after);
  assert.equal(best.path, 'direct@32');
  assert.ok(Math.abs(best.bytesPerSec - 2.2e9) < 1);
  assert.equal(bestBeside(before, after, (p) => !p.direct).path, 'buffered@4');
  // A merged row gains the best O_DIRECT path beside it and the streamed rate's share of it.
  const withProbes = { ...row(50, 2.5, 1.2), storage: { ...(row(50, 2.5, 1.2).storage as object), before, after } };
  const out = mergeBudgetSweeps([{ name: 'p50.json', json: { ...meta, rows: [withProbes] } }]);
  const r = (out.result as { rows: Array<Record<string, any>> }).rows[0]!;
  assert.equal(r.storage.best_direct_path, 'direct@32');
  assert.equal(r.flexinfer_fraction_of_best_direct_path, 0.455); // 1.0 / 2.2 GB/s
  assert.match(out.table, /direct@32 2\.20\s+46%/); // 45.5% shown rounded
  assert.equal(diskDay(2.5e9), 'fast');
  assert.equal(diskDay(1.0e9), 'slow');
});

test('a merged row gains the best path measured inside the budget\'s cgroup and the streamed rate\'s share of it, beside the outside one', () => {
  const m = (rates: Array<[boolean, number, number]>) => ({
    at: '',
    probes: rates.map(([direct, depth, bytesPerSec]) => ({ direct, depth, bytes: 1, seconds: 1, bytesPerSec })),
    best: { direct: true, depth: 1, bytes: 1, seconds: 1, bytesPerSec: 0 },
    fio: null,
  });
  const outside = { before: m([[true, 32, 2.0e9], [false, 8, 4.0e9]]), after: m([[true, 32, 2.0e9], [false, 8, 4.0e9]]) };
  // Inside: buffered@8 means (1.0 + 2.0) / 2 = 1.5, below direct@32's 1.9.
  const inside = { before: { ...m([[true, 32, 1.8e9], [false, 8, 1.0e9]]), held_bytes: 5 }, after: { ...m([[true, 32, 2.0e9], [false, 8, 2.0e9]]), held_bytes: 5 } };
  const base = row(25, 3, 2);
  const out = mergeBudgetSweeps([{ name: 'p25.json', json: { ...meta, rows: [{ ...base, flexinfer_streaming: { disk_bytes_per_streamed_byte: 1.046 }, storage: { ...(base.storage as object), ...outside, in_cgroup: inside } }] } }]);
  const r = (out.result as { rows: Array<Record<string, any>> }).rows[0]!;
  assert.equal(r.storage.best_in_cgroup_path, 'direct@32');
  assert.equal(r.flexinfer_fraction_of_best_in_cgroup, 0.526); // 1.0 / 1.9 GB/s
  assert.equal(r.flexinfer_fraction_of_best_path, 0.9, 'the outside comparison stays');
  assert.match(out.table, /direct@32 1\.90\s+53%\s+-\s+-\s+-\s+-\s+1\.046/);
  // Probes that could not run inside (no probes): no in-cgroup figure, nothing invented.
  const failed = mergeBudgetSweeps([{ name: 'p25.json', json: { ...meta, rows: [{ ...base, storage: { ...(base.storage as object), ...outside, in_cgroup: { before: { at: '', probes: [], held_bytes: 0, error: 'oom' }, after: { at: '', probes: [], held_bytes: 0, error: 'oom' } } } }] } }]);
  assert.equal((failed.result as { rows: Array<Record<string, any>> }).rows[0]!.flexinfer_fraction_of_best_in_cgroup, undefined);
});

test('a merged row gains the best layout probe (the run\'s own ranges, in the cgroup) and the streamed rate\'s share of it', () => {
  const m = (rates: Array<[boolean, number, number]>) => rates.map(([direct, depth, bytesPerSec]) => ({ direct, depth, bytes: 1, seconds: 1, bytesPerSec }));
  const seq = (rates: Array<[boolean, number, number]>) => ({ at: '', probes: m(rates), best: { direct: true, depth: 1, bytes: 1, seconds: 1, bytesPerSec: 0 }, fio: null });
  const layoutOf = { ranges: 44, bytes: 327e6, runs: 32, meanRunBytes: 327e6 / 32, gaps: 31, gapBytes: 655e6 };
  // Layout probes: direct@32 means (1.2 + 1.4) / 2 = 1.3, buffered@8 (1.0 + 1.2) / 2 = 1.1.
  const inside = {
    before: { at: '', probes: m([[true, 32, 1.9e9]]), held_bytes: 5, layout: { ...layoutOf, probes: m([[true, 32, 1.2e9], [false, 8, 1.0e9]]) } },
    after: { at: '', probes: m([[true, 32, 1.9e9]]), held_bytes: 5, layout: { ...layoutOf, probes: m([[true, 32, 1.4e9], [false, 8, 1.2e9]]) } },
  };
  const base = row(75, 3, 1);
  const out = mergeBudgetSweeps([{ name: 'p75.json', json: { ...meta, rows: [{ ...base, storage: { ...(base.storage as object), before: seq([[true, 32, 2e9]]), after: seq([[true, 32, 2e9]]), in_cgroup: inside } }] } }]);
  const r = (out.result as { rows: Array<Record<string, any>> }).rows[0]!;
  assert.equal(r.storage.best_layout_path, 'direct@32');
  assert.equal(r.storage.best_layout_bytes_per_sec, 1.3e9);
  assert.equal(r.storage.layout_runs, 32);
  assert.equal(r.flexinfer_fraction_of_best_layout, 0.769); // 1.0 / 1.3 GB/s
  assert.equal(r.flexinfer_fraction_of_best_in_cgroup, 0.526, 'the sequential in-cgroup comparison stays beside it');
  assert.match(out.table, /direct@32 1\.30\s+77%/);
  assert.equal(r.storage.best_sustained_path, undefined, 'no sustained probes, no sustained figure');
});

test('a merged row gains the best sustained probe (the run\'s whole pass, over and over) and the streamed rate\'s share of it', () => {
  const m = (rates: Array<[boolean, number, number]>) => rates.map(([direct, depth, bytesPerSec]) => ({ direct, depth, bytes: 1, seconds: 1, bytesPerSec }));
  const seq = (rates: Array<[boolean, number, number]>) => ({ at: '', probes: m(rates), best: { direct: true, depth: 1, bytes: 1, seconds: 1, bytesPerSec: 0 }, fio: null });
  const layoutOf = { ranges: 44, bytes: 327e6, runs: 32, meanRunBytes: 327e6 / 32, gaps: 31, gapBytes: 655e6 };
  // Sustained: direct@16 means (1.0 + 1.6) / 2 = 1.3 (its 1.6 alone is not the best), direct@32 (1.2 + 1.2) / 2 = 1.2.
  const inside = {
    before: { at: '', probes: m([[true, 32, 1.9e9]]), held_bytes: 5, layout: { ...layoutOf, probes: m([[true, 32, 1.5e9]]), sustained: m([[true, 16, 1.0e9], [true, 32, 1.2e9]]) } },
    after: { at: '', probes: m([[true, 32, 1.9e9]]), held_bytes: 5, layout: { ...layoutOf, probes: m([[true, 32, 1.5e9]]), sustained: m([[true, 16, 1.6e9], [true, 32, 1.2e9]]) } },
  };
  const base = row(75, 3, 1);
  const out = mergeBudgetSweeps([{ name: 'p75.json', json: { ...meta, rows: [{ ...base, storage: { ...(base.storage as object), before: seq([[true, 32, 2e9]]), after: seq([[true, 32, 2e9]]), in_cgroup: inside } }] } }]);
  const r = (out.result as { rows: Array<Record<string, any>> }).rows[0]!;
  assert.equal(r.storage.best_sustained_path, 'direct@16');
  assert.equal(r.storage.best_sustained_bytes_per_sec, 1.3e9);
  assert.equal(r.flexinfer_fraction_of_best_sustained, 0.769); // 1.0 / 1.3 GB/s
  assert.equal(r.flexinfer_fraction_of_best_layout, 0.667, 'the layout comparison stays beside it'); // 1.0 / 1.5
  assert.equal(r.flexinfer_fraction_of_best_path, 0.9, 'the target\'s comparison is left as it was');
  assert.match(out.table, /direct@16 1\.30\s+77%/);
});
