/**
 * OpenAI-compatible HTTP server (fastify): /v1/chat/completions, /v1/completions (routes-generate.ts), and the ops
 * endpoints of routes-ops.ts (/v1/models, /health, /metrics, /version, /tokenize, /detokenize).
 *
 * NOTE: the server does no batching of its own. Every request becomes one model.generate()
 * call; the engine's scheduler batches all running requests into one forward pass per step
 * (continuous batching) and reuses cached prefixes. The server bounds how many requests may
 * wait (429 beyond that), turns client disconnects into aborts (the sequence and its KV are
 * freed at the next step), and answers every bad request with a 4xx in the OpenAI shape.
 * drain() (SIGTERM in `flexinfer serve`) refuses new work and lets running requests end (drain.ts).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { ApiError, badRequest, fromValidation } from './errors.js';
import { Metrics } from './metrics.js';
import { ServerHealth } from './health.js';
import { registerMemoryMetrics } from './memory-metrics.js';
import { Drain, type DrainResult } from './drain.js';
import { registerIoMetrics, registerModelHealth } from './io-metrics.js';
import { registerOpsRoutes } from './routes-ops.js';
import { registerGenerationRoutes } from './routes-generate.js';
import { registerEmbeddingRoutes } from './routes-embeddings.js';
import { ChatPrompter } from './chat-prompt.js';
import type { Model } from '../engine/model.js';

/** The model a server serves (the engine's Model). */
export type ServableModel = Pick<Model, 'info' | 'tokenize' | 'detokenize' | 'generate' | 'generateChoices' | 'embed' | 'stats'> & Partial<Pick<Model, 'failure'>>;

export interface ServerOptions {
  /** Model id served at /v1/models and accepted in requests. */
  modelId: string;
  host?: string;
  port?: number;
  /** Requests allowed to run at once (the engine's parallel sequences). Default 4. */
  parallel?: number;
  /** Requests allowed to wait beyond `parallel`; more get 429. Default 64. */
  maxQueue?: number;
  /** If set, /v1/* requires `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Largest request body in bytes. Default 4 MiB. */
  bodyLimit?: number;
  /** Log requests (fastify logger). Default false. */
  logger?: boolean;
}

/** A running server. */
export interface FlexinferServer {
  readonly app: FastifyInstance;
  /** Starts listening; resolves to the bound address, e.g. http://127.0.0.1:8080. */
  listen(): Promise<string>;
  close(): Promise<void>;
  /** Requests currently running or waiting. */
  readonly inFlight: number;
  /** What /health answers (add checks to it: health.addCheck(name, fn)). */
  readonly health: ServerHealth;
  /**
   * Graceful shutdown: /health turns 503 and new generation requests get 503 + Retry-After at
   * once; running requests finish (up to `timeoutMs`, default 30 s, or until forceDrain()),
   * the rest end with an OpenAI-shaped error; then the server stops listening.
   */
  drain(options?: { timeoutMs?: number }): Promise<DrainResult>;
  /** Cuts a drain's wait short: requests still running end with an error now. */
  forceDrain(): void;
}

/**
 * Creates the server for a model (or a promise of one: /health answers 503 while it loads).
 */
