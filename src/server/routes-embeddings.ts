/**
 * POST /v1/embeddings in OpenAI's shape: `input` a string, an array of strings, an array of token
 * ids or an array of such arrays (a batch); `encoding_format` float or base64 (little-endian
 * float32, as OpenAI sends it). Each input is pooled as the model's metadata says (else its last
 * token, as llama-server does for decoder models) and L2-normalized.
 */
import { badRequest } from './errors.js';
import type { GenerationContext } from './routes-generate.js';

const embeddingsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'input'],
  properties: {
    model: { type: 'string', minLength: 1 },
    input: {
      anyOf: [
        { type: 'string' },
        { type: 'array', minItems: 1, maxItems: 2048, items: { type: 'string' } },
        { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } },
        { type: 'array', minItems: 1, maxItems: 2048, items: { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } } },
      ],
    },
    encoding_format: { enum: ['float', 'base64'] },
    dimensions: { type: 'integer', minimum: 1 },
    user: { type: 'string' },
  },
} as const;

interface EmbeddingsRequest {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
}

/** Registers /v1/embeddings. */
export function registerEmbeddingRoutes(ctx: Pick<GenerationContext, 'app' | 'modelId' | 'requireModel' | 'checkModelId' | 'admit'>): void {
  ctx.app.post('/v1/embeddings', { schema: { body: embeddingsSchema } }, async (req) => {
    const body = req.body as EmbeddingsRequest;
    const m = ctx.requireModel();
    ctx.checkModelId(body.model);
    if (body.dimensions !== undefined && body.dimensions !== m.info.dim) {
      throw badRequest(`This model's embeddings have ${m.info.dim} dimensions; 'dimensions' cannot shorten them.`, 'dimensions', 'invalid_value');
    }
    const items: Array<string | number[]> =
      typeof body.input === 'string' ? [body.input] : typeof body.input[0] === 'number' ? [body.input as number[]] : (body.input as Array<string | number[]>);
    const vocab = m.info.vocabSize;
    const prompts = items.map((item, i) => {
      const param = typeof body.input === 'string' ? 'input' : `input[${i}]`;
      if (item === '') throw badRequest('An input is an empty string.', param, 'empty_input');
      const tokens = typeof item === 'string' ? m.tokenize(item, { special: true }) : Uint32Array.from(item);
      if (tokens.length > m.info.contextSize) throw badRequest(`An input has ${tokens.length} tokens; this model's context holds ${m.info.contextSize}.`, param, 'context_length_exceeded');
      const bad = tokens.findIndex((t) => t >= vocab);
      if (bad >= 0) throw badRequest(`${tokens[bad]} is not a token id (vocabulary size ${vocab}).`, param, 'invalid_value');
      return tokens;
    });
    const release = ctx.admit();
    try {
      // The engine batches the inputs: they run as parallel sequences.
      const vectors = await Promise.all(prompts.map((p) => m.embed(p)));
      const data = vectors.map((v, index) => ({
        object: 'embedding',
        index,
        embedding: body.encoding_format === 'base64' ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v),
      }));
      const numTokens = prompts.reduce((s, p) => s + p.length, 0);
      return { object: 'list', data, model: ctx.modelId, usage: { prompt_tokens: numTokens, total_tokens: numTokens } };
    } finally {
      release();
    }
  });
}
