/** flexinfer synth options beyond the preset: --layers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidOptionError } from '../errors.js';
import { readGgufSync } from '../gguf/reader.js';
import { run } from './synth.js';

test('synth --layers N: the first N blocks with the preset\'s shapes, block_count N, general.name says so; out of range is a typed error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-synth-layers-'));
  try {
    const out = join(dir, 'm.gguf');
    const write = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      assert.equal(await run(['--preset', 'tiny-15m', '--type', 'q8_0', '--layers', '2', '-o', out]), 0);
    } finally {
      process.stdout.write = write;
    }
    const f = readGgufSync(out);
    assert.equal(f.get('llama.block_count'), 2);
    assert.equal(f.get('llama.embedding_length'), 288);
    assert.match(String(f.get('general.name')), /2 of 6 layers/);
    assert.ok(f.tensor('blk.1.ffn_down.weight'));
    assert.equal(f.tensor('blk.2.ffn_down.weight'), undefined);
    await assert.rejects(run(['--preset', 'tiny-15m', '--type', 'q8_0', '--layers', '7', '-o', out]), (e: unknown) => e instanceof InvalidOptionError && /1\.\.6/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
