import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidOptionError } from '../errors.js';
import { formatBytes, parseMemoryBudget } from './budget.js';

test('parseMemoryBudget reads bytes, binary and decimal units, percentages', () => {
  const file = 2_000_000_000;
  assert.equal(parseMemoryBudget(123456, file), 123456);
  assert.equal(parseMemoryBudget('123456', file), 123456);
  assert.equal(parseMemoryBudget('1.5GiB', file), 1610612736);
  assert.equal(parseMemoryBudget('1.5 gib', file), 1610612736);
  assert.equal(parseMemoryBudget('512MiB', file), 536870912);
  assert.equal(parseMemoryBudget('512M', file), 536870912);
  assert.equal(parseMemoryBudget('2GB', file), 2_000_000_000);
  assert.equal(parseMemoryBudget('64kb', file), 64_000);
  assert.equal(parseMemoryBudget('4KiB', file), 4096);
  assert.equal(parseMemoryBudget('60%', file), 1_200_000_000);
  assert.equal(parseMemoryBudget('12.5%', 1000), 125);
  assert.equal(parseMemoryBudget(' 1G ', file), 1073741824);
});

test('parseMemoryBudget rejects nonsense with InvalidOptionError', () => {
  for (const bad of ['', 'abc', '1.5 parsecs', '-1GiB', '0', '0%', '1e9', '1,5GiB', 'GiB', '2000%', '1..5G']) {
    assert.throws(() => parseMemoryBudget(bad, 1e9), InvalidOptionError, `'${bad}'`);
  }
  assert.throws(() => parseMemoryBudget(-5, 1e9), InvalidOptionError);
  assert.throws(() => parseMemoryBudget(NaN, 1e9), InvalidOptionError);
  assert.throws(() => parseMemoryBudget('50%', 0), /percentage/);
  assert.throws(() => parseMemoryBudget('2 parsecs', 1e9), /--memory-budget: unknown unit 'parsecs'/);
});

test('formatBytes', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(3 * 1024 ** 3), '3.00 GiB');
});
