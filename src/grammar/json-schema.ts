/**
 * Checks a JSON Schema before it is compiled into a grammar: every keyword must be one the
 * grammar enforces (or a pure annotation). A schema that uses anything else is refused with
 * an error naming the keyword and where it is, never turned into silently unconstrained
 * output.
 *
 * NOTE: the supported set is what XGrammar's JSON-schema converter (0.1.27) enforces and
 * what tests/grammar.test.ts checks against an independent validator (ajv): types, enum,
 * const, properties / required / additionalProperties, items / prefixItems / minItems /
 * maxItems, anyOf / oneOf, allOf of one schema, local $ref into $defs / definitions, string
 * minLength / maxLength / pattern / format (the formats listed below), and bounds on integers (not on fractional numbers: refused).
 */
import { UnsupportedSchemaError } from '../errors.js';

/** Keywords that only describe (no constraint to enforce). */
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$schema', '$id', '$comment', 'deprecated', 'readOnly', 'writeOnly', 'nullable']);

/** Keywords the grammar enforces. */
const ENFORCED = new Set([
  'type', 'enum', 'const',
  'properties', 'required', 'additionalProperties',
  'items', 'prefixItems', 'minItems', 'maxItems',
  'anyOf', 'oneOf', 'allOf', '$ref', '$defs', 'definitions',
  'minLength', 'maxLength', 'pattern', 'format',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum',
]);

/** String formats the grammar enforces. */
export const SUPPORTED_FORMATS = ['date', 'time', 'date-time', 'email', 'uuid', 'ipv4', 'ipv6', 'hostname', 'uri'];

const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null', 'array', 'object']);

/**
 * Throws UnsupportedSchemaError (naming the keyword and its JSON pointer) unless every part
 * of `schema` can be enforced. `true` / `{}` (anything) is accepted: it becomes any JSON value.
 */
