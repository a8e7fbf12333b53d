import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync } from '../gguf/reader.js';
import { closeFile, openFile } from '../native/index.js';
import { planResidency, streamFootprint } from './plan.js';
import { planInputs } from './create.js';
import { ResidentWeightStore } from './resident.js';
import { bufferedReadsFromEnv, computeRateOf, ringPackingFromEnv, StreamingWeightStore, type MeasuredRates } from './streaming.js';
import { tinyModelTensors, writeTestGguf } from './testing.js';

const SHAPE = { dim: 256, ffn: 640, kvDim: 128, vocab: 96, layers: 24 };
const HW = { readBytesPerSec: 1e9 };

/** Whether the file system takes O_DIRECT (tmpfs does not). */
function directAvailable(path: string): boolean {
  try {
    closeFile(openFile(path, true));
    return true;
  } catch {
    return false;
  }
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function withModel(alignment: number, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fi-stream-'));
  const path = join(dir, 'm.gguf');
  writeTestGguf(path, 'llama', SHAPE.layers, tinyModelTensors(SHAPE, 3), alignment);
  return fn(path).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test('streamed tensors equal the file bytes (checksums) at 75/50/25% budgets, with and without O_DIRECT', async () => {
  for (const alignment of [4096, 32]) {
    await withModel(alignment, async (path) => {
      const file = readGgufSync(path);
      const raw = readFileSync(path);
      // Reference checksums straight from the file bytes.
      const want = new Map(file.tensors.map((t) => [t.name, sha(raw.subarray(t.fileOffset, t.fileOffset + t.byteSize))]));
      const reference = await ResidentWeightStore.load(file);
      for (const fraction of [0.75, 0.5, 0.25]) {
        const plan = planResidency(planInputs(file), { budget: Math.floor(fraction * file.fileSize), hardware: HW });
        assert.ok(plan.streamedBytesPerToken > 0, 'something is streamed');
        for (const direct of [true, false]) {
          const store = await StreamingWeightStore.open(file, plan, { direct });
          for (let token = 0; token < 3; token++) {
            for (let l = 0; l < store.numLayers; l++) {
              const got = store.acquire(l);
              const ref = reference.acquire(l);
              for (const short of ['attn_norm.weight', 'attn_q.weight', 'attn_k.weight', 'attn_v.weight', 'attn_output.weight', 'ffn_norm.weight', 'ffn_gate.weight', 'ffn_up.weight', 'ffn_down.weight']) {
                const t = got.get(short);
                assert.equal(sha(t.data), want.get(`blk.${l}.${short}`), `${t.name} token ${token} (${fraction}, direct ${direct}, align ${alignment})`);
                assert.deepEqual(t.data, ref.get(short).data);
                assert.deepEqual(t.dims, ref.get(short).dims);
              }
              store.release(l);
            }
            assert.equal(sha(store.global('output.weight')!.data), want.get('output.weight'));
          }
          const st = store.stats();
          assert.equal(st.tokens, 3);
          assert.equal(st.bytesReadPerToken, plan.streamedBytesPerToken);
          // The layers' compute time (acquire to release: the checksums above) was measured.
          assert.ok(st.computeSecPerToken > 0 && st.computeBytesPerSec > 0, `compute ${st.computeSecPerToken} s/pass`);
          if (direct && alignment === 4096 && directAvailable(path)) assert.ok(st.directBytes > 0, 'aligned file reads go O_DIRECT');
          if (alignment === 32) assert.ok(st.bufferedBytes > 0, 'misaligned tensors fall back to buffered reads');
          if (!direct) assert.equal(st.directBytes, 0);
          assert.ok(st.residentBytes + st.ringBytes <= plan.split.total);
          // Embedding rows read from the file equal the resident store's.
          const tokens = Int32Array.from([0, 95, 17, 17]);
          const a = new Float32Array(tokens.length * SHAPE.dim);
          const b = new Float32Array(tokens.length * SHAPE.dim);
          store.embed(tokens, a);
          reference.embed(tokens, b);
          assert.deepEqual(a, b);
          store.dispose();
        }
      }
      reference.dispose();
    });
  }
});

test('acquire out of order, early acquire of the next layer, and an abandoned pass still return the right bytes', async () => {
  await withModel(4096, async (path) => {
    const file = readGgufSync(path);
    const reference = await ResidentWeightStore.load(file);
    const plan = planResidency(planInputs(file), { budget: Math.floor(0.4 * file.fileSize), hardware: HW, window: 2 });
    const store = await StreamingWeightStore.open(file, plan);
    const check = (l: number) => assert.deepEqual(store.acquire(l).get('ffn_down.weight').data, reference.acquire(l).get('ffn_down.weight').data, `layer ${l}`);
    // Overlapping: acquire l + 1 before releasing l.
    check(0);
    check(1);
    store.release(0);
    check(2);
    store.release(1);
    store.release(2);
    // Abandon the pass at layer 3 and start again at 0 (resync).
    check(3);
    check(0);
    store.release(0);
    // Jump to a middle layer.
    check(13);
    store.release(13);
    for (let l = 14; l < SHAPE.layers; l++) {
      check(l);
      store.release(l);
    }
    assert.throws(() => store.release(5), /not acquired/);
    // Holding more layers than the ring has slots is refused, not answered with stale bytes.
    for (let l = 0; l < plan.numSlots; l++) check(l);
    assert.throws(() => store.acquire(plan.numSlots), /release earlier layers first/);
    for (let l = 0; l < plan.numSlots; l++) store.release(l);
    check(plan.numSlots);
    store.release(plan.numSlots);
    assert.throws(() => store.acquire(SHAPE.layers), RangeError);
    store.dispose();
    assert.throws(() => store.acquire(0), /disposed/);
  });
});

test('a model with fewer layers than ring slots uses one slot per layer and stays exact', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fi-stream-'));
  try {
    const path = join(dir, 'm.gguf');
    const shape = { dim: 128, ffn: 256, kvDim: 64, vocab: 20, layers: 2 };
    writeTestGguf(path, 'llama', 2, tinyModelTensors(shape, 6), 4096);
    const file = readGgufSync(path);
    const reference = await ResidentWeightStore.load(file);
    // With 2 layers streaming saves nothing (2 slots hold every layer), so the planner keeps all
    // resident; stream the layer matrices anyway, through 2 slots (window 3 capped).
    const plan = planResidency(planInputs(file), { budget: 10 * file.fileSize, hardware: HW, window: 3 });
    assert.equal(plan.streamedBytesPerToken, 0);
    for (const t of plan.tensors) if (t.layer >= 0 && t.kind !== 'norm') t.placement = 'streamed';
    const store = await StreamingWeightStore.open(file, plan);
    for (let token = 0; token < 4; token++) {
      for (let l = 0; l < 2; l++) {
        const w = store.acquire(l);
        for (const short of ['attn_q.weight', 'ffn_gate.weight', 'ffn_down.weight']) assert.deepEqual(w.get(short).data, reference.acquire(l).get(short).data);
        store.release(l);
      }
    }
    const layer0 = plan.tensors.filter((t) => t.layer === 0 && t.placement === 'streamed').reduce((a, t) => a + streamFootprint(t.bytes), 0);
    assert.equal(store.stats().ringBytes, 2 * layer0);
    assert.equal(store.stats().bytesReadPerToken, 2 * plan.tensors.filter((t) => t.layer === 0 && t.placement === 'streamed').reduce((a, t) => a + t.bytes, 0));
    store.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('layers that stream less share a ring slot: with two slots, three layers are read ahead and every byte stays exact', async () => {
  await withModel(4096, async (path) => {
    const file = readGgufSync(path);
    const reference = await ResidentWeightStore.load(file);
    // Every layer's matrices streamed, but layers 1, 2, 4, 5, ... keep their FFN resident:
    // they stream less than half of what layers 0, 3, 6, ... do (the pattern balanced
    // residency of whole FFN tensors gives a real model at 75%).
    const plan = planResidency(planInputs(file), { budget: 10 * file.fileSize, hardware: HW, window: 1 });
    for (const t of plan.tensors) {
      if (t.layer < 0 || t.kind === 'norm') continue;
      t.placement = t.layer % 3 !== 0 && t.name.includes('.ffn_') ? 'resident' : 'streamed';
    }
    const footprint = (l: number) => plan.tensors.filter((t) => t.layer === l && t.placement === 'streamed').reduce((a, t) => a + streamFootprint(t.bytes), 0);
    assert.ok(2 * footprint(1) <= footprint(0), `two small layers (${footprint(1)} B each) fit the slot of a big one (${footprint(0)} B)`);
    const store = await StreamingWeightStore.open(file, plan);
    assert.equal(store.stats().ringBytes, 2 * footprint(0), 'the ring is two slots of the largest layer');
    const check = (l: number) => {
      const w = store.acquire(l);
      for (const short of ['attn_q.weight', 'attn_output.weight', 'ffn_up.weight', 'ffn_down.weight']) {
        assert.deepEqual(w.get(short).data, reference.acquire(l).get(short).data, `layer ${l} ${short}`);
      }
    };
    for (let token = 0; token < 3; token++) {
      for (let l = 0; l < SHAPE.layers; l += 3) {
        // Layers l (big), l + 1 and l + 2 (small) are all in the two slots at once: a
        // one-layer-per-slot ring would refuse the third acquire.
        check(l);
        check(l + 1);
        check(l + 2);
        store.release(l);
        store.release(l + 1);
        store.release(l + 2);
      }
    }
    assert.equal(store.stats().tokens, 3);
    store.dispose();
  });
  assert.equal(ringPackingFromEnv(''), true);
  assert.equal(ringPackingFromEnv('0'), false);
  assert.throws(() => ringPackingFromEnv('off'), /FLEXINFER_RING_PACKING/);
});

test('computeRateOf: the median pass (a prompt pass does not weigh), and the plan\'s layer bytes per second of it', () => {
  const plan = { layers: [{ residentBytes: 30, streamedBytes: 10 }, { residentBytes: 0, streamedBytes: 60 }] } as unknown as Parameters<typeof computeRateOf>[1];
  assert.deepEqual(computeRateOf([], plan), { computeSecPerToken: 0, computeBytesPerSec: 0 });
  // A 16-row prompt pass (0.5 s) among 1-row passes of 0.01-0.02 s.
  const r = computeRateOf([0.5, 0.01, 0.02, 0.012, 0], plan);
  assert.equal(r.computeSecPerToken, (0.012 + 0.02) / 2, 'the median of the measured passes (0 = not measured)');
  assert.equal(r.computeBytesPerSec, 100 / r.computeSecPerToken);
  assert.equal(computeRateOf([0.5, 0.01, 0.02], plan).computeSecPerToken, 0.02);
});

test('FLEXINFER_BUFFERED_READS: the streamer reads buffered pieces with the mode asked (checksums hold); bad values are typed errors', async () => {
  assert.deepEqual(bufferedReadsFromEnv(undefined), { readAhead: true, dontCache: false }, 'the default: the kernel\'s read-ahead, pages dropped after each piece');
  assert.deepEqual(bufferedReadsFromEnv('exact+dontcache'), { readAhead: false, dontCache: true });
  assert.throws(() => bufferedReadsFromEnv('fast'), (e: Error) => e.name === 'InvalidOptionError' && /FLEXINFER_BUFFERED_READS.*got 'fast'/.test(e.message));
  await withModel(4096, async (path) => {
    const file = readGgufSync(path);
    const raw = readFileSync(path);
    const plan = planResidency(planInputs(file), { budget: Math.floor(0.5 * file.fileSize), hardware: HW });
    const saved = process.env.FLEXINFER_BUFFERED_READS;
    for (const mode of ['exact', 'exact+dontcache', 'readahead']) {
      process.env.FLEXINFER_BUFFERED_READS = mode;
      let store: StreamingWeightStore;
      try {
        store = await StreamingWeightStore.open(file, plan, { direct: false });
      } finally {
        if (saved === undefined) delete process.env.FLEXINFER_BUFFERED_READS;
        else process.env.FLEXINFER_BUFFERED_READS = saved;
      }
      for (let l = 0; l < store.numLayers; l++) {
        const t = store.acquire(l).get('ffn_down.weight');
        const info = file.tensors.find((x) => x.name === `blk.${l}.ffn_down.weight`)!;
        assert.equal(sha(t.data), sha(raw.subarray(info.fileOffset, info.fileOffset + info.byteSize)), `${mode} layer ${l}`);
        store.release(l);
      }
      const b = store.stats().bufferedReads;
      assert.equal(b.readAhead, !mode.startsWith('exact'), `${mode}: POSIX_FADV_RANDOM applied to the buffered fd`);
      // RWF_DONTCACHE: in use, or refused by this kernel / file system with the reason kept.
      if (mode.includes('dontcache')) assert.ok(b.dontCache || /RWF_DONTCACHE refused/.test(b.dontCacheError ?? ''), JSON.stringify(b));
      else assert.equal(b.dontCache, false);
      assert.ok(store.stats().bufferedBytes > 0);
      store.dispose();
    }
  });
});

test('onMeasuredRate reports buffered reads only when the device read at least half of their bytes (the rest is the page cache, not the disk)', async () => {
  await withModel(4096, async (path) => {
    const file = readGgufSync(path);
    const plan = planResidency(planInputs(file), { budget: Math.floor(0.5 * file.fileSize), hardware: HW });
    const perPass = plan.layers.reduce((a, l) => a + l.streamedBytes, 0);
    const passes = Math.ceil((300 * 1024 * 1024) / perPass); // past the 256 MiB a report needs
    const run = async (deviceBytes: (store: StreamingWeightStore | undefined) => number | undefined) => {
      const reports: MeasuredRates[] = [];
      let store: StreamingWeightStore | undefined;
      store = await StreamingWeightStore.open(file, plan, { direct: false, adaptive: false, onMeasuredRate: (m) => reports.push(m), deviceReadBytes: () => deviceBytes(store) });
      for (let p = 0; p < passes; p++) {
        for (let l = 0; l < store.numLayers; l++) {
          store.acquire(l);
          store.release(l);
        }
      }
      const buffered = store.stats().bufferedBytes;
      store.dispose();
      return { reports, buffered };
    };
    // The device read nothing (every page was cached): no report, so no calibration from it.
    const cached = await run(() => 5e9);
    assert.ok(cached.buffered >= 256 * 1024 * 1024);
    assert.deepEqual(cached.reports, []);
    // The device read 60% of them: reported, as buffered reads.
    const disk = await run((s) => 5e9 + 0.6 * (s?.stats().bufferedBytes ?? 0));
    assert.ok(disk.reports.length > 0);
    assert.ok(disk.reports.every((m) => m.path.direct === false && m.bytes >= 256 * 1024 * 1024 && m.bytesPerSec > 0));
    // Where sysfs does not say, as before: reported.
    const unknown = await run(() => undefined);
    assert.ok(unknown.reports.length > 0);
  });
});
