/**
 * Errors in the OpenAI shape: `{ "error": { "message", "type", "param", "code" } }` with the
 * HTTP status that goes with them. Bad input is always a 4xx; 500 is reserved for bugs.
 */

export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable';

/** An error the server answers with as-is. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toJSON(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 for a request field: names the field in `param`. */
export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

/** JSON-pointer-ish ajv path ("/messages/0/role") -> OpenAI param ("messages[0].role"). */
export function paramFromPath(path: string): string | null {
  if (!path) return null;
  const parts = path.split('/').filter((p) => p !== '');
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || null;
}

/** Fastify validation errors (ajv) -> one ApiError naming the first bad field. */
export function fromValidation(validation: Array<{ instancePath?: string; keyword?: string; params?: Record<string, unknown>; message?: string }>): ApiError {
  const v = validation[0]!;
  let param = paramFromPath(v.instancePath ?? '');
  let message: string;
  switch (v.keyword) {
    case 'additionalProperties': {
      const extra = String(v.params?.additionalProperty ?? '');
      param = param ? `${param}.${extra}` : extra;
      message = `Unrecognized request argument supplied: ${param}`;
      break;
    }
    case 'required': {
      const missing = String(v.params?.missingProperty ?? '');
      param = param ? `${param}.${missing}` : missing;
      message = `Missing required parameter: '${param}'.`;
      break;
    }
    case 'type':
      message = `Invalid type for '${param ?? 'body'}': expected ${String(v.params?.type)}.`;
      break;
    case 'enum':
      message = `Invalid value for '${param}': must be one of ${(v.params?.allowedValues as unknown[] | undefined)?.map((x) => JSON.stringify(x)).join(', ')}.`;
      break;
    default:
      message = `Invalid value for '${param ?? 'body'}': ${v.message ?? 'invalid'}.`;
  }
  return badRequest(message, param, v.keyword === 'additionalProperties' ? 'unknown_parameter' : 'invalid_value');
}