export function checkJsonSchema(schema: unknown): void {
  if (schema === true) return;
  if (!isObject(schema)) throw new UnsupportedSchemaError('the schema must be a JSON object', '');
  visit(schema, '', schema);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function visit(node: unknown, path: string, root: Record<string, unknown>): void {
  if (node === true || (isObject(node) && Object.keys(node).length === 0)) return;
  if (node === false) throw new UnsupportedSchemaError("the schema 'false' (nothing allowed) cannot be generated", path);
  if (!isObject(node)) throw new UnsupportedSchemaError(`expected a schema object, got ${JSON.stringify(node)}`, path);
  for (const [key, value] of Object.entries(node)) {
    if (ANNOTATIONS.has(key) || key.startsWith('x-')) continue;
    if (!ENFORCED.has(key)) throw new UnsupportedSchemaError(`the keyword '${key}' is not supported`, `${path}/${key}`);
    const at = `${path}/${key}`;
    switch (key) {
      case 'type': {
        const types = Array.isArray(value) ? value : [value];
        for (const t of types) if (typeof t !== 'string' || !TYPES.has(t)) throw new UnsupportedSchemaError(`unknown type ${JSON.stringify(t)}`, at);
        break;
      }
      case 'enum':
        if (!Array.isArray(value) || value.length === 0) throw new UnsupportedSchemaError("'enum' must be a non-empty array", at);
        break;
      case 'properties':
      case '$defs':
      case 'definitions':
        if (!isObject(value)) throw new UnsupportedSchemaError(`'${key}' must be an object`, at);
        for (const [k, sub] of Object.entries(value)) visit(sub, `${at}/${escapePointer(k)}`, root);
        break;
      case 'required':
        if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw new UnsupportedSchemaError("'required' must be an array of strings", at);
        break;
      case 'additionalProperties':
        if (typeof value !== 'boolean') visit(value, at, root);
        break;
      case 'items':
        if (Array.isArray(value)) throw new UnsupportedSchemaError("'items' as an array (draft-04 tuples) is not supported; use 'prefixItems'", at);
        if (typeof value !== 'boolean') visit(value, at, root);
        break;
      case 'prefixItems':
      case 'anyOf':
      case 'oneOf':
        if (!Array.isArray(value) || value.length === 0) throw new UnsupportedSchemaError(`'${key}' must be a non-empty array of schemas`, at);
        value.forEach((sub, i) => visit(sub, `${at}/${i}`, root));
        break;
      case 'allOf':
        if (!Array.isArray(value) || value.length !== 1) throw new UnsupportedSchemaError("'allOf' is supported with exactly one schema", at);
        visit(value[0], `${at}/0`, root);
        break;
      case '$ref':
        checkRef(value, at, root);
        break;
      case 'format':
        if (typeof value !== 'string' || !SUPPORTED_FORMATS.includes(value)) {
          throw new UnsupportedSchemaError(`the string format ${JSON.stringify(value)} is not supported (supported: ${SUPPORTED_FORMATS.join(', ')})`, at);
        }
        break;
      case 'pattern':
        checkPattern(value, at);
        break;
      case 'minLength':
      case 'maxLength':
      case 'minItems':
      case 'maxItems':
        if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new UnsupportedSchemaError(`'${key}' must be a non-negative integer`, at);
        break;
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum':
        if (typeof value !== 'number' || !Number.isFinite(value)) throw new UnsupportedSchemaError(`'${key}' must be a number`, at);
        // Measured (engine.test.ts): XGrammar 0.1.27 enforces bounds on integers but not on
        // numbers with a fraction (it let 1.7 through `maximum: 1`).
        if (node.type !== 'integer') throw new UnsupportedSchemaError(`'${key}' is enforced on integers only (give "type": "integer", or drop the bound)`, at);
        break;
    }
  }
  if (typeof node.minLength === 'number' && typeof node.maxLength === 'number' && node.minLength > node.maxLength) {
    throw new UnsupportedSchemaError('minLength > maxLength: no string can match', path);
  }
  if (typeof node.minItems === 'number' && typeof node.maxItems === 'number' && node.minItems > node.maxItems) {
    throw new UnsupportedSchemaError('minItems > maxItems: no array can match', path);
  }
  if (typeof node.minimum === 'number' && typeof node.maximum === 'number' && node.minimum > node.maximum) {
    throw new UnsupportedSchemaError('minimum > maximum: no number can match', path);
  }
}

function checkRef(ref: unknown, at: string, root: Record<string, unknown>): void {
  if (typeof ref !== 'string' || !(ref === '#' || ref.startsWith('#/'))) {
    throw new UnsupportedSchemaError(`only local references ('#/$defs/...') are supported, got ${JSON.stringify(ref)}`, at);
  }
  let cur: unknown = root;
  for (const part of ref.slice(2).split('/').filter((p) => p !== '')) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    if (!isObject(cur) || !(key in cur)) throw new UnsupportedSchemaError(`the reference ${JSON.stringify(ref)} points nowhere`, at);
    cur = cur[key];
  }
}

// Regex syntax beyond what the grammar's regex converter reads (lookaround, backreferences,
// named groups, Unicode property classes) is refused up front.
const UNSUPPORTED_REGEX = /\(\?[=!<]|\\[1-9]|\\k<|\\[pP]\{/;

function checkPattern(value: unknown, at: string): void {
  if (typeof value !== 'string') throw new UnsupportedSchemaError("'pattern' must be a string", at);
  try {
    new RegExp(value, 'u');
  } catch (err) {
    throw new UnsupportedSchemaError(`'pattern' is not a valid regular expression: ${(err as Error).message}`, at);
  }
  if (UNSUPPORTED_REGEX.test(value)) throw new UnsupportedSchemaError('lookarounds, backreferences and \\p{...} classes are not supported in patterns', at);
}

function escapePointer(k: string): string {
  return k.replace(/~/g, '~0').replace(/\//g, '~1');
}
