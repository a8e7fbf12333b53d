#!/usr/bin/env node
// Which expert-cache policy and layout hit most: the cache and scheduler of src/weights
// (the code the engine runs) over routing traces at Qwen3-30B-A3B shapes (48 layers, 128
// experts, 8 per token), for caches holding a share of all experts:
//   uniform   every token picks 8 distinct experts uniformly (random routers: the headline)
//   zipf      per layer a Zipf(s) popularity over a random permutation of the experts
//   sticky    a token reuses each of the previous token's experts with probability p
//             (temporal locality reported for real models), else uniform
// Usage: node scripts/expert-policies.js [--tokens N] [--shares 50,25,12.5] [--zipf 1.0] [--sticky 0.3] [--json]
// Needs `npx tsc -p .` (imports dist/). Prints hit rates per (trace, share, layout, policy).
import { ExpertCache, EXPERT_POLICIES } from '../dist/weights/expert-cache.js';
import { ExpertScheduler } from '../dist/weights/expert-scheduler.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const L = 48;
const E = 128;
const K = 8;
const tokens = Number(opt('--tokens', '400'));
const shares = opt('--shares', '50,25,12.5').split(',').map(Number);
const zipfS = Number(opt('--zipf', '1.0'));
const stickyP = Number(opt('--sticky', '0.3'));

function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** trace[t][l] = the 8 experts of token t at layer l. */
function makeTrace(kind, seed) {
  const r = rng(seed);
  const perm = Array.from({ length: L }, () => Array.from({ length: E }, (_, i) => i).sort(() => r() - 0.5));
  const w = Array.from({ length: E }, (_, i) => 1 / Math.pow(i + 1, zipfS));
  const total = w.reduce((a, b) => a + b, 0);
  const out = [];
  for (let t = 0; t < tokens; t++) {
    const tok = [];
    for (let l = 0; l < L; l++) {
      const chosen = new Set();
      if (kind === 'sticky' && t > 0) for (const e of out[t - 1][l]) if (r() < stickyP) chosen.add(e);
      while (chosen.size < K) {
        if (kind === 'zipf') {
          let u = r() * total;
          let i = 0;
          while (i < E - 1 && (u -= w[i]) > 0) i++;
          chosen.add(perm[l][i]);
        } else chosen.add(Math.floor(r() * E));
      }
      tok.push([...chosen]);
    }
    out.push(tok);
  }
  return out;
}

function hitRate(trace, slots, policy) {
  const cache = new ExpertCache({ numLayers: L, numExperts: E, numExpertsUsed: K, slots, policy });
  const sched = new ExpertScheduler(cache, { read() {}, wait() {}, done: () => true }, { prefetch: false, expertBytes: new Array(L).fill(1) });
  // Warm-up: the first quarter of the trace is not counted.
  const warm = Math.floor(tokens / 4);
  let base = { hits: 0, lookups: 0 };
  trace.forEach((tok, t) => {
    if (t === warm) base = sched.stats();
    tok.forEach((experts, l) => sched.run(l, experts, () => {}));
  });
  const s = sched.stats();
  return (s.hits - base.hits) / (s.lookups - base.lookups);
}

const results = [];
for (const kind of ['uniform', 'zipf', 'sticky']) {
  const trace = makeTrace(kind, 42);
  for (const share of shares) {
    const perLayer = Math.round((share / 100) * E);
    for (const layout of ['per-layer', 'global']) {
      const slots = layout === 'global' ? perLayer * L : new Array(L).fill(perLayer);
      for (const policy of EXPERT_POLICIES) results.push({ trace: kind, share, layout, policy, hitRate: hitRate(trace, slots, policy) });
    }
  }
}
if (args.includes('--json')) process.stdout.write(JSON.stringify({ L, E, K, tokens, zipf: zipfS, sticky: stickyP, results }, null, 2) + '\n');
else {
  console.log(`hit rates, ${tokens} tokens (first quarter warm-up), Qwen3-30B-A3B shapes; zipf s=${zipfS}, sticky p=${stickyP}`);
  console.log('trace     share   layout     ' + EXPERT_POLICIES.map((p) => p.padStart(12)).join(''));
  for (let i = 0; i < results.length; i += EXPERT_POLICIES.length) {
    const r = results[i];
    const cells = results.slice(i, i + EXPERT_POLICIES.length).map((x) => `${(100 * x.hitRate).toFixed(1)}%`.padStart(12));
    console.log(`${r.trace.padEnd(9)} ${`${r.share}%`.padStart(6)}   ${r.layout.padEnd(10)} ${cells.join('')}`);
  }
}
