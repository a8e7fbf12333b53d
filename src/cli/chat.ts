/**
 * `flexinfer chat MODEL [...]`: an interactive multi-turn chat. Each turn renders the whole
 * conversation with the model's chat template (ChatSession); the engine's prefix cache finds
 * the KV of the earlier turns, so only the new text is computed. After each reply a dim status
 * line on stderr says how many prompt tokens came from the cache.
 *
 * Works on a terminal (line editing, Ctrl-C aborts a reply, Ctrl-C on an empty line or Ctrl-D
 * exits) and on a pipe (one user message per line, the replies on stdout, exit at EOF).
 */
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import { loadModel, type GenerateOptions, type GenerateResult, type LoadModelOptions, type Model } from '../index.js';
import { ChatSession } from '../engine/chat.js';
import { ContextOverflowError, InvalidOptionError } from '../errors.js';
import { MODEL_FLAGS, SAMPLING_FLAGS, generateOptionsFrom, loadOptionsFrom } from './args.js';
import { resolveModelArg } from './model-arg.js';

const HELP = `Usage: flexinfer chat MODEL [options]

Interactive multi-turn chat with the GGUF model MODEL. Replies stream to stdout; after each
reply a status line on stderr shows the prompt tokens reused from the KV cache vs computed,
the time to first token and the generation speed. With stdin not a terminal, every input line
is one user message and the command exits at end of input.

Commands during the chat:
  /reset    start a new conversation (same system prompt)
  /stats    engine statistics (KV bytes mapped and live, prefix cache hits, ...)
  /exit     leave (also Ctrl-D, or Ctrl-C on an empty line)
  Ctrl-C while a reply streams stops that reply.

Options:
      --system TEXT        system prompt
  -n, --n-predict N        most tokens per reply (default 512)
      --temp T             temperature, 0 = greedy (default 0.8)
      --top-k K            top-k (default 40, 0 = off)
      --top-p P            top-p (default 0.95, 1 = off)
      --min-p P            min-p (default 0.05, 0 = off)
      --repeat-penalty R   repetition penalty (default 1, off)
      --seed S             random seed (default: random)
      --json-schema FILE   constrain each reply to JSON valid against this JSON Schema
      --grammar FILE       constrain each reply to this GBNF / EBNF grammar
  -t, --threads N          compute threads (default: all cores)
  -c, --ctx-size N         context size (default: min(model's, 4096), or the most a
                           --memory-budget holds when that is less)
      --kv LAYOUT          KV cache layout: vtensor | paged | contiguous
      --memory-budget X    memory budget, e.g. 2GiB or 75%
      --memory-pool P      elastic (default: KV and resident weights share the budget) | static
      --kv-floor X         elastic: KV memory weights never take (default one full-context sequence)
  -h, --help               show this help
`;

const COMMANDS_HINT = 'commands: /reset /stats /exit';
const DEFAULT_MAX_TOKENS = 512;

/** Parsed command line of `flexinfer chat`. @internal */
export interface ChatArgs {
  modelPath: string;
  system: string | undefined;
  load: LoadModelOptions;
  generate: GenerateOptions;
}

/** Parses and validates the arguments (throws InvalidOptionError / parseArgs errors). @internal */
export function parseChatArgs(argv: string[]): ChatArgs | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      system: { type: 'string' },
      ...SAMPLING_FLAGS,
      ...MODEL_FLAGS,
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const [modelPath, ...extra] = positionals;
  if (!modelPath) throw new InvalidOptionError('MODEL', 'missing model path (flexinfer chat MODEL; see --help)');
  if (extra.length > 0) throw new InvalidOptionError('MODEL', `unexpected extra arguments: ${extra.join(' ')}`);

  // One conversation at a time: one sequence is enough.
  const load: LoadModelOptions = { ...loadOptionsFrom(values), parallel: 1 };
  const generate = generateOptionsFrom(values, DEFAULT_MAX_TOKENS);
  return { modelPath, system: values.system, load, generate };
}

/** Dims a status line on a colour terminal (NO_COLOR respected). */
function dim(text: string, stream: NodeJS.WriteStream): string {
  return stream.isTTY && !process.env.NO_COLOR ? `\x1b[2m${text}\x1b[0m` : text;
}

/** The status line after a reply: prompt tokens reused vs computed, TTFT, generation speed. @internal */
export function statusLine(r: GenerateResult): string {
  const t = r.timings;
  const computed = r.promptTokens - r.cachedPromptTokens;
  const aborted = r.finishReason === 'abort' ? ' | aborted' : '';
  return (
    `[prompt: ${r.promptTokens} tokens (${r.cachedPromptTokens} reused, ${computed} computed) | ` +
    `first token: ${t.timeToFirstTokenMs.toFixed(0)} ms | ` +
    `reply: ${r.tokens.length} tokens, ${t.genTokensPerSec.toFixed(1)} tokens/s${aborted}]`
  );
}

function mib(n: unknown): string {
  return typeof n === 'number' ? `${(n / 2 ** 20).toFixed(1)} MiB` : '?';
}

