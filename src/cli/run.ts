/**
 * `flexinfer run MODEL -p PROMPT [...]`: generate text from a prompt, streaming it to stdout,
 * with a timing line on stderr (or one JSON object with --json).
 */
import { parseArgs } from 'node:util';
import { loadModel, type GenerateOptions, type LoadModelOptions } from '../index.js';
import { defaultContextSize } from '../engine/model.js';
import { InvalidOptionError } from '../errors.js';
import { EXPERT_FLAGS_HELP, MODEL_FLAGS, SAMPLING_FLAGS, generateOptionsFrom, loadOptionsFrom } from './args.js';
import { createProgress, type Progress } from './progress.js';
import { resolveModelArg } from './model-arg.js';
import type { StreamingStats } from '../weights/streaming.js';

/** The streamed-weights figures of a model's stats (undefined without a budget). */
function streamingFigures(stats: Record<string, unknown>): StreamingStats | undefined {
  return (stats['weights'] as { streaming?: StreamingStats } | undefined)?.streaming;
}

const HELP = `Usage: flexinfer run MODEL -p PROMPT [options]

Generates text from PROMPT with the GGUF model MODEL, streaming it to stdout. A timing line
(prompt and generation tokens/s, peak RSS) goes to stderr.

Options:
  -p, --prompt TEXT        prompt text (required)
  -n, --n-predict N        tokens to generate (default 128)
      --temp T             temperature, 0 = greedy (default 0.8)
      --top-k K            top-k (default 40, 0 = off)
      --top-p P            top-p (default 0.95, 1 = off)
      --min-p P            min-p (default 0.05, 0 = off)
      --repeat-penalty R   repetition penalty (default 1 = off)
      --seed S             random seed (default: random)
      --json-schema FILE   constrain the output to JSON valid against this JSON Schema
      --grammar FILE       constrain the output to this GBNF / EBNF grammar (start rule: root)
  -t, --threads N          compute threads (default: all cores)
  -c, --ctx-size N         context size (default: min(model's, 4096), or the most a
                           --memory-budget holds when that is less)
      --memory-budget X    memory budget, e.g. 2GiB or 75%
      --memory-pool P      elastic (default: KV and resident weights share the budget) | static
      --kv-floor X         elastic: KV memory weights never take (default one full-context sequence)
      --kv LAYOUT          KV cache layout: vtensor | paged | contiguous
${EXPERT_FLAGS_HELP}      --json               print one JSON object (tokens, text, timings; with a budget, the
                           memory split and the streamed reads: rate per path, I/O wait per
                           token, reads in flight; for MoE models the expert cache's hit
                           rates, prediction accuracy, bytes read and I/O wait)
  -h, --help               show this help
`;

/** Entry point of `flexinfer run`; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      prompt: { type: 'string', short: 'p' },
      ...SAMPLING_FLAGS,
      ...MODEL_FLAGS,
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [modelPath, ...extra] = positionals;
  if (!modelPath) throw new InvalidOptionError('MODEL', 'missing model path (flexinfer run MODEL -p PROMPT; see --help)');
  if (extra.length > 0) throw new InvalidOptionError('MODEL', `unexpected extra arguments: ${extra.join(' ')}`);
  if (values.prompt === undefined) throw new InvalidOptionError('--prompt', 'missing (-p PROMPT)');
  const json = values.json === true;

  const loadOptions: LoadModelOptions = loadOptionsFrom(values);
  loadOptions.parallel = 1;
  const controller = new AbortController();
  loadOptions.signal = controller.signal;
  const onSigint = (): void => controller.abort();
  process.on('SIGINT', onSigint);
  // Load progress bar on a TTY (createProgress prints nothing otherwise).
  let progress: Progress | undefined;
  if (!json) {
    loadOptions.onProgress = ({ loadedBytes, totalBytes }) => {
      progress ??= createProgress('loading', totalBytes);
      progress.update(loadedBytes);
    };
  }

  const gen: GenerateOptions = { ...generateOptionsFrom(values, 128), signal: controller.signal };

  try {
    const loading = loadModel(await resolveModelArg(modelPath, { signal: controller.signal }), loadOptions);
    await loading.finally(() => progress?.done());
    await using model = await loading;
    const fullContext = defaultContextSize(model.info.trainContextSize);
    if (!json && loadOptions.contextSize === undefined && model.info.contextSize < fullContext) {
      process.stderr.write(`flexinfer: context ${model.info.contextSize} tokens, the most the memory budget holds beside the weights (default ${fullContext}; --ctx-size sets it)\n`);
    }
    const stream = model.generate(values.prompt, gen);
    if (!json) for await (const chunk of stream) process.stdout.write(chunk.text);
    const result = await stream.result;
    const peakRssBytes = process.resourceUsage().maxRSS * 1024;
    const t = result.timings;
    const io = streamingFigures(await model.stats());
    if (json) {
      // The memory split now and over the run (resident, ring, KV live / cached, free), and the
      // weights' statistics (streaming; for MoE models the expert cache).
      const st = (await model.stats({ history: true })) as { pool: unknown; weights: unknown };
      process.stdout.write(
        `${JSON.stringify({ tokens: result.tokens, text: result.text, finishReason: result.finishReason, promptTokens: result.promptTokens, contextSize: model.info.contextSize, timings: t, peakRssBytes, memory: st.pool, ...(io ? { io } : {}), weights: st.weights })}\n`,
      );
    } else {
      process.stdout.write('\n');
      process.stderr.write(
        `prompt: ${result.promptTokens} tokens, ${t.promptTokensPerSec.toFixed(1)} tokens/s | ` +
          `generation: ${result.tokens.length} tokens, ${t.genTokensPerSec.toFixed(1)} tokens/s | ` +
          `peak RSS: ${(peakRssBytes / 2 ** 20).toFixed(0)} MiB` +
          (io
            ? ` | streamed ${(io.bytesReadPerToken / 2 ** 20).toFixed(0)} MiB/token at ${(io.readBytesPerSec / 1e9).toFixed(2)} GB/s` +
              ` (${io.readPath.direct ? 'O_DIRECT' : 'buffered'}, ${io.meanReadsInFlight.toFixed(1)} reads in flight), I/O wait ${(io.ioWaitSecPerToken * 1000).toFixed(0)} ms/token`
            : '') +
          '\n',
      );
    }
    return result.finishReason === 'abort' ? 130 : 0;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
