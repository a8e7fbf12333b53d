import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync } from '../gguf/reader.js';
import { planInputs } from '../weights/create.js';
import { planResidency } from '../weights/plan.js';
import { StreamingWeightStore } from '../weights/streaming.js';
import { tinyModelTensors, writeTestGguf } from '../weights/testing.js';
import { closeFile, openFile } from '../native/index.js';
import { convertAlign } from './convert.js';

/** Whether the file system takes O_DIRECT (tmpfs does not). */
function directAvailable(path: string): boolean {
  try {
    closeFile(openFile(path, true));
    return true;
  } catch {
    return false;
  }
}

test('convert --align 4096 moves every tensor to a 4096-aligned offset with the same bytes; streaming then reads O_DIRECT', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-convert-'));
  try {
    const src = join(dir, 'in.gguf');
    const dst = join(dir, 'out.gguf');
    const tensors = tinyModelTensors({ dim: 128, ffn: 320, kvDim: 64, vocab: 40, layers: 6 }, 4);
    writeTestGguf(src, 'llama', 6, tensors, 32);
    await convertAlign(src, dst, 4096);
    const a = readGgufSync(src);
    const b = readGgufSync(dst);
    assert.equal(a.alignment, 32);
    assert.equal(b.alignment, 4096);
    assert.deepEqual([...b.metadata.keys()].sort(), [...a.metadata.keys()].sort());
    assert.equal(b.get('llama.block_count'), 6);
    const bytes = readFileSync(dst);
    assert.equal(b.tensors.length, tensors.length);
    for (const [i, t] of tensors.entries()) {
      const info = b.tensors[i]!;
      assert.equal(info.name, t.name);
      assert.equal(info.fileOffset % 4096, 0, `${t.name} aligned`);
      assert.deepEqual(new Uint8Array(bytes.subarray(info.fileOffset, info.fileOffset + info.byteSize)), t.data, t.name);
    }
    const plan = planResidency(planInputs(b), { budget: Math.floor(0.6 * b.fileSize), hardware: { readBytesPerSec: 1e9 }, window: 1 });
    const store = await StreamingWeightStore.open(b, plan, { direct: true });
    for (let l = 0; l < 6; l++) {
      store.acquire(l);
      store.release(l);
    }
    const st = store.stats();
    store.dispose();
    assert.ok(st.bytesRead > 0);
    if (directAvailable(dst)) assert.equal(st.bufferedBytes, 0, 'every streamed tensor went O_DIRECT');
    await assert.rejects(convertAlign(src, join(dir, 'x.gguf'), 3000), /power of two/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
