/**
 * `flexinfer serve MODEL`: the OpenAI-compatible HTTP server.
 */
import { parseArgs } from 'node:util';
import { basename } from 'node:path';
import { availableParallelism } from 'node:os';
import { InvalidOptionError } from '../errors.js';
import { loadModel } from '../index.js';
import { createServer } from '../server/server.js';

const HELP = `Usage: flexinfer serve MODEL [options]

Serves MODEL over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,
/v1/models, /health, /metrics) with continuous batching.

Options:
  --host HOST            address to bind (default 127.0.0.1)
  --port N               port (default 8080)
  --memory-budget X      memory budget: bytes, 1.5GiB, 512MiB, 60% (of the model file)
  --parallel N           sequences decoded together (default 4)
  --max-queue N          requests allowed to wait beyond --parallel; more get 429 (default 64)
  --ctx-size N           tokens per sequence (default min(model's, 4096))
  --kv LAYOUT            vtensor (default) | contiguous
  --threads N            compute threads (default: all cores)
  --api-key KEY          require Authorization: Bearer KEY on /v1/*
  --alias NAME           model id to serve (default: the file name)
`;

function int(name: string, v: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidOptionError(`--${name}`, `must be an integer in [${min}, ${max}], got '${v}'`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'memory-budget': { type: 'string' },
      parallel: { type: 'string' },
      'max-queue': { type: 'string' },
      'ctx-size': { type: 'string' },
      kv: { type: 'string' },
      threads: { type: 'string' },
      'api-key': { type: 'string' },
      alias: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidOptionError('MODEL', `expected one model file, got ${positionals.length}\n\n${HELP}`);
  const path = positionals[0]!;
  const kv = values.kv ?? 'vtensor';
  if (kv !== 'vtensor' && kv !== 'contiguous') throw new InvalidOptionError('--kv', `must be vtensor or contiguous, got '${kv}'`);
  const parallel = int('parallel', values.parallel, 1, 256) ?? 4;
  const port = int('port', values.port, 0, 65535) ?? 8080;
  const modelId = values.alias ?? basename(path);

  const modelPromise = loadModel(path, {
    threads: int('threads', values.threads, 1, 1024) ?? availableParallelism(),
    contextSize: int('ctx-size', values['ctx-size'], 16),
    parallel,
    kv,
    ...(values['memory-budget'] !== undefined ? { memoryBudget: values['memory-budget'] } : {}),
  });
  // The server answers /health with 503 while the model loads.
  const server = createServer(modelPromise, {
    modelId,
    host: values.host ?? '127.0.0.1',
    port,
    parallel,
    maxQueue: int('max-queue', values['max-queue'], 0) ?? 64,
    ...(values['api-key'] ? { apiKey: values['api-key'] } : {}),
  });
  const address = await server.listen();
  process.stderr.write(`flexinfer: serving '${modelId}' at ${address}/v1 (loading the model...)\n`);
  const model = await modelPromise.catch(async (err) => {
    await server.close();
    throw err;
  });
  process.stderr.write(`flexinfer: ready (${model.info.architecture}, ${model.info.numLayers} layers, context ${model.info.contextSize}, parallel ${parallel}, kv ${kv})\n`);

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  process.stderr.write('flexinfer: shutting down\n');
  await server.close();
  await model.dispose();
  return 0;
}
