/**
 * A run that makes the elastic pool move, in its own process (so a test can put it in a
 * memory cgroup): `node dist/engine/elastic-scenario.js MODEL BUDGET POOL KV_FLOOR ALL_LOGITS` with
 * POOL = elastic | static, KV_FLOOR bytes or '-', ALL_LOGITS 1 | 0. Prints one JSON line.
 *
 *   1. evaluate() of a long prompt, with every position's logits: the logit rows of one pass
 *      are bounded (64), so the sequence grows 64 positions per forward pass, past the point
 *      where the elastic pool must demote weights for its KV (without ALL_LOGITS, 512 per
 *      pass and only the last row's logits: the [n, vocab] array would weigh more than the
 *      budget's slack in a cgroup);
 *   2. then a generation with a short prompt: the long sequence's KV is gone, so the weights
 *      are promoted back in the background and land between two of its forward passes.
 *
 * The output has the tokens, a SHA-256 of every logit's bits, the pool's events before and
 * after the generation, and the process's peak resident set.
 * @internal
 */
import { createHash } from 'node:crypto';
import { processRss, sampleAnonShmemPeak } from '../weights/cgroup.js';
import { loadModel } from './model.js';

/** What the scenario prints. */
export interface ScenarioResult {
  logitsSha256: string;
  numLogits: number;
  tokens: number[];
  /** Pool events after the evaluation and after the generation (elastic only). */
  afterEvaluate: Record<string, number>;
  afterGenerate: Record<string, number>;
  peakRssBytes: number;
  /** /proc/self/status at the end: anonymous, file-backed and shared (memfd KV) resident bytes. */
  rss: Record<string, number>;
  /**
   * Peak of RssAnon + RssShmem sampled every 10 ms: the memory the kernel cannot take back
   * (RssFile, mostly Node's own code pages, it can drop and read again).
   */
  peakAnonShmemBytes: number;
  levels: number[];
}

/** Tokens of the long prompt (a fixed pseudo-random walk over the vocabulary). */
export function scenarioPrompt(n: number, vocab: number): Uint32Array {
  let x = 12345;
  return Uint32Array.from({ length: n }, (_, i) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return i === 0 ? 1 : 3 + (x % (vocab - 3));
  });
}

export async function runScenario(path: string, budget: number, pool: 'elastic' | 'static', kvFloor?: number, opts: { evalTokens?: number; genTokens?: number; allLogits?: boolean } = {}): Promise<ScenarioResult> {
  const peak = sampleAnonShmemPeak(10);
  const model = await loadModel(path, { threads: 2, contextSize: 1024, parallel: 2, memoryBudget: budget, memoryPool: pool, ...(kvFloor !== undefined ? { kvFloor } : {}) });
  const events = async (): Promise<Record<string, number>> => {
    const p = (await model.stats()).pool as { events?: Record<string, number> } | undefined;
    return p?.events ?? {};
  };
  try {
    const long = scenarioPrompt(opts.evalTokens ?? 640, model.info.vocabSize);
    const logits = await model.evaluate(long, { allLogits: opts.allLogits ?? true });
    const afterEvaluate = await events();
    const r = await model.complete(long.subarray(0, 16), { maxTokens: opts.genTokens ?? 64, temperature: 0, repeatPenalty: 1, ignoreEos: true });
    const afterGenerate = await events();
    const st = await model.stats({ history: true });
    const history = ((st.pool as { history?: Array<{ level: number }> }).history ?? []).map((s) => s.level);
    return {
      logitsSha256: createHash('sha256').update(new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength)).digest('hex'),
      numLogits: logits.length,
      tokens: r.tokens,
      afterEvaluate,
      afterGenerate,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      rss: processRss(),
      peakAnonShmemBytes: peak.stop(),
      levels: history,
    };
  } finally {
    peak.stop();
    await model.dispose();
  }
}

// Run as a script: node dist/engine/elastic-scenario.js MODEL BUDGET POOL KV_FLOOR ALL_LOGITS
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const [path, budget, pool, floor, all] = process.argv.slice(2);
  runScenario(path!, Number(budget), pool as 'elastic' | 'static', floor !== undefined && floor !== '-' ? Number(floor) : undefined, { allLogits: all !== '0' })
    .then((r) => process.stdout.write(JSON.stringify(r) + '\n'))
    .catch((err: Error) => {
      process.stdout.write(JSON.stringify({ error: `${err.name}: ${err.message}` }) + '\n');
      process.exitCode = 1;
    });
}
