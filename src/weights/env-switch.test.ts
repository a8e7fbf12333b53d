import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidOptionError } from '../errors.js';
import { switchFromEnv } from './env-switch.js';

test('switchFromEnv: unset is the default, 1 / 0 (spaces allowed) are on / off, anything else is a typed error naming the variable', () => {
  for (const fallback of [true, false]) {
    assert.equal(switchFromEnv('FLEXINFER_X', undefined, fallback), fallback);
    assert.equal(switchFromEnv('FLEXINFER_X', '', fallback), fallback);
    assert.equal(switchFromEnv('FLEXINFER_X', ' 1 ', fallback), true);
    assert.equal(switchFromEnv('FLEXINFER_X', '0', fallback), false);
  }
  assert.throws(() => switchFromEnv('FLEXINFER_SHALLOW_SIBLING', 'yes', false), (e: unknown) => e instanceof InvalidOptionError && /FLEXINFER_SHALLOW_SIBLING/.test(e.message) && /'yes'/.test(e.message));
});
