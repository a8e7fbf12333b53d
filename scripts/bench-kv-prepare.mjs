// Usage: node scripts/bench-kv-prepare.mjs [shrunk|full] [B=4] [T=512] [reps=2]   (after npx tsc -p .)
// Does kv.prepare() for the next step, called just before the (synchronous) forward pass,
// take mapping off the critical path on this machine? Decode B sequences for T tokens each,
// three variants: A none, B prepare(next) before forward, C prepare(next) after forward.
import { existsSync } from 'node:fs';
const D = new URL('../dist', import.meta.url).href;
const { synthesize } = await import(`${D}/synth/synth.js`);
const { SYNTH_PRESETS } = await import(`${D}/synth/presets.js`);
const { readGgufSync } = await import(`${D}/gguf/reader.js`);
const { modelConfigFromGguf } = await import(`${D}/models/registry.js`);
const { Transformer } = await import(`${D}/models/transformer.js`);
const { VTensorKvManager } = await import(`${D}/kv/vtensor-manager.js`);
const { createWeightStore } = await import(`${D}/weights/create.js`);
const { setThreads } = await import(`${D}/native/index.js`);

const which = process.argv[2] ?? 'shrunk';
const B = Number(process.argv[3] ?? 4);
const T = Number(process.argv[4] ?? 512);
const REPS = Number(process.argv[5] ?? 2);
const preset = which === 'full' ? SYNTH_PRESETS['tinyllama-1.1b'] : { ...SYNTH_PRESETS['tinyllama-1.1b'], name: 'tinyllama-shrunk', dim: 512, nHeads: 8, nKvHeads: 4, ffn: 1408 };
const path = `${process.env.TMPDIR ?? '/tmp'}/${preset.name}-q8_0.gguf`;
if (!existsSync(path)) await synthesize(path, preset, 'q8_0', { seed: 3 });
setThreads(2);
const file = readGgufSync(path);
const config = modelConfigFromGguf(file);
const { store } = await createWeightStore(file, {});
const shape = { numLayers: config.numLayers, kvDim: config.numKvHeads * config.headDim, maxContext: 2048 };
const perSeqBytes = shape.maxContext * shape.numLayers * 2 * shape.kvDim * 2;

function run(variant) {
  const kv = new VTensorKvManager({ shape, capacityBytes: (B + 1) * perSeqBytes });
  const tf = new Transformer(config, store, kv, { maxRows: B, maxLogitRows: B });
  const seqs = Array.from({ length: B }, () => kv.createSequence());
  const toks = seqs.map(() => new Uint32Array(0));
  const batch = { numRows: B, tokens: new Int32Array(B), positions: new Int32Array(B), seqs: new Int32Array(B), logitRows: new Int32Array(B), numLogitRows: B };
  let ensureMs = 0, fwdMs = 0, prepMs = 0;
  const t0 = performance.now();
  for (let p = 0; p < T; p++) {
    let t = performance.now();
    for (let i = 0; i < B; i++) if (!kv.ensure(seqs[i], p + 1)) throw new Error('short');
    ensureMs += performance.now() - t;
    for (let i = 0; i < B; i++) {
      batch.tokens[i] = 3 + ((p * 7 + i) % 1000);
      batch.positions[i] = p;
      batch.seqs[i] = seqs[i];
      batch.logitRows[i] = i;
    }
    if (variant === 'B') { t = performance.now(); for (let i = 0; i < B; i++) kv.prepare(seqs[i], p + 2); prepMs += performance.now() - t; }
    t = performance.now();
    tf.forward(batch);
    fwdMs += performance.now() - t;
    if (variant === 'C') { t = performance.now(); for (let i = 0; i < B; i++) kv.prepare(seqs[i], p + 2); prepMs += performance.now() - t; }
    for (let i = 0; i < B; i++) {
      const n = new Uint32Array(p + 1); n.set(toks[i]); n[p] = batch.tokens[i]; toks[i] = n;
      kv.commit(seqs[i], n);
    }
  }
  const total = performance.now() - t0;
  const st = kv.stats();
  const ps = kv.pool.stats();
  kv.dispose();
  return { variant, totalMs: total, msPerStep: total / T, ensureMs, fwdMs, prepCallMs: prepMs, mapMsCritical: st.mapMsOnCriticalPath, mapMsAhead: st.mapMsAhead, syncMaps: ps.maps, bgMaps: ps.backgroundMaps, bgMapMs: ps.backgroundMapMs, syncMapMs: ps.mapMs };
}

console.log(JSON.stringify({ model: preset.name, B, T, tokensPerChunk: 65536 / (shape.kvDim * 2), numTensors: 2 * shape.numLayers }));
run('A'); // warm-up
const rows = [];
for (let r = 0; r < REPS; r++) for (const v of ['A', 'B', 'C']) rows.push(run(v));
for (const r of rows) console.log(JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? Math.round(v * 100) / 100 : v]))));
store.dispose();
