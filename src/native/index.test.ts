import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { nativeBuildInfo, nativeVersion } from './index.js';

test('native addon loads and reports its version and build', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  assert.equal(nativeVersion(), pkg.version);
  const info = nativeBuildInfo();
  assert.equal(typeof info.avx2, 'boolean');
  assert.match(info.compiler, /\d+\.\d+/);
});
