/**
 * The generation endpoints: POST /v1/chat/completions and /v1/completions, answered as JSON or
 * as Server-Sent Events. Every request becomes one model.generate() call (the engine batches).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { ApiError, badRequest } from './errors.js';
import { chatCompletionSchema, completionSchema, type ChatCompletionRequest, type CompletionRequest, type ResponseFormat, type SamplingFields } from './schemas.js';
import { checkGrammarSpec, type GrammarSpec } from '../grammar/engine.js';
import { GrammarError, UnsupportedSchemaError } from '../errors.js';
import type { Metrics } from './metrics.js';
import { isShutdown, shutdownApiError, type Drain } from './drain.js';
import type { ChatPrompter } from './chat-prompt.js';
import { parseToolCalls, planTools, toolCallDeltas, ToolCallStream, type ToolPlan } from './tool-calls.js';
import type { GenerateResult, Generation } from '../engine/model.js';
import type { TokenLogprob } from '../engine/sampling.js';
import { chatLogprobContent, completionLogprobs } from './logprobs.js';
import type { ServableModel } from './server.js';

/** What the generation routes need of the server. */
export interface GenerationContext {
  app: FastifyInstance;
  modelId: string;
  metrics: Metrics;
  drainer: Drain;
  prompter: ChatPrompter;
  /** The model once loaded; throws the 503 of a loading / failed model otherwise. */
  requireModel(): ServableModel;
  /** Checks the `model` field of a request. */
  checkModelId(id: string): void;
  /** Counts a request in flight (429 when the queue is full); returns its release. */
  admit(): () => void;
}

/** What a generation adds to plain sampling. */
interface GenerationExtras {
  constraint?: GrammarSpec | null;
  /** Tools whose calls the output is parsed for. */
  tools?: ToolPlan | null;
  /** top logprobs per token (0-20), or null for none. */
  logprobs?: number | null;
}

