/**
 * Shared error classes. Every error a user can cause (bad file, bad option, budget too small)
 * is a FlexinferError subclass with a message that says what is wrong and what to do;
 * `userFacing` tells the CLI and server to print the message, not a stack.
 */
import { supportedGgmlTypes } from './gguf/ggml-type.js';

/** Base class of errors caused by input or environment, not by a bug. */
export class FlexinferError extends Error {
  readonly userFacing = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A command-line or API option has a wrong value. */
export class InvalidOptionError extends FlexinferError {
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(`${option}: ${message}`);
  }
}

/** Why a GGUF file was rejected (stable identifiers for tests and callers). */
export type InvalidGgufCode =
  | 'BAD_MAGIC'
  | 'UNSUPPORTED_VERSION'
  | 'TRUNCATED'
  | 'HEADER_TOO_LARGE'
  | 'STRING_TOO_LONG'
  | 'ARRAY_TOO_LONG'
  | 'COUNT_TOO_LARGE'
  | 'BAD_ALIGNMENT'
  | 'UNKNOWN_TYPE'
  | 'UNKNOWN_VALUE_TYPE'
  | 'BAD_VALUE'
  | 'BAD_KEY'
  | 'BAD_NAME'
  | 'DIMS_OVERFLOW'
  | 'BAD_DIMS'
  | 'BAD_OFFSET'
  | 'TENSOR_OUT_OF_FILE'
  | 'TENSORS_OVERLAP'
  | 'DUPLICATE_TENSOR'
  | 'DUPLICATE_KEY'
  | 'NESTING_TOO_DEEP'
  | 'WRONG_VALUE_TYPE'
  | 'BAD_DATA';

/**
 * A GGUF file (or data given to the GGUF writer) is malformed. `code` names the problem,
 * `path` and `offset` (byte position in the file, -1 if not tied to one) say where.
 */
export class InvalidGgufError extends FlexinferError {
  constructor(
    readonly code: InvalidGgufCode,
    readonly path: string,
    readonly offset: number,
    detail: string,
  ) {
    const where = offset >= 0 ? ` (at byte ${offset})` : '';
    super(`${path}: invalid GGUF: ${detail}${where}`);
  }
}

/** The model file's architecture (general.architecture) has no forward pass here. */
export class UnsupportedArchitectureError extends FlexinferError {
  constructor(
    readonly architecture: string,
    readonly supported: readonly string[],
  ) {
    super(`architecture '${architecture}' is not supported; supported: ${supported.join(', ')}`);
  }
}

/** A weight tensor uses a ggml type the kernels cannot compute with (IQ2_*, IQ3_*, TQ*, ...). */
export class UnsupportedTensorTypeError extends FlexinferError {
  constructor(
    readonly tensor: string,
    readonly typeName: string,
    supported: readonly string[] = supportedGgmlTypes().map((t) => t.name),
  ) {
    super(
      `tensor '${tensor}' has type ${typeName}, which is not supported (supported: ${supported.join(', ')})` +
        '; use a file quantized to one of these (e.g. a Q4_K_M, Q3_K_M or IQ4_XS download)',
    );
  }
}

/** The model file parses as GGUF but lacks keys or tensors the model needs, or they disagree. */
export class InvalidModelError extends FlexinferError {
  constructor(message: string) {
    super(`invalid model: ${message}`);
  }
}

/** A prompt (plus what must be generated) does not fit in the context. */
export class ContextOverflowError extends FlexinferError {
  constructor(
    readonly numTokens: number,
    readonly contextSize: number,
  ) {
    super(`prompt has ${numTokens} tokens but the context holds ${contextSize}; shorten the prompt or load the model with a larger contextSize`);
  }
}

/** The model was disposed (or its worker died) while a request was pending or after. */
export class ModelDisposedError extends FlexinferError {
  constructor(message = 'the model was disposed; load it again') {
    super(message);
  }
}

/** Tokenizer metadata is missing, inconsistent or of an unsupported kind. */
export class TokenizerError extends FlexinferError {}

/**
 * A memory budget is below what the weights (norms, output, stream buffers), KV and scratch
 * need. The message names the API's options (memoryBudget, contextSize, parallel, kvFloor);
 * `cliMessage`, when set, says the same with the command line's flags.
 */
export class InsufficientMemoryError extends FlexinferError {
  readonly cliMessage?: string;
  constructor(
    readonly budget: number,
    readonly minimum: number,
    readonly hint: string,
    cliHint?: string,
  ) {
    const head = `memory budget of ${budget} bytes (${(budget / 2 ** 20).toFixed(1)} MiB) is below the minimum of ${minimum} bytes (${(minimum / 2 ** 20).toFixed(1)} MiB); `;
    super(head + hint);
    if (cliHint !== undefined) this.cliMessage = head + cliHint;
  }
}

/** A request's K/V does not fit in the KV pool even with nothing else running. */
export class KvCapacityError extends FlexinferError {
  constructor(readonly numTokens: number) {
    super(`a sequence of ${numTokens} tokens does not fit in the KV cache even alone; raise the memory budget, lower contextSize or shorten the prompt`);
  }
}

/** A JSON Schema (response_format, jsonSchema, a tool's parameters) that cannot be enforced. */
export class UnsupportedSchemaError extends FlexinferError {
  constructor(
    readonly detail: string,
    /** JSON pointer into the schema ('' = the root). */
    readonly pointer: string,
  ) {
    super(`schema${pointer ? ` at '${pointer}'` : ''}: ${detail}; constrained output needs a schema the grammar can enforce (see README: Structured output)`);
  }
}

/** A grammar (GBNF/EBNF text, or a schema the grammar compiler refused) that does not compile. */
export class GrammarError extends FlexinferError {
  constructor(message: string) {
    super(`grammar: ${message}`);
  }
}

/** How a model file changed under a running model. */
export type ModelFileChange = 'truncated' | 'modified' | 'replaced' | 'deleted' | 'io-error';

/**
 * The model file changed under a running model (truncated, written to, replaced or deleted),
 * or reading it failed (an I/O error): streamed weights can no longer be trusted or read. The
 * model stops; `path` names the file, `reason` says what happened.
 */
export class ModelFileChangedError extends FlexinferError {
  constructor(
    readonly path: string,
    readonly reason: ModelFileChange,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    const what: Record<ModelFileChange, string> = {
      truncated: 'was truncated while the model was running',
      modified: 'was written to while the model was running',
      replaced: 'was replaced while the model was running',
      deleted: 'was deleted while the model was running',
      'io-error': 'could not be read (I/O error)',
    };
    const todo =
      reason === 'io-error'
        ? 'check the storage device (dmesg) and load the model again'
        : 'the weights on disk no longer match the loaded model; load it again once the file is complete';
    super(`model file ${path} ${what[reason]}: ${detail}; ${todo}`, options);
  }
}
