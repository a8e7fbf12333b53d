/**
 * One flexinfer generation run in its own process (so a benchmark can put it in a memory
 * cgroup): `node dist/bench/flexinfer-child.js MODEL THREADS CONTEXT PROMPT_TOKENS GEN_TOKENS [BUDGET] [KV] [EXPERTS_JSON] [SEED]`
 * (SEED: sample at temperature 1 with it; '-' or none: greedy).
 * Prints one JSON line: { prompt_tps, gen_tps, tokens, stats, stats_first_token } or { error };
 * stats_first_token is the engine's stats() when the first token arrived, so the difference to
 * `stats` is the generation phase alone.
 * @internal
 */
import { loadModel, type ExpertOptions } from '../index.js';
import { benchPromptTokens, processFigures } from './speed.js';
import type { KvLayout } from '../kv/layouts.js';
import { deviceReadBytes } from '../weights/block-device.js';

async function main(): Promise<void> {
  const [path, threads, ctx, promptTokens, genTokens, budget, kv, experts, seed] = process.argv.slice(2);
  if (!path || !threads || !ctx || !promptTokens || !genTokens) {
    process.stdout.write(JSON.stringify({ error: 'usage: flexinfer-child MODEL THREADS CONTEXT PROMPT_TOKENS GEN_TOKENS [BUDGET] [KV]' }) + '\n');
    process.exitCode = 2;
    return;
  }
  const t0 = performance.now();
  const model = await loadModel(path, {
    threads: Number(threads),
    contextSize: Number(ctx),
    parallel: 1,
    ...(budget && budget !== '-' ? { memoryBudget: /^\d+$/.test(budget) ? Number(budget) : budget } : {}),
    ...(kv && kv !== '-' ? { kv: kv as KvLayout } : {}),
    ...(experts ? { experts: JSON.parse(experts) as ExpertOptions } : {}),
  });
  const loadMs = performance.now() - t0;
  // Same prompt ids as the llama.cpp child.
  const prompt = benchPromptTokens(Number(promptTokens), 32000);
  const stream = model.generate(prompt, { maxTokens: Number(genTokens), ignoreEos: true, ...(seed && seed !== '-' ? { temperature: 1, seed: Number(seed) } : { temperature: 0 }) });
  let statsFirstToken: Record<string, unknown> | undefined;
  // What the device read during generation (after the first token): streamed bytes plus read-ahead.
  let diskFirstToken: number | undefined;
  for await (const chunk of stream) {
    if (!statsFirstToken && chunk.tokens.length > 0) {
      statsFirstToken = await model.stats();
      diskFirstToken = deviceReadBytes(path);
    }
  }
  const r = await stream.result;
  const diskEnd = deviceReadBytes(path);
  const stats = await model.stats();
  await model.dispose();
  process.stdout.write(
    JSON.stringify({
      load_ms: loadMs,
      prompt_tps: r.timings.promptTokensPerSec,
      gen_tps: r.timings.genTokensPerSec,
      tokens: r.tokens,
      stats,
      ...processFigures(),
      stats_first_token: statsFirstToken,
      ...(diskFirstToken !== undefined && diskEnd !== undefined ? { disk_read_bytes_gen: diskEnd - diskFirstToken } : {}),
    }) + '\n',
  );
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String((err as Error)?.message ?? err) }) + '\n');
  process.exitCode = 1;
});
