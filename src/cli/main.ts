/**
 * `flexinfer` command line: one module per command, loaded on demand.
 *
 * Each command module exports `run(argv: string[]): Promise<number>` (the exit code).
 * Errors that carry a user-facing message (FlexinferError and its subclasses, or any
 * error with `userFacing = true`) are printed as one line; anything else is a bug and
 * prints its stack.
 */

type CommandModule = { run(argv: string[]): Promise<number> };

/** Command table: name -> [loader, one-line description]. */
const COMMANDS: Record<string, [() => Promise<CommandModule>, string]> = {};

/** Registers a command (called by the table below). @internal */
function command(name: string, description: string, load: () => Promise<CommandModule>): void {
  COMMANDS[name] = [load, description];
}

// --- command table (one line per command) ---
command('synth', 'write a random-weight GGUF with the shapes and tokenizer of a public model', () => import('./synth.js'));
command('inspect', 'show a GGUF file: architecture, tokenizer, tensors', () => import('./inspect.js'));
command('run', 'generate text from a prompt (streams to stdout)', () => import('./run.js'));
command('chat', 'interactive multi-turn chat that reuses earlier turns\' KV', () => import('./chat.js'));
command('serve', 'OpenAI-compatible HTTP server with continuous batching', () => import('./serve.js'));
command('plan', 'show how a memory budget is spent: resident vs streamed tensors, predicted speed', () => import('./plan.js'));
command('convert', 'rewrite a GGUF file with tensors aligned for direct I/O (--align 4096)', () => import('./convert.js'));
command('pull', 'download a model from the Hugging Face hub (hf:OWNER/REPO/FILE.gguf) into the cache', () => import('./pull.js'));
command('bench', 'flexinfer vs llama.cpp on the same file: speed, budget, KV and serving sweeps', () => import('./bench.js'));

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return 0;
  }
  if (name === '--version' || name === '-v') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`flexinfer: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  try {
    const mod = await entry[0]();
    return await mod.run(rest);
  } catch (err) {
    return reportError(err);
  }
}

/** Prints an error for a user: one line for known errors, a stack for bugs. */
export function reportError(err: unknown): number {
  const e = err as { name?: string; message?: string; cliMessage?: string; userFacing?: boolean; stack?: string; code?: string };
  if (e && (e.userFacing || e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')) {
    // Errors that name options say it with the command line's flags here (cliMessage).
    process.stderr.write(`flexinfer: ${e.cliMessage ?? e.message}\n`);
    return e.code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
  }
  if (e && e.name === 'AbortError') {
    process.stderr.write('flexinfer: aborted\n');
    return 130;
  }
  process.stderr.write(`flexinfer: internal error: ${e?.stack ?? String(err)}\n`);
  return 70;
}

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([n, [, d]]) => `  ${n.padEnd(9)} ${d}`);
  return `Usage: flexinfer <command> [options]    (flexinfer <command> --help for its options)

Commands:
${lines.join('\n')}
`;
}

void command;