/** Registers /v1/chat/completions and /v1/completions. */
export function registerGenerationRoutes(ctx: GenerationContext): void {
  ctx.app.post('/v1/chat/completions', { schema: { body: chatCompletionSchema } }, async (req, reply) => {
    const body = req.body as ChatCompletionRequest;
    const m = ctx.requireModel();
    ctx.checkModelId(body.model);
    const tools = planTools(body, ctx.prompter.toolFormat(m).format);
    const prompt = ctx.prompter.promptTokens(m, body.messages, { addGenerationPrompt: true }, tools?.tools, tools?.prefix);
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
    if (body.top_logprobs != null && !body.logprobs) throw badRequest("'top_logprobs' needs 'logprobs': true.", 'top_logprobs', 'invalid_value');
    const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : null;
    return runGeneration(req, reply, m, 'chat', prompt, maxTokens, body, { constraint: tools?.constraint ?? constraintOf(body.response_format), tools: tools?.parse ? tools : null, logprobs });
  });

  ctx.app.post('/v1/completions', { schema: { body: completionSchema } }, async (req, reply) => {
    const body = req.body as CompletionRequest;
    const m = ctx.requireModel();
    ctx.checkModelId(body.model);
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
    return runGeneration(req, reply, m, 'text', prompt, body.max_tokens ?? 16, body, { logprobs: body.logprobs ?? null });
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
    extra: GenerationExtras = {},
  ): Promise<unknown> {
    const constraint = extra.constraint ?? null;
    const tools = extra.tools ?? null;
    const numLogprobs = extra.logprobs ?? null;
    const contextSize = m.info.contextSize;
    if (prompt.length === 0) throw badRequest('The prompt is empty.', kind === 'chat' ? 'messages' : 'prompt', 'empty_prompt');
    if (prompt.length >= contextSize) {
      throw badRequest(
        `This model's maximum context length is ${contextSize} tokens. However, your ${kind === 'chat' ? 'messages' : 'prompt'} resulted in ${prompt.length} tokens.`,
        kind === 'chat' ? 'messages' : 'prompt',
        'context_length_exceeded',
      );
    }
    const release = ctx.admit();
    const room = contextSize - prompt.length;
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
      ...(numLogprobs !== null ? { logprobs: numLogprobs } : {}),
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
    const untrack = ctx.drainer.track(abort);
    ctx.metrics.requestStarted(kind);
    const t0 = performance.now();
    try {
      const n = body.n ?? 1;
      const gens = n > 1 ? m.generateChoices(prompt, n, options) : [m.generate(prompt, options)];
      const detok = m.detokenize.bind(m);
      if (!body.stream) {
        const results = await Promise.all(gens.map((g) => g.result));
        const result = mergeChoices(results);
        ctx.metrics.requestDone(kind, result, performance.now() - t0);
        if (isShutdown(abort.signal)) throw shutdownApiError();
        const choices = results.map((r, index) => {
          let finish = finishReason(r.finishReason);
          const lps = r.logprobs;
          if (kind === 'text') return { index, text: r.text, logprobs: lps ? completionLogprobs(detok, lps) : null, finish_reason: finish };
          let message: Record<string, unknown> = { role: 'assistant', content: r.text };
          if (tools) {
            const parsed = parseToolCalls(r.text, tools.format, tools.forced);
            if (parsed.toolCalls.length > 0) {
              message = { role: 'assistant', content: parsed.content, tool_calls: parsed.toolCalls };
              finish = 'tool_calls';
            }
          }
          return { index, message, logprobs: lps ? { content: chatLogprobContent(detok, lps), refusal: null } : null, finish_reason: finish };
        });
        return { id, object, created, model: ctx.modelId, choices, usage: usageOf(result), timings: timingsOf(result) };
      }
      // --- streaming: Server-Sent Events (n > 1: the choices' chunks interleave, each with its index) ---
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      const send = (data: unknown): void => {
        if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
      };
      const chunkObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
      const frame = (choice: object): Record<string, unknown> => ({ id, object: chunkObject, created, model: ctx.modelId, choices: [choice] });
      /** Streams one choice; resolves to its result. */
      const streamChoice = async (gen: Generation, index: number): Promise<GenerateResult> => {
        let textAt = 0; // completions' text_offset
        const chatChunk = (delta: object, finish: string | null, lps?: TokenLogprob[]): Record<string, unknown> =>
          frame({ index, delta, logprobs: lps ? { content: chatLogprobContent(detok, lps), refusal: null } : null, finish_reason: finish });
        const chunk = (delta: string | null, finish: string | null, lps?: TokenLogprob[]): Record<string, unknown> => {
          if (kind === 'chat') return chatChunk(delta === null ? {} : { content: delta }, finish, lps);
          const logprobs = lps ? completionLogprobs(detok, lps, textAt) : null;
          textAt += delta?.length ?? 0;
          return frame({ index, text: delta ?? '', logprobs, finish_reason: finish });
        };
        if (kind === 'chat') send(chatChunk({ role: 'assistant', content: '' }, null));
        // With tools, text that may open a call is held back and parsed at the end.
        const toolStream = tools ? new ToolCallStream(tools.format, tools.forced) : null;
        for await (const piece of gen) {
          if (abort.signal.aborted) break;
          const text = toolStream ? toolStream.push(piece.text) : piece.text;
          // Every token's logprobs are sent, with the text that became safe to send (may be '').
          const lps = toolStream ? undefined : piece.logprobs;
          if (text || lps?.length) send(chunk(text, null, lps));
        }
        const result = await gen.result;
        if (abort.signal.aborted) return result;
        let finish = finishReason(result.finishReason);
        if (toolStream) {
          const rest = toolStream.finish();
          if (rest.content) send(chunk(rest.content, null));
          for (const delta of toolCallDeltas(rest.toolCalls)) send(chatChunk(delta, null));
          if (rest.toolCalls.length > 0) finish = 'tool_calls';
        }
        send({ ...chunk(null, finish), timings: timingsOf(result) });
        return result;
      };
      try {
        const results = await Promise.all(gens.map((g, index) => streamChoice(g, index)));
        const result = mergeChoices(results);
        ctx.metrics.requestDone(kind, result, performance.now() - t0);
        if (!abort.signal.aborted) {
          if (body.stream_options?.include_usage) send({ id, object: chunkObject, created, model: ctx.modelId, choices: [], usage: usageOf(result) });
          res.write('data: [DONE]\n\n');
        } else if (isShutdown(abort.signal)) {
          send(shutdownApiError().toJSON());
          res.write('data: [DONE]\n\n');
        }
      } catch (err) {
        if (!abort.signal.aborted) {
          const mapped = mapEngineError(err);
          const e = mapped instanceof ApiError ? mapped : new ApiError(500, `generation failed: ${(err as Error).message}`, 'server_error');
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
      if (abort.signal.aborted) ctx.metrics.requestAborted(kind);
      release();
      untrack();
      reply.raw.off('close', onClose);
    }
  }
}

function finishReason(reason: string): string {
  return reason === 'length' ? 'length' : 'stop';
}

/**
 * n choices as one result for usage and metrics: the prompt once (it was computed once; the
 * other choices forked its K/V), the completion tokens of all choices.
 */
function mergeChoices(results: GenerateResult[]): GenerateResult {
  if (results.length === 1) return results[0]!;
  return { ...results[0]!, tokens: results.flatMap((r) => r.tokens) };
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
  // The engine stopped (its model file changed under it): a server-side failure, said plainly.
  if (e?.name === 'ModelFileChangedError') return new ApiError(500, e.message ?? 'the model file changed', 'server_error', null, 'model_file_changed');
  return err;
}
