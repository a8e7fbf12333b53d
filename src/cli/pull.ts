/**
 * `flexinfer pull hf:OWNER/REPO/FILE.gguf`: downloads a model into the hub cache (resumable,
 * sha256-verified) and prints its local path. run, chat, serve, plan and inspect take the same
 * URIs and pull on first use.
 */
import { parseArgs } from 'node:util';
import { InvalidOptionError } from '../errors.js';
import { hubCacheDir } from '../hub/cache.js';
import { isHubUri } from '../hub/pull.js';
import { pullWithProgress } from './model-arg.js';

const HELP = `Usage: flexinfer pull MODEL [options]

Downloads MODEL from the Hugging Face hub into the local cache and prints its path.
MODEL is one of
  hf:OWNER/REPO/FILE.gguf     one file (the first part of a split model fetches all parts)
  hf:OWNER/REPO:QUANT         the repository's GGUF file with QUANT in its name (e.g. Q4_K_M)
  hf:OWNER/REPO               the repository's only GGUF file
optionally followed by #REVISION (branch, tag or commit; default main).

Downloads resume where an interrupted one stopped, and every file is checked against the
sha256 the hub publishes. Split models (NAME-00001-of-00003.gguf) are merged into one file.

Options:
  --cache-dir DIR   cache root (default: $FLEXINFER_HUB_CACHE, $HF_HUB_CACHE, $HF_HOME/hub,
                    $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub)
  --offline         use the cache only ($HF_HUB_OFFLINE=1 does the same)
  --json            print one JSON object (path, files, commit) instead of the path
  -h, --help        show this help

Environment: HF_TOKEN (gated or private repositories), HF_ENDPOINT (hub URL).
`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'cache-dir': { type: 'string' },
      offline: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidOptionError('MODEL', `expected one model URI, got ${positionals.length}; see flexinfer pull --help`);
  const uri = positionals[0]!;
  if (!isHubUri(uri)) throw new InvalidOptionError('MODEL', `'${uri}' is not a hub URI; expected hf:OWNER/REPO/FILE.gguf (see flexinfer pull --help)`);
  const ac = new AbortController();
  const onSigint = (): void => ac.abort();
  process.once('SIGINT', onSigint);
  try {
    const cacheDir = values['cache-dir'] ?? hubCacheDir();
    const result = await pullWithProgress(uri, {
      cacheDir,
      signal: ac.signal,
      ...(values.offline ? { offline: true } : {}),
      onFile: ({ file, size, cached }) => {
        if (!values.json && cached) process.stderr.write(`${file}: in the cache (${(size / 2 ** 20).toFixed(1)} MiB)\n`);
      },
    });
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else process.stdout.write(`${result.path}\n`);
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
