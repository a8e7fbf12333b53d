/**
 * Request schemas (JSON Schema, validated by fastify's ajv with coercion and property removal
 * off: a wrong type or an unknown field is a 400 naming it, as the OpenAI API does).
 */

const samplingProperties = {
  model: { type: 'string', minLength: 1 },
  max_tokens: { type: ['integer', 'null'], minimum: 1 },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], minimum: 0, maximum: 1 },
  top_k: { type: ['integer', 'null'], minimum: 0 },
  min_p: { type: ['number', 'null'], minimum: 0, maximum: 1 },
  seed: { type: ['integer', 'null'], minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
  stop: {
    anyOf: [
      { type: 'string', minLength: 1 },
      { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 16 },
      { type: 'null' },
    ],
  },
  presence_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  frequency_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
  repeat_penalty: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 10 },
  stream: { type: ['boolean', 'null'] },
  stream_options: {
    type: ['object', 'null'],
    additionalProperties: false,
    properties: { include_usage: { type: 'boolean' } },
  },
  n: { type: ['integer', 'null'], minimum: 1, maximum: 16 },
  user: { type: 'string' },
} as const;

const contentPart = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' } },
} as const;

/** OpenAI's response_format: text, json_object, or json_schema { name, schema, strict }. */
const responseFormat = {
  type: ['object', 'null'],
  additionalProperties: false,
  required: ['type'],
  properties: {
    type: { enum: ['text', 'json_object', 'json_schema'] },
    json_schema: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 64 },
        description: { type: 'string' },
        schema: { type: ['object', 'boolean'] },
        strict: { type: ['boolean', 'null'] },
      },
    },
  },
} as const;

/** OpenAI's tools: function definitions (parameters: a JSON Schema object). */
const toolsSchema = {
  type: ['array', 'null'],
  maxItems: 128,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'function'],
    properties: {
      type: { const: 'function' },
      function: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string', pattern: '^[a-zA-Z0-9_.-]{1,64}$' },
          description: { type: 'string' },
          parameters: { type: 'object' },
          strict: { type: ['boolean', 'null'] },
        },
      },
    },
  },
} as const;

const toolChoiceSchema = {
  anyOf: [
    { enum: ['none', 'auto', 'required'] },
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'function'],
      properties: { type: { const: 'function' }, function: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string' } } } },
    },
    { type: 'null' },
  ],
} as const;

/** An assistant message's tool calls (arguments as JSON text). */
const toolCallsSchema = {
  type: 'array',
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['function'],
    properties: {
      id: { type: 'string' },
      type: { const: 'function' },
      function: { type: 'object', additionalProperties: false, required: ['name', 'arguments'], properties: { name: { type: 'string' }, arguments: { type: 'string' } } },
    },
  },
} as const;

export const chatCompletionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'messages'],
  properties: {
    ...samplingProperties,
    response_format: responseFormat,
    tools: toolsSchema,
    tool_choice: toolChoiceSchema,
    parallel_tool_calls: { type: ['boolean', 'null'] },
    logprobs: { type: ['boolean', 'null'] },
    top_logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['role'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
          content: { anyOf: [{ type: 'string' }, { type: 'array', items: contentPart }, { type: 'null' }] },
          name: { type: 'string' },
          tool_calls: toolCallsSchema,
          tool_call_id: { type: 'string' },
        },
      },
    },
  },
} as const;

export const completionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'prompt'],
  properties: {
    ...samplingProperties,
    logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', minItems: 1, maxItems: 1, items: { type: 'string' } },
        { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } },
      ],
    },
  },
} as const;

/** The body of POST /v1/chat/completions after validation. */
export interface ChatCompletionRequest extends SamplingFields {
  messages: Array<{
    role: string;
    content?: string | Array<{ type: 'text'; text: string }> | null;
    name?: string;
    tool_calls?: Array<{ id?: string; type?: 'function'; function: { name: string; arguments: string } }>;
    tool_call_id?: string;
  }>;
  max_completion_tokens?: number | null;
  response_format?: ResponseFormat | null;
  tools?: ToolDefinition[] | null;
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } } | null;
  parallel_tool_calls?: boolean | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
}

/** An OpenAI tool definition. */
export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string; parameters?: object; strict?: boolean | null };
}

export interface ResponseFormat {
  type: 'text' | 'json_object' | 'json_schema';
  json_schema?: { name: string; description?: string; schema?: object | boolean; strict?: boolean | null };
}

/** The body of POST /v1/completions after validation. */
export interface CompletionRequest extends SamplingFields {
  prompt: string | string[] | number[];
  logprobs?: number | null;
}

export interface SamplingFields {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repeat_penalty?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  n?: number | null;
  user?: string;
}
