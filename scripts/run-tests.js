#!/usr/bin/env node
// Runs every compiled test (dist/**/*.test.js) with node's test runner.
// Usage: node scripts/run-tests.js [substring ...]   (only test files whose path contains one)
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const dist = join(root, 'dist');

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
let files = walk(dist, []).sort();
if (filters.length > 0) files = files.filter((f) => filters.some((s) => relative(root, f).includes(s)));
if (files.length === 0) {
  console.error('no test files found under dist/ (did `tsc` run?)');
  process.exit(1);
}
// Tests calibrate storage on whatever the machine is doing: keep their figures out of the
// user's calibration cache (~/.cache/flexinfer), which steers every later plan.
const cacheDir = mkdtempSync(join(tmpdir(), 'flexinfer-test-cache-'));
const res = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], {
  stdio: 'inherit',
  cwd: root,
  env: { ...process.env, FLEXINFER_CACHE_DIR: cacheDir },
});
rmSync(cacheDir, { recursive: true, force: true });
process.exit(res.status ?? 1);
