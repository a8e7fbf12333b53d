import { test } from 'node:test';
import assert from 'node:assert/strict';
import { median, percentile, ratio } from './stats.js';
import { composePlots, renderLinePlot } from './svg.js';

test('median and percentiles (hand-computed)', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
  // rank = 0.95 * 9 = 8.55 -> 9 + 0.55 * (10 - 9)
  assert.ok(Math.abs(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) - 9.55) < 1e-12);
  assert.equal(ratio(3, 2), 1.5);
  assert.equal(ratio(3, null), null);
  assert.equal(ratio(3, 0), null);
});

test('SVG plot: one polyline per series with >1 point, a legend entry each, escaped text', () => {
  const svg = renderLinePlot({
    title: 'tokens/s <vs> budget',
    xLabel: 'budget',
    yLabel: 'tokens/s',
    xTicks: ['100%', '75%', '50%', '25%'],
    series: [
      { name: 'flexinfer', values: [20, 15, 10, 6] },
      { name: 'llama.cpp', values: [21, 2.1, null, null] },
      { name: 'bound', values: [30, 20, 12, 7], dashed: true },
    ],
    notes: [{ series: 'llama.cpp', x: 2, text: 'OOM' }],
  });
  assert.match(svg, /^<svg /);
  assert.equal((svg.match(/<polyline/g) ?? []).length, 3);
  assert.equal((svg.match(/<circle/g) ?? []).length, 4 + 2 + 4);
  assert.ok(svg.includes('tokens/s &lt;vs&gt; budget'));
  assert.ok(svg.includes('>OOM<'));
  assert.ok(svg.trim().endsWith('</svg>'));
});

test('SVG panels: composePlots places each plot at its cell of one document', () => {
  const plot = (title: string, width: number) => renderLinePlot({ title, xLabel: 'x', yLabel: 'y', xTicks: ['a', 'b'], series: [{ name: 's', values: [1, 2] }], width, height: 300 });
  const svg = composePlots([plot('one', 600), plot('two', 700), plot('three', 600)], 2);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="1400" height="600"/);
  assert.deepEqual([...svg.matchAll(/<svg x="(\d+)" y="(\d+)"/g)].map((m) => [Number(m[1]), Number(m[2])]), [[0, 0], [700, 0], [0, 300]]);
  assert.equal((svg.match(/<\/svg>/g) ?? []).length, 4);
  for (const t of ['one', 'two', 'three']) assert.ok(svg.includes(`>${t}<`));
});