/** /stats: the engine's statistics as a few readable lines. */
function formatStats(stats: Record<string, unknown>): string {
  const kv = (stats.kv ?? {}) as Record<string, number | string>;
  const sch = (stats.scheduler ?? {}) as Record<string, number>;
  const w = (stats.weights ?? {}) as Record<string, unknown>;
  const mem = (stats.memory ?? {}) as Record<string, number>;
  const lines = [
    `kv (${kv.layout}): mapped ${mib(kv.mappedBytes)}, live ${mib(kv.liveBytes)}, shared ${mib(kv.sharedBytes)}, ` +
      `capacity ${mib(kv.capacityBytes)}, fragmentation ${Number(kv.fragmentationPercent ?? 0).toFixed(1)}%`,
    `prefix cache: ${kv.prefixHits} hits, ${kv.prefixMisses} misses, ${kv.prefixTokensReused} tokens reused; ` +
      `mapping ${Number(kv.mapMsOnCriticalPath ?? 0).toFixed(1)} ms on the critical path, ${Number(kv.mapMsAhead ?? 0).toFixed(1)} ms ahead`,
    `scheduler: ${sch.steps} steps, ${sch.rows} rows, ${sch.preemptions} preemptions`,
    `weights: ${String(w.mode)}${typeof w.residentBytes === 'number' ? `, resident ${mib(w.residentBytes)}` : ''}; process RSS ${mib(mem.rss)}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** Entry point of `flexinfer chat`; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const args = parseChatArgs(argv);
  if (args === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const interactive = process.stdin.isTTY === true;
  const out = process.stdout;
  const err = process.stderr;

  // Ctrl-C while loading aborts the load.
  const loadAbort = new AbortController();
  const onLoadSigint = (): void => loadAbort.abort();
  process.on('SIGINT', onLoadSigint);
  const load: LoadModelOptions = { ...args.load, signal: loadAbort.signal };
  if (err.isTTY) {
    let last = -1;
    load.onProgress = ({ loadedBytes, totalBytes }) => {
      const pct = totalBytes > 0 ? Math.floor((loadedBytes * 100) / totalBytes) : 100;
      if (pct !== last) err.write(`\rloading ${pct}%`);
      last = pct;
      if (loadedBytes >= totalBytes) err.write('\r\x1b[K');
    };
  }
  let model: Model;
  try {
    model = await loadModel(await resolveModelArg(args.modelPath), load);
  } finally {
    process.off('SIGINT', onLoadSigint);
  }

  try {
    return await repl(model, args, interactive, out, err);
  } finally {
    await model.dispose();
  }
}

async function repl(model: Model, args: ChatArgs, interactive: boolean, out: NodeJS.WriteStream, err: NodeJS.WriteStream): Promise<number> {
  const sessionOptions = args.system !== undefined ? { systemPrompt: args.system } : {};
  let session = new ChatSession(model, sessionOptions);
  if (interactive) {
    err.write(dim(`${model.info.name || model.info.architecture}: ${model.info.contextSize}-token context, kv ${model.info.kv}; ${COMMANDS_HINT}\n`, err));
  }

  const rl = createInterface({ input: process.stdin, output: out, terminal: interactive, prompt: '> ' });
  // The async iterator buffers lines typed (or piped) while a reply is being generated.
  const lines = rl[Symbol.asyncIterator]();
  let reply: AbortController | null = null;
  let closing = false;
  const onSigint = (): void => {
    if (reply) {
      reply.abort(); // stop this reply, back to the prompt
    } else if (rl.line.length > 0) {
      // Like a shell: drop the half-typed line (Ctrl-E, then Ctrl-U: delete to the line start).
      rl.write(null, { ctrl: true, name: 'e' });
      rl.write(null, { ctrl: true, name: 'u' });
    } else {
      closing = true;
      if (interactive) out.write('\n');
      rl.close();
    }
  };
  rl.on('SIGINT', onSigint); // Ctrl-C on a terminal (raw mode)
  process.on('SIGINT', onSigint); // a signal (kill -INT, or Ctrl-C with stdin not a terminal)

  try {
    for (;;) {
      if (interactive) rl.prompt();
      const next = await lines.next();
      if (next.done || closing) break;
      const text = next.value.trim();
      if (text === '') continue;
      if (text.startsWith('/')) {
        const cmd = text.split(/\s+/)[0]!;
        if (cmd === '/exit' || cmd === '/quit') break;
        if (cmd === '/reset') {
          session = new ChatSession(model, sessionOptions);
          err.write(dim('[new conversation]\n', err));
        } else if (cmd === '/stats') {
          out.write(formatStats(await model.stats()));
        } else if (cmd === '/help') {
          out.write(`${COMMANDS_HINT}; Ctrl-C stops a reply\n`);
        } else {
          err.write(`unknown command ${cmd}; ${COMMANDS_HINT}\n`);
        }
        continue;
      }
      reply = new AbortController();
      try {
        const stream = session.send(text, { ...args.generate, signal: reply.signal });
        for await (const chunk of stream) out.write(chunk.text);
        const result = await stream.result;
        out.write('\n');
        err.write(`${dim(statusLine(result), err)}\n`);
      } catch (e) {
        out.write('\n');
        // A turn that cannot run because the conversation outgrew the context is not fatal;
        // anything else (the engine failed) ends the chat with its message.
        if (!(e instanceof ContextOverflowError)) throw e;
        err.write(`flexinfer: ${e.message}\n(the conversation is longer than the context: /reset starts a new one, or use a larger --ctx-size)\n`);
      } finally {
        reply = null;
      }
    }
  } finally {
    process.off('SIGINT', onSigint);
    rl.close();
  }
  return 0;
}
