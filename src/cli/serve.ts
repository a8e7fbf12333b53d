/**
 * `flexinfer serve MODEL`: the OpenAI-compatible HTTP server.
 */
import { parseArgs } from 'node:util';
import { basename } from 'node:path';
import { InvalidOptionError } from '../errors.js';
import { MODEL_FLAGS, loadOptionsFrom, numberOption } from './args.js';
import { loadModel } from '../index.js';
import { MAX_PARALLEL } from '../engine/model.js';
import { createServer } from '../server/server.js';
import { resolveModelArg } from './model-arg.js';

const HELP = `Usage: flexinfer serve MODEL [options]

Serves MODEL over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,
/v1/models, /health, /metrics, /version, /tokenize, /detokenize) with continuous batching.

On SIGTERM (or Ctrl-C) the server drains: /health answers 503 at once, new requests get 503
with Retry-After, running requests finish (up to --drain-timeout), then it exits 0. A second
SIGTERM ends the running requests at once with an error.

Options:
  --host HOST            address to bind (default 127.0.0.1)
  --port N               port (default 8080)
  --memory-budget X      memory budget: bytes, 1.5GiB, 512MiB, 60% (of the model file)
  --memory-pool P        elastic (default: KV and resident weights share the budget, weights
                         move between resident and streamed with the load) | static
  --kv-floor X           elastic: KV memory weights never take (default one full-context sequence)
  --parallel N           sequences decoded together (default 4)
  --max-queue N          requests allowed to wait beyond --parallel; more get 429 (default 64)
  --ctx-size N           tokens per sequence (default min(model's, 4096), or the most a
                         --memory-budget holds when that is less)
  --kv LAYOUT            vtensor (default) | paged | contiguous
  --threads N            compute threads (default: all cores)
  --api-key KEY          require Authorization: Bearer KEY on /v1/*
  --alias NAME           model id to serve (default: the file name)
  --drain-timeout S      seconds running requests may take to finish on SIGTERM (default 30)
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
      'drain-timeout': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidOptionError('MODEL', `expected one model file, got ${positionals.length}\n\n${HELP}`);
  const path = await resolveModelArg(positionals[0]!);
  const load = loadOptionsFrom(values);
  const kv = load.kv ?? 'vtensor';
  const parallel = numberOption('parallel', values.parallel, { min: 1, max: MAX_PARALLEL, integer: true }) ?? 4;
  const port = numberOption('port', values.port, { min: 0, max: 65535, integer: true }) ?? 8080;
  const modelId = values.alias ?? basename(path);
  const drainTimeoutS = numberOption('drain-timeout', values['drain-timeout'], { min: 0, max: 86_400 }) ?? 30;

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
  // Signals are handled from the start: a SIGTERM while the model loads stops the server too.
  let signals = 0;
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        process.stderr.write(`flexinfer: ${sig}: draining (${server.inFlight} requests in flight, up to ${drainTimeoutS} s; send it again to stop at once)\n`);
        resolve();
      } else {
        process.stderr.write(`flexinfer: ${sig} again: ending the requests in flight now\n`);
        server.forceDrain();
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  const address = await server.listen();
  process.stderr.write(`flexinfer: serving '${modelId}' at ${address}/v1 (loading the model...)\n`);
  const loaded = await Promise.race([modelPromise.then((m) => ({ m })), stopped.then(() => null)]).catch(async (err) => {
    await server.close();
    throw err;
  });
  if (loaded) {
    const model = loaded.m;
    process.stderr.write(`flexinfer: ready (${model.info.architecture}, ${model.info.numLayers} layers, context ${model.info.contextSize}, parallel ${parallel}, kv ${kv})\n`);
    await stopped;
  }
  const result = await server.drain({ timeoutMs: drainTimeoutS * 1000 });
  process.stderr.write(
    result.clean
      ? `flexinfer: drained in ${(result.ms / 1000).toFixed(1)} s; shutting down\n`
      : `flexinfer: ${result.numCut} requests ended with an error after ${(result.ms / 1000).toFixed(1)} s; shutting down\n`,
  );
  const model = await modelPromise.catch(() => null);
  await model?.dispose();
  return 0;
}
