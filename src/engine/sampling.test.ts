import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, Sampler, resolveSamplingOptions } from './sampling.js';
import { InvalidOptionError } from '../errors.js';

const OFF = { topK: 0, topP: 1, minP: 0, repeatPenalty: 1 };

/** Logits whose softmax is exactly `probs`. */
function logitsOf(probs: number[]): Float32Array {
  return Float32Array.from(probs.map((p) => Math.log(p)));
}

function histogram(sampler: Sampler, logits: Float32Array, draws: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampler.sample(logits, logits.length)]!++;
  return counts;
}

test('greedy picks the argmax (first on ties) and ignores the seed', () => {
  const logits = Float32Array.from([0.1, 3, -2, 3, 1]);
  for (const seed of [1, 2, 3]) {
    assert.equal(new Sampler({ temperature: 0, seed }).sample(logits, 5), 1);
  }
});

test('temperature sampling follows softmax(logits / T)', () => {
  const probs = [0.5, 0.25, 0.15, 0.1];
  const T = 2;
  const s = new Sampler({ ...OFF, temperature: T, seed: 7 });
  const draws = 40000;
  const counts = histogram(s, logitsOf(probs), draws);
  // Expected: p_i^(1/T) normalized (hand-derived from softmax(log p / T)).
  const w = probs.map((p) => Math.pow(p, 1 / T));
  const z = w.reduce((a, b) => a + b, 0);
  for (let i = 0; i < probs.length; i++) {
    const expected = w[i]! / z;
    const sd = Math.sqrt((expected * (1 - expected)) / draws);
    assert.ok(Math.abs(counts[i]! / draws - expected) < 5 * sd, `token ${i}: ${counts[i]! / draws} vs ${expected}`);
  }
});

test('top-k keeps only the k most likely tokens', () => {
  const probs = [0.05, 0.4, 0.1, 0.3, 0.15];
  const s = new Sampler({ ...OFF, temperature: 1, topK: 2, seed: 3 });
  const counts = histogram(s, logitsOf(probs), 5000);
  assert.deepEqual(
    counts.map((c) => c > 0),
    [false, true, false, true, false],
  );
  // Renormalized 0.4 : 0.3.
  assert.ok(Math.abs(counts[1]! / 5000 - 0.4 / 0.7) < 0.03);
});

test('top-p keeps the smallest set reaching p (hand-computed nucleus)', () => {
  // Sorted probs 0.5, 0.3, 0.15, 0.05: cumulative 0.5, 0.8 -> p = 0.8 keeps ids 0 and 1.
  const probs = [0.5, 0.3, 0.15, 0.05];
  const s = new Sampler({ ...OFF, temperature: 1, topP: 0.8, seed: 11 });
  const counts = histogram(s, logitsOf(probs), 5000);
  assert.deepEqual(
    counts.map((c) => c > 0),
    [true, true, false, false],
  );
  // p = 0.81 needs the third token too.
  const s2 = new Sampler({ ...OFF, temperature: 1, topP: 0.81, seed: 11 });
  const c2 = histogram(s2, logitsOf(probs), 5000);
  assert.deepEqual(
    c2.map((c) => c > 0),
    [true, true, true, false],
  );
});

test('top-p over a large vocabulary matches a full sort', () => {
  const rng = new Rng(5);
  const n = 50000;
  const logits = new Float32Array(n);
  for (let i = 0; i < n; i++) logits[i] = (rng.nextFloat() - 0.5) * 12;
  // Reference nucleus by sorting everything.
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]!);
  const max = logits[order[0]!]!;
  const total = order.reduce((acc, i) => acc + Math.exp(logits[i]! - max), 0);
  let cum = 0;
  const nucleus = new Set<number>();
  for (const i of order) {
    nucleus.add(i);
    cum += Math.exp(logits[i]! - max) / total;
    if (cum >= 0.5) break;
  }
  const s = new Sampler({ ...OFF, temperature: 1, topP: 0.5, seed: 1 });
  const seen = new Set<number>();
  for (let d = 0; d < 3000; d++) seen.add(s.sample(logits, n));
  for (const t of seen) assert.ok(nucleus.has(t), `token ${t} outside the nucleus`);
  assert.ok(seen.size > nucleus.size * 0.5, 'draws cover the nucleus');
});

