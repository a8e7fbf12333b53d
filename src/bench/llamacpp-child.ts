/**
 * One llama.cpp generation run in its own process (so a benchmark can put it in a memory
 * cgroup): `node dist/bench/llamacpp-child.js MODEL THREADS CONTEXT PROMPT_TOKENS GEN_TOKENS [SEED]`
 * (SEED: sample at temperature 1 with it; '-' or none: greedy).
 * Prints one JSON line: { prompt_tps, gen_tps, tokens } or { error }.
 * @internal
 */
import { loadLlamaCpp, openLlamaCpp } from './llamacpp.js';
import { benchPromptTokens, processFigures } from './speed.js';

async function main(): Promise<void> {
  const [path, threads, ctx, promptTokens, genTokens, seed] = process.argv.slice(2);
  if (!path || !threads || !ctx || !promptTokens || !genTokens) {
    process.stdout.write(JSON.stringify({ error: 'usage: llamacpp-child MODEL THREADS CONTEXT PROMPT_TOKENS GEN_TOKENS' }) + '\n');
    process.exitCode = 2;
    return;
  }
  const h = await loadLlamaCpp();
  if ('error' in h) {
    process.stdout.write(JSON.stringify({ error: h.error }) + '\n');
    process.exitCode = 1;
    return;
  }
  const t0 = performance.now();
  const s = await openLlamaCpp(h, path, { threads: Number(threads), contextSize: Number(ctx) });
  const loadMs = performance.now() - t0;
  // Ids below 30000 exist in every supported vocabulary (benchPromptTokens caps there).
  const prompt = Array.from(benchPromptTokens(Number(promptTokens), 32000));
  const r = await s.generateGreedy(prompt, Number(genTokens), seed && seed !== '-' ? { temperature: 1, seed: Number(seed) } : undefined);
  await s.dispose();
  process.stdout.write(
    JSON.stringify({
      load_ms: loadMs,
      prompt_tps: prompt.length / r.promptSec,
      gen_tps: (r.tokens.length - 1) / r.genSec,
      tokens: r.tokens,
      ...processFigures(),
    }) + '\n',
  );
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String((err as Error)?.message ?? err) }) + '\n');
  process.exitCode = 1;
});
