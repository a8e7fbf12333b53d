/**
 * synth --router-skew: the routers' rows are scaled so that some experts are routed to more
 * often (synthetic popularity). Checked on the synthesized router bytes themselves: top-k of
 * x · W_e over random inputs, counted per expert, skewed vs not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync } from '../gguf/reader.js';
import { InvalidOptionError } from '../errors.js';
import { run as synthCli } from '../cli/synth.js';
import { routerRowScale } from './arch-tensors.js';
import { planSynth } from './plan.js';
import { SYNTH_PRESETS } from './presets.js';
import { synthesize, synthTensorData } from './synth.js';

test('routerRowScale: (1 + rank)^-s normalised to a mean square of 1 (hand-computed), a permutation per layer', () => {
  // s = 1, E = 4: raw 1, 1/2, 1/3, 1/4; mean square (1 + 1/4 + 1/9 + 1/16) / 4 = 0.3559028
  const rms = Math.sqrt((1 + 1 / 4 + 1 / 9 + 1 / 16) / 4);
  const want = [1, 1 / 2, 1 / 3, 1 / 4].map((v) => v / rms);
  const got = [...routerRowScale(4, 1, 0)].sort((a, b) => b - a);
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-6, `${got} vs ${want}`);
  assert.deepEqual([...routerRowScale(16, 0, 3)], new Array(16).fill(1));
  // Different layers favour different experts.
  const top = (l: number) => { const s = routerRowScale(128, 1, l); return s.indexOf(Math.max(...s)); };
  assert.ok(new Set([0, 1, 2, 3, 4, 5].map(top)).size > 1);
});

/** Share of top-k picks that go to the most popular quarter of the experts, over n random inputs. */
function topQuarterShare(skew: number | undefined, layer: number, n: number): number {
  const base = SYNTH_PRESETS['tiny-qwen3moe']!;
  const preset = skew === undefined ? base : { ...base, moe: { ...base.moe!, routerSkew: skew } };
  const t = planSynth(preset, 'q8_0').tensors.find((x) => x.name === `blk.${layer}.ffn_gate_inp.weight`)!;
  const [dim, E] = t.dims as [number, number];
  const k = preset.moe!.used;
  const w = new Float32Array(synthTensorData(t, 1).buffer);
  const counts = new Array<number>(E).fill(0);
  let u = 12345;
  const rand = () => ((u = (Math.imul(u, 1103515245) + 12345) >>> 0) + 0.5) / 2 ** 32;
  const x = new Float64Array(dim);
  const logits = new Float64Array(E);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) x[d] = Math.sqrt(-2 * Math.log(rand())) * Math.cos(2 * Math.PI * rand());
    for (let e = 0; e < E; e++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += x[d]! * w[e * dim + d]!;
      logits[e] = s;
    }
    // top-k of the logits = top-k of the softmax
    const order = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]!);
    for (let j = 0; j < k; j++) counts[order[j]!]!++;
  }
  const sorted = counts.sort((a, b) => b - a);
  return sorted.slice(0, E / 4).reduce((a, b) => a + b, 0) / (n * k);
}

test('synth --router-skew: skewed routers concentrate routing on a few experts; none (or 0) route near uniformly', () => {
  const uniform = topQuarterShare(undefined, 1, 1000);
  const zero = topQuarterShare(0, 1, 1000);
  const skewed = topQuarterShare(1, 1, 1000);
  assert.equal(zero, uniform, 'skew 0 writes the same routers as no skew');
  // Uniform routing: the top quarter of 16 experts gets ~25% of the picks (+ sampling noise).
  assert.ok(uniform < 0.33, `uniform top-quarter share ${uniform}`);
  assert.ok(skewed > 0.36, `skewed top-quarter share ${skewed} (uniform ${uniform})`);
  assert.ok(topQuarterShare(2, 1, 1000) > skewed, "a larger exponent skews more");
});

test('synth --router-skew: labelled in the file metadata; refused on dense presets and out of range', async () => {
  const base = SYNTH_PRESETS['tiny-qwen3moe']!;
  const meta = (skew?: number) => new Map(planSynth({ ...base, moe: { ...base.moe!, ...(skew !== undefined ? { routerSkew: skew } : {}) } }, 'q8_0').metadata.map(([k, v]) => [k, v.value]));
  assert.ok(Math.abs((meta(1.5).get('flexinfer.synth.router_skew') as number) - 1.5) < 1e-6);
  assert.equal(meta().get('flexinfer.synth.router_skew'), undefined);
  await assert.rejects(synthCli(['--preset', 'tiny-15m', '--type', 'q8_0', '-o', '/nonexistent/x.gguf', '--router-skew', '1']), (e: unknown) => e instanceof InvalidOptionError && /has no experts/.test(e.message));
  await assert.rejects(synthCli(['--preset', 'tiny-qwen3moe', '--type', 'q8_0', '-o', '/nonexistent/x.gguf', '--router-skew', 'lots']), (e: unknown) => e instanceof InvalidOptionError && /\[0, 4\]/.test(e.message));
});