export function createServer(modelOrPromise: ServableModel | Promise<ServableModel>, options: ServerOptions): FlexinferServer {
  const parallel = options.parallel ?? 4;
  const maxQueue = options.maxQueue ?? 64;
  const metrics = new Metrics(options.modelId);
  const health = new ServerHealth();
  const drainer = new Drain();
  let model: ServableModel | undefined;
  let loadError: Error | undefined;
  const prompter = new ChatPrompter();
  let inFlight = 0;
  registerMemoryMetrics(metrics);
  registerIoMetrics(metrics);
  registerModelHealth(health, () => model);

  Promise.resolve(modelOrPromise).then(
    (m) => {
      model = m;
      health.setReady();
    },
    (err: Error) => {
      loadError = err;
      health.setFailed(err.message);
    },
  );

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? 4 * 1024 * 1024,
    // allowUnionTypes: response_format's json_schema.schema is an object or a boolean (ajv's
    // strict mode would otherwise print a warning to a user's terminal at startup).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, allowUnionTypes: true } },
  });

  // JSON only: any other content type is a 415, not a string body that fails the schema.
  app.removeContentTypeParser(['text/plain']);

  // --- errors: always the OpenAI shape, never a stack ---
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: unknown[] }, _req, reply) => {
    let apiErr: ApiError;
    if (err instanceof ApiError) apiErr = err;
    else if (err.validation) apiErr = fromValidation(err.validation as Parameters<typeof fromValidation>[0]);
    else if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err.name === 'SyntaxError')
      apiErr = badRequest(`The request body is not valid JSON: ${err.message}`, null, 'invalid_json');
    else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') apiErr = new ApiError(413, 'The request body is too large.', 'invalid_request_error', null, 'body_too_large');
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      apiErr = new ApiError(415, 'Unsupported Content-Type: send application/json.', 'invalid_request_error', null, 'unsupported_media_type');
    else if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) apiErr = new ApiError(err.statusCode, err.message);
    else {
      apiErr = new ApiError(500, `Internal server error: ${err.message}`, 'server_error');
      app.log.error(err);
    }
    metrics.countError(apiErr.status);
    void reply.code(apiErr.status).type('application/json').send(apiErr.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    metrics.countError(404);
    void reply.code(404).send(new ApiError(404, `Unknown endpoint: ${req.method} ${req.url}`, 'not_found_error', null, 'unknown_url').toJSON());
  });

  // --- while draining, new work goes elsewhere: 503 + Retry-After (GETs still answer) ---
  app.addHook('onRequest', async (req, reply) => {
    if (!drainer.draining || req.method !== 'POST') return;
    void reply.header('retry-after', '1').header('connection', 'close');
    throw drainer.refusal();
  });

  // --- auth on /v1/* ---
  app.addHook('onRequest', async (req) => {
    if (!options.apiKey || !req.url.startsWith('/v1/')) return;
    const auth = req.headers.authorization ?? '';
    if (auth !== `Bearer ${options.apiKey}`) {
      throw new ApiError(401, 'Invalid or missing API key: send Authorization: Bearer <key>.', 'authentication_error', null, 'invalid_api_key');
    }
  });

  const requireModel = (): ServableModel => {
    if (model) return model;
    if (loadError) throw new ApiError(503, `The model failed to load: ${loadError.message}`, 'service_unavailable', null, 'model_load_failed');
    throw new ApiError(503, 'The model is still loading; retry shortly.', 'service_unavailable', null, 'model_loading');
  };
  const checkModelId = (id: string): void => {
    if (id !== options.modelId) {
      throw new ApiError(404, `The model '${id}' does not exist; this server serves '${options.modelId}'.`, 'not_found_error', 'model', 'model_not_found');
    }
  };
  const admit = (): (() => void) => {
    if (inFlight >= parallel + maxQueue) {
      throw new ApiError(429, `The server is busy (${inFlight} requests running or queued); retry later.`, 'rate_limit_error', null, 'queue_full');
    }
    inFlight++;
    return () => {
      inFlight--;
    };
  };

  registerOpsRoutes(app, {
    modelId: options.modelId,
    health,
    metrics,
    requireModel,
    checkModelId,
    chatPromptTokens: (m, messages, opts) => prompter.promptTokens(m, messages, opts),
    get inFlight() {
      return inFlight;
    },
    parallel,
  });
  registerGenerationRoutes({ app, modelId: options.modelId, metrics, drainer, prompter, requireModel, checkModelId, admit });
  registerEmbeddingRoutes({ app, modelId: options.modelId, requireModel, checkModelId, admit });

  return {
    app,
    get inFlight() {
      return inFlight;
    },
    async listen() {
      return app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8080 });
    },
    async close() {
      await app.close();
    },
    health,
    async drain(opts = {}) {
      health.setDraining();
      const result = await drainer.drain(opts.timeoutMs ?? 30_000);
      await app.close();
      return result;
    },
    forceDrain() {
      drainer.force();
    },
  };
}