test('min-p drops tokens below minP * pmax', () => {
  // pmax = 0.5; minP 0.2 -> threshold 0.1: keeps 0.5, 0.3, 0.15; drops 0.05.
  const probs = [0.5, 0.3, 0.15, 0.05];
  const s = new Sampler({ ...OFF, temperature: 1, minP: 0.2, seed: 2 });
  const counts = histogram(s, logitsOf(probs), 5000);
  assert.deepEqual(
    counts.map((c) => c > 0),
    [true, true, true, false],
  );
});

test('repeat, presence and frequency penalties (hand-computed)', () => {
  // logits [2.0, 1.5, -1.0]; token 0 seen twice.
  const logits = Float32Array.from([2.0, 1.5, -1.0]);
  const rep = new Sampler({ temperature: 0, repeatPenalty: 1.5, presencePenalty: 0, frequencyPenalty: 0 });
  rep.accept([0, 0]);
  // 2.0 / 1.5 = 1.333 < 1.5 -> token 1 wins.
  assert.equal(rep.sample(logits, 3), 1);

  const freq = new Sampler({ temperature: 0, repeatPenalty: 1, frequencyPenalty: 0.2, presencePenalty: 0 });
  freq.accept([0, 0]);
  // 2.0 - 2 * 0.2 = 1.6 > 1.5 -> token 0 still wins.
  assert.equal(freq.sample(logits, 3), 0);
  const freq2 = new Sampler({ temperature: 0, repeatPenalty: 1, frequencyPenalty: 0.3, presencePenalty: 0 });
  freq2.accept([0, 0]);
  // 2.0 - 0.6 = 1.4 < 1.5
  assert.equal(freq2.sample(logits, 3), 1);

  const pres = new Sampler({ temperature: 0, repeatPenalty: 1, presencePenalty: 0.6, frequencyPenalty: 0 });
  pres.accept([0, 0, 0, 0]);
  // presence counts once: 2.0 - 0.6 = 1.4 < 1.5
  assert.equal(pres.sample(logits, 3), 1);

  // Negative logits are multiplied: token 2 at -1.0 * 3 = -3; lastN window excludes old tokens.
  const neg = new Sampler({ temperature: 0, repeatPenalty: 3, repeatLastN: 1 });
  neg.accept([0, 2]); // only token 2 is within the last 1
  assert.equal(neg.sample(logits, 3), 0);
});

test('same seed gives the same draws, different seeds differ', () => {
  const rng = new Rng(9);
  const logits = new Float32Array(1000).map(() => rng.nextFloat() * 4);
  const run = (seed: number): number[] => {
    const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed });
    const out: number[] = [];
    for (let i = 0; i < 64; i++) {
      const t = s.sample(logits, 1000);
      s.accept([t]);
      out.push(t);
    }
    return out;
  };
  assert.deepEqual(run(42), run(42));
  assert.notDeepEqual(run(42), run(43));
});

test('sampling does not modify the logits', () => {
  const logits = Float32Array.from([1, 2, 3, 4]);
  const copy = logits.slice();
  const s = new Sampler({ temperature: 1, repeatPenalty: 2, seed: 1 });
  s.accept([3]);
  s.sample(logits, 4);
  assert.deepEqual(logits, copy);
});

test('bad option values are typed errors naming the option', () => {
  assert.throws(() => resolveSamplingOptions({ temperature: -1 }), (e: unknown) => e instanceof InvalidOptionError && /temperature/.test((e as Error).message));
  assert.throws(() => resolveSamplingOptions({ topP: 1.5 }), InvalidOptionError);
  assert.throws(() => resolveSamplingOptions({ topK: 2.5 }), InvalidOptionError);
  assert.throws(() => resolveSamplingOptions({ seed: -3 }), InvalidOptionError);
  assert.throws(() => resolveSamplingOptions({ minP: Number.NaN }), InvalidOptionError);
  assert.throws(() => resolveSamplingOptions({ temperature: '1' as unknown as number }), InvalidOptionError);
});
