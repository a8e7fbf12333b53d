/**
 * OpenAI-compatible HTTP server (fastify): /v1/chat/completions, /v1/completions, and the ops
 * endpoints of routes-ops.ts (/v1/models, /health, /metrics, /version, /tokenize, /detokenize).
 *
 * NOTE: the server does no batching of its own. Every request becomes one model.generate()
 * call; the engine's scheduler batches all running requests into one forward pass per step
 * (continuous batching) and reuses cached prefixes. The server bounds how many requests may
 * wait (429 beyond that), turns client disconnects into aborts (the sequence and its KV are
 * freed at the next step), and answers every bad request with a 4xx in the OpenAI shape.
 * drain() (SIGTERM in `flexinfer serve`) refuses new work and lets running requests end (drain.ts).
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { ApiError, badRequest, fromValidation } from './errors.js';
import { ChatTemplate, ChatTemplateError, type ChatMessage } from '../engine/chat-template.js';
import { chatCompletionSchema, completionSchema, type ChatCompletionRequest, type CompletionRequest, type ResponseFormat, type SamplingFields } from './schemas.js';
import { checkGrammarSpec, type GrammarSpec } from '../grammar/engine.js';
import { GrammarError, UnsupportedSchemaError } from '../errors.js';
import { Metrics } from './metrics.js';
import { ServerHealth } from './health.js';
import { Drain, isShutdown, shutdownApiError, type DrainResult } from './drain.js';
import { registerOpsRoutes } from './routes-ops.js';
import type { GenerateResult, Model } from '../engine/model.js';

/** The model a server serves (the engine's Model). */
export type ServableModel = Pick<Model, 'info' | 'tokenize' | 'detokenize' | 'generate' | 'stats'>;

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
  let chatTemplate: ChatTemplate | undefined;
  let bosText: string | undefined;
  let inFlight = 0;

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
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false } },
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
  const admit = (): void => {
    if (inFlight >= parallel + maxQueue) {
      throw new ApiError(429, `The server is busy (${inFlight} requests running or queued); retry later.`, 'rate_limit_error', null, 'queue_full');
    }
  };

  registerOpsRoutes(app, {
    modelId: options.modelId,
    health,
    metrics,
    requireModel,
    checkModelId,
    chatPromptTokens,
    get inFlight() {
      return inFlight;
    },
    parallel,
  });

  /** The prompt tokens of chat messages: the model's template, and BOS as the file says. */
  function chatPromptTokens(m: ServableModel, bodyMessages: ChatCompletionRequest['messages'], opts: { addGenerationPrompt: boolean } = { addGenerationPrompt: true }): Uint32Array {
    const messages: ChatMessage[] = bodyMessages.map((msg, i) => ({
      role: msg.role === 'developer' ? 'system' : msg.role,
      content: typeof msg.content === 'string' ? msg.content : joinParts(msg.content, `messages[${i}].content`),
    }));
    if (!chatTemplate) {
      bosText = m.info.bosId != null ? m.detokenize([m.info.bosId]) : undefined;
      const eosText = m.info.eosId != null ? m.detokenize([m.info.eosId]) : undefined;
      chatTemplate = new ChatTemplate(m.info.chatTemplate ?? undefined, { bosToken: bosText, eosToken: eosText });
    }
    let text: string;
    try {
      text = chatTemplate.render(messages, opts);
    } catch (err) {
      if (err instanceof ChatTemplateError) throw badRequest(err.message, 'messages', 'chat_template_error');
      throw err;
    }
    // A template that writes the BOS text itself must not get a second BOS; otherwise the
    // file's tokenizer.ggml.add_bos_token decides, as in llama.cpp (Qwen2 adds none).
    return bosText && text.startsWith(bosText) ? m.tokenize(text, { addBos: false, special: true }) : m.tokenize(text, { special: true });
  }

  app.post('/v1/chat/completions', { schema: { body: chatCompletionSchema } }, async (req, reply) => {
    const body = req.body as ChatCompletionRequest;
    const m = requireModel();
    checkModelId(body.model);
    const prompt = chatPromptTokens(m, body.messages);
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
    return runGeneration(req, reply, m, 'chat', prompt, maxTokens, body, constraintOf(body.response_format));
  });

  app.post('/v1/completions', { schema: { body: completionSchema } }, async (req, reply) => {
    const body = req.body as CompletionRequest;
    const m = requireModel();
    checkModelId(body.model);
    let prompt: Uint32Array;
    if (typeof body.prompt === 'string' || typeof body.prompt[0] === 'string') {
      const text = typeof body.prompt === 'string' ? body.prompt : (body.prompt[0] as string);
      prompt = m.tokenize(text, { special: true });
    } else {
      prompt = Uint32Array.from(body.prompt as number[]);
      const vocab = Number(m.info.vocabSize ?? Infinity);
      const bad = prompt.findIndex((t) => t >= vocab);
      if (bad >= 0) throw badRequest(`prompt[${bad}] = ${prompt[bad]} is not a token id (vocabulary size ${vocab}).`, `prompt[${bad}]`, 'invalid_value');
    }
    // OpenAI's completions default is 16 tokens.
    return runGeneration(req, reply, m, 'text', prompt, body.max_tokens ?? 16, body);
  });

  /** Validates sizes, runs the generation, answers as JSON or as an SSE stream. */
  async function runGeneration(
    req: FastifyRequest,
    reply: FastifyReply,
    m: ServableModel,
    kind: 'chat' | 'text',
    prompt: Uint32Array,
    maxTokens: number | undefined,
    body: SamplingFields,
    constraint: GrammarSpec | null = null,
  ): Promise<unknown> {
    const ctx = m.info.contextSize;
    if (prompt.length === 0) throw badRequest('The prompt is empty.', kind === 'chat' ? 'messages' : 'prompt', 'empty_prompt');
    if (prompt.length >= ctx) {
      throw badRequest(
        `This model's maximum context length is ${ctx} tokens. However, your ${kind === 'chat' ? 'messages' : 'prompt'} resulted in ${prompt.length} tokens.`,
        kind === 'chat' ? 'messages' : 'prompt',
        'context_length_exceeded',
      );
    }
    admit();
    const room = ctx - prompt.length;
    const limit = Math.min(maxTokens ?? room, room);
    const abort = new AbortController();
    const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
    const options = {
      maxTokens: limit,
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? undefined,
      topK: body.top_k ?? undefined,
      minP: body.min_p ?? undefined,
      seed: body.seed ?? undefined,
      stop,
      presencePenalty: body.presence_penalty ?? undefined,
      frequencyPenalty: body.frequency_penalty ?? undefined,
      repeatPenalty: body.repeat_penalty ?? undefined,
      ...(constraint ? { constraint } : {}),
      signal: abort.signal,
    };
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '').slice(0, 24)}`;
    const created = Math.floor(Date.now() / 1000);
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
    // A client that goes away frees its sequence at once.
    const onClose = (): void => {
      if (!reply.raw.writableFinished) abort.abort();
    };
    reply.raw.on('close', onClose);
    const untrack = drainer.track(abort);
    inFlight++;
    metrics.requestStarted(kind);
    const t0 = performance.now();
    try {
      const gen = m.generate(prompt, options);
      if (!body.stream) {
        const result = await gen.result;
        metrics.requestDone(kind, result, performance.now() - t0);
        if (isShutdown(abort.signal)) throw shutdownApiError();
        const usage = usageOf(result);
        const finish = finishReason(result.finishReason);
        const choice =
          kind === 'chat'
            ? { index: 0, message: { role: 'assistant', content: result.text }, logprobs: null, finish_reason: finish }
            : { index: 0, text: result.text, logprobs: null, finish_reason: finish };
        return { id, object, created, model: options_modelId(), choices: [choice], usage, timings: timingsOf(result) };
      }
      // --- streaming: Server-Sent Events ---
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      const send = (data: unknown): void => {
        if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
      };
      const chunkObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
      const chunk = (delta: string | null, finish: string | null, first = false): unknown =>
        kind === 'chat'
          ? {
              id,
              object: chunkObject,
              created,
              model: options_modelId(),
              choices: [{ index: 0, delta: delta === null ? {} : first ? { role: 'assistant', content: delta } : { content: delta }, logprobs: null, finish_reason: finish }],
            }
          : { id, object: chunkObject, created, model: options_modelId(), choices: [{ index: 0, text: delta ?? '', logprobs: null, finish_reason: finish }] };
      if (kind === 'chat') send(chunk('', null, true));
      try {
        for await (const piece of gen) {
          if (abort.signal.aborted) break;
          if (piece.text) send(chunk(piece.text, null));
        }
        const result = await gen.result;
        metrics.requestDone(kind, result, performance.now() - t0);
        if (!abort.signal.aborted) {
          const usage = usageOf(result);
          const last = chunk(null, finishReason(result.finishReason)) as Record<string, unknown>;
          send({ ...last, timings: timingsOf(result) });
          if (body.stream_options?.include_usage) send({ id, object: chunkObject, created, model: options_modelId(), choices: [], usage });
          res.write('data: [DONE]\n\n');
        } else if (isShutdown(abort.signal)) {
          send(shutdownApiError().toJSON());
          res.write('data: [DONE]\n\n');
        }
      } catch (err) {
        if (!abort.signal.aborted) {
          const e = err instanceof ApiError ? err : new ApiError(500, `generation failed: ${(err as Error).message}`, 'server_error');
          send(e.toJSON());
          res.write('data: [DONE]\n\n');
        }
      } finally {
        res.end();
      }
      return reply;
    } catch (err) {
      throw mapEngineError(err);
    } finally {
      // Counted here whichever way the request ended once its client went away (a stream's
      // generation then finishes normally with the tokens it had).
      if (abort.signal.aborted) metrics.requestAborted(kind);
      inFlight--;
      untrack();
      reply.raw.off('close', onClose);
    }
  }

  function options_modelId(): string {
    return options.modelId;
  }

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

function joinParts(parts: Array<{ type: 'text'; text: string }>, param: string): string {
  if (!Array.isArray(parts)) throw badRequest(`'${param}' must be a string or an array of text parts.`, param);
  return parts.map((p) => p.text).join('');
}

function finishReason(reason: string): string {
  return reason === 'length' ? 'length' : 'stop';
}

function usageOf(result: GenerateResult): Record<string, unknown> {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.tokens.length,
    total_tokens: result.promptTokens + result.tokens.length,
    prompt_tokens_details: { cached_tokens: result.cachedPromptTokens },
  };
}

/** llama-server's `timings` extension: what the prefix cache saved and how long each phase took. */
function timingsOf(result: GenerateResult): Record<string, number> {
  return {
    cache_n: result.cachedPromptTokens,
    prompt_n: result.promptTokens - result.cachedPromptTokens,
    prompt_ms: result.timings.promptMs,
    predicted_n: result.tokens.length,
    predicted_ms: result.timings.genMs,
    predicted_per_second: result.timings.genTokensPerSec,
  };
}

/** response_format -> the output constraint (null for text); an unenforceable schema is a 400 naming it. */
function constraintOf(format: ResponseFormat | null | undefined): GrammarSpec | null {
  if (!format || format.type === 'text') return null;
  if (format.type === 'json_object') return { type: 'json_object' };
  if (!format.json_schema) throw badRequest("response_format.type 'json_schema' needs 'json_schema': { name, schema }.", 'response_format.json_schema', 'missing_required_parameter');
  const spec: GrammarSpec = { type: 'json_schema', schema: format.json_schema.schema ?? true };
  try {
    checkGrammarSpec(spec);
  } catch (err) {
    throw mapEngineError(err);
  }
  return spec;
}

/** Engine errors caused by the request (bad option values, context overflow) become 400s. */
function mapEngineError(err: unknown): unknown {
  if (err instanceof ApiError) return err;
  const e = err as { name?: string; message?: string; userFacing?: boolean; option?: string };
  if (e?.name === 'InvalidOptionError') return badRequest(e.message ?? 'invalid option', e.option ?? null, 'invalid_value');
  if (err instanceof UnsupportedSchemaError || e?.name === 'UnsupportedSchemaError') {
    const pointer = (e as { pointer?: string }).pointer ?? '';
    return badRequest(e.message ?? 'unsupported schema', `response_format.json_schema.schema${pointer.replace(/\//g, '.')}`, 'unsupported_schema');
  }
  if (err instanceof GrammarError || e?.name === 'GrammarError') return badRequest(e.message ?? 'invalid grammar', 'response_format', 'invalid_grammar');
  if (e?.name === 'ContextOverflowError') return badRequest(e.message ?? 'context length exceeded', null, 'context_length_exceeded');
  if (e?.name === 'AbortError') return new ApiError(499, 'The request was cancelled.', 'invalid_request_error', null, 'cancelled');
  return err;
}