test('synth --rewrite ffn_gate_inp.weight --router-skew S --from SRC: a copy with skewed routers (rows scaled by routerRowScale, by hand), every other tensor and SRC itself untouched, = a fresh skewed synth', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-reskew-'));
  try {
    const src = join(dir, 'uniform.gguf');
    const out = join(dir, 'skewed.gguf');
    const fresh = join(dir, 'fresh.gguf');
    const base = SYNTH_PRESETS['tiny-mixtral']!;
    await synthesize(src, base, 'q8_0', { seed: 2 });
    const before = readFileSync(src);
    const quiet = process.stdout.write;
    process.stdout.write = () => true;
    try {
      assert.equal(await synthCli(['--preset', 'tiny-mixtral', '--type', 'q8_0', '--seed', '2', '--router-skew', '1.5', '--rewrite', 'ffn_gate_inp.weight', '--from', src, '-o', out]), 0);
    } finally {
      process.stdout.write = quiet;
    }
    assert.ok(readFileSync(src).equals(before), 'SRC is left alone');
    const a = readGgufSync(src);
    const b = readGgufSync(out);
    assert.ok(Math.abs((b.metadata.get('flexinfer.synth.router_skew')!.value as number) - 1.5) < 1e-6, 'labelled synthetic skew');
    assert.equal(a.metadata.get('flexinfer.synth.router_skew'), undefined);
    const srcBytes = before;
    const outBytes = readFileSync(out);
    let routers = 0;
    for (const t of a.tensors) {
      const u = srcBytes.subarray(t.fileOffset, t.fileOffset + t.byteSize);
      const tb = b.tensor(t.name)!;
      const v = outBytes.subarray(tb.fileOffset, tb.fileOffset + tb.byteSize);
      if (!t.name.endsWith('.ffn_gate_inp.weight')) {
        assert.ok(u.equals(v), `${t.name} byte-identical`);
        continue;
      }
      // f32 [dim, E]: row e of the skewed router = the uniform row e times routerRowScale(E, S, layer)[e]
      const [dim, E] = t.dims as [number, number];
      const layer = Number(/^blk\.(\d+)\./.exec(t.name)![1]);
      const scale = routerRowScale(E, 1.5, layer);
      const x = new Float32Array(u.buffer.slice(u.byteOffset, u.byteOffset + u.length));
      const y = new Float32Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.length));
      for (let i = 0; i < dim * E; i++) assert.equal(y[i], Math.fround(x[i]! * scale[Math.floor(i / dim)]!), `${t.name}[${i}]`);
      routers++;
    }
    assert.equal(routers, base.nLayers);
    // the same bytes as synthesizing the skewed preset from scratch
    await synthesize(fresh, { ...base, moe: { ...base.moe!, routerSkew: 1.5 } }, 'q8_0', { seed: 2 });
    assert.ok(readFileSync(fresh).equals(outBytes), 'copy = fresh synth --router-skew 1.5');
    // in place, the skew label could not be written: refused; --from without --rewrite: refused
    await assert.rejects(synthCli(['--preset', 'tiny-mixtral', '--type', 'q8_0', '--router-skew', '1', '--rewrite', 'ffn_gate_inp.weight', '-o', src]), (e: unknown) => e instanceof InvalidOptionError && /--from SRC/.test(e.message));
    await assert.rejects(synthCli(['--preset', 'tiny-mixtral', '--type', 'q8_0', '--from', src, '-o', out]), (e: unknown) => e instanceof InvalidOptionError && /only with --rewrite/.test(e.message));
    // a file of another preset: typed error, no output left behind
    await assert.rejects(synthCli(['--preset', 'tiny-qwen3moe', '--type', 'q8_0', '--router-skew', '1', '--rewrite', 'ffn_gate_inp.weight', '--from', src, '-o', join(dir, 'bad.gguf')]), (e: unknown) => e instanceof InvalidOptionError && /has 42 tensors, a 'synth --preset tiny-qwen3moe --type q8_0' file has 50/.test(e.message));
    assert.deepEqual(readdirSync(dir).sort(), ['fresh.gguf', 'skewed.gguf', 'uniform.gguf']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
