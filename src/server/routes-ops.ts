/**
 * The endpoints routers, probes and operators call, beside the OpenAI API:
 *   GET  /health      200 when ready, 503 while loading, draining, failed or unhealthy (health.ts)
 *   GET  /version     {"version": ...}
 *   GET  /v1/models   the served model, with vLLM's fields (root, max_model_len)
 *   GET  /metrics     Prometheus text (metrics.ts)
 *   POST /tokenize    vLLM's shape: {prompt} or {messages}, -> {count, max_model_len, tokens[, token_strs]}
 *   POST /detokenize  vLLM's shape: {tokens} -> {prompt}
 * Request bodies are validated like the OpenAI endpoints (unknown fields rejected).
 */
import type { FastifyInstance } from 'fastify';
import { createRequire } from 'node:module';
import { badRequest } from './errors.js';
import type { ServerHealth } from './health.js';
import type { Metrics } from './metrics.js';
import { chatCompletionSchema, type ChatCompletionRequest } from './schemas.js';
import type { ServableModel } from './server.js';

/** What the ops routes need of the server. */
export interface OpsContext {
  modelId: string;
  health: ServerHealth;
  metrics: Metrics;
  /** The model once loaded; throws the 503 of a loading / failed model otherwise. */
  requireModel(): ServableModel;
  /** Checks the `model` field of a request. */
  checkModelId(id: string): void;
  /** The prompt tokens the chat endpoint makes of these messages (same template, same BOS rule). */
  chatPromptTokens(m: ServableModel, messages: ChatCompletionRequest['messages'], options: { addGenerationPrompt: boolean }): Uint32Array;
  readonly inFlight: number;
  readonly parallel: number;
}

const require = createRequire(import.meta.url);
const VERSION = (require('../../package.json') as { version: string }).version;

const modelField = { type: 'string', minLength: 1 } as const;
const tokenizeSchema = {
  oneOf: [
    {
      type: 'object',
      required: ['prompt'],
      additionalProperties: false,
      properties: { model: modelField, prompt: { type: 'string' }, add_special_tokens: { type: 'boolean' }, return_token_strs: { type: 'boolean' } },
    },
    {
      type: 'object',
      required: ['messages'],
      additionalProperties: false,
      properties: {
        model: modelField,
        // The chat endpoint's own message schema (issue 13's tools etc. come along with it).
        messages: chatCompletionSchema.properties.messages,
        add_generation_prompt: { type: 'boolean' },
        add_special_tokens: { type: 'boolean' },
        return_token_strs: { type: 'boolean' },
      },
    },
  ],
} as const;
const detokenizeSchema = {
  type: 'object',
  required: ['tokens'],
  additionalProperties: false,
  properties: { model: modelField, tokens: { type: 'array', items: { type: 'integer', minimum: 0 } } },
} as const;

interface TokenizeBody {
  model?: string;
  prompt?: string;
  messages?: ChatCompletionRequest['messages'];
  add_generation_prompt?: boolean;
  add_special_tokens?: boolean;
  return_token_strs?: boolean;
}

/** Registers the ops routes on `app`. */
export function registerOpsRoutes(app: FastifyInstance, ctx: OpsContext): void {
  app.get('/health', async (_req, reply) => {
    const { code, body } = ctx.health.report();
    void reply.code(code);
    return body;
  });

  app.get('/version', async () => ({ version: VERSION }));

  app.get('/v1/models', async () => {
    const m = ctx.requireModel();
    return {
      object: 'list',
      data: [{ id: ctx.modelId, object: 'model', created: ctx.metrics.startedAt, owned_by: 'flexinfer', root: m.info.path, parent: null, max_model_len: m.info.contextSize }],
    };
  });

  app.get('/metrics', async (_req, reply) => {
    const m = safeModel(ctx);
    const stats = m ? await m.stats().catch(() => ({})) : {};
    void reply.type('text/plain; version=0.0.4');
    return ctx.metrics.render({ inFlight: ctx.inFlight, parallel: ctx.parallel, stats });
  });

  app.post('/tokenize', { schema: { body: tokenizeSchema } }, async (req) => {
    const body = req.body as TokenizeBody;
    const m = ctx.requireModel();
    if (body.model !== undefined) ctx.checkModelId(body.model);
    let tokens: Uint32Array;
    if (body.prompt !== undefined) {
      // vLLM: add_special_tokens (default true) adds BOS as the model file says.
      tokens = m.tokenize(body.prompt, { special: true, ...(body.add_special_tokens === false ? { addBos: false } : {}) });
    } else {
      tokens = ctx.chatPromptTokens(m, body.messages!, { addGenerationPrompt: body.add_generation_prompt ?? true });
    }
    const ids = Array.from(tokens);
    return {
      count: ids.length,
      max_model_len: m.info.contextSize,
      tokens: ids,
      ...(body.return_token_strs ? { token_strs: ids.map((t) => m.detokenize([t])) } : {}),
    };
  });

  app.post('/detokenize', { schema: { body: detokenizeSchema } }, async (req) => {
    const body = req.body as { model?: string; tokens: number[] };
    const m = ctx.requireModel();
    if (body.model !== undefined) ctx.checkModelId(body.model);
    const vocab = m.info.vocabSize;
    const bad = body.tokens.findIndex((t) => t >= vocab);
    if (bad >= 0) throw badRequest(`tokens[${bad}] = ${body.tokens[bad]} is not a token id (vocabulary size ${vocab}).`, `tokens[${bad}]`, 'invalid_value');
    return { prompt: m.detokenize(body.tokens) };
  });
}

function safeModel(ctx: OpsContext): ServableModel | undefined {
  try {
    return ctx.requireModel();
  } catch {
    return undefined;
  }
}
