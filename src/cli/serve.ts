/**
 * `flexinfer serve MODEL`: the OpenAI-compatible HTTP server.
 */
import { parseArgs } from 'node:util';
import { basename } from 'node:path';
import { InvalidOptionError } from '../errors.js';
import { MODEL_FLAGS, loadOptionsFrom, numberOption } from './args.js';
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

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      ...MODEL_FLAGS,
      parallel: { type: 'string' },
      'max-queue': { type: 'string' },
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
  const load = loadOptionsFrom(values);
  const kv = load.kv ?? 'vtensor';
  const parallel = numberOption('parallel', values.parallel, { min: 1, max: 256, integer: true }) ?? 4;
  const port = numberOption('port', values.port, { min: 0, max: 65535, integer: true }) ?? 8080;
  const modelId = values.alias ?? basename(path);

  const modelPromise = loadModel(path, { ...load, parallel, kv });
  // The server answers /health with 503 while the model loads.
  const server = createServer(modelPromise, {
    modelId,
    host: values.host ?? '127.0.0.1',
    port,
    parallel,
    maxQueue: numberOption('max-queue', values['max-queue'], { min: 0, integer: true }) ?? 64,
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
