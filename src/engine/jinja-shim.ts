/**
 * What @huggingface/jinja 0.5.11 lacks for the chat templates flexinfer ships, added here
 * (installed once, before the first template renders).
 *
 * - `mapping | string`: Jinja (Python) renders a dict with str(), i.e. Python's repr
 *   (`{'name': 'f', 'ok': True}`); the package throws "Unknown ObjectValue filter: string".
 *   SmolLM3's template writes each tool definition as `(tool | string)`. Strings, numbers and
 *   booleans already have the filter in the package; a list's `| string` stays the package's
 *   (JSON-like: null, not None), which no shipped template uses.
 *
 * The package does not export its value classes, so the shim reaches the mapping class through
 * a value the package itself converts, and adds `string` to the builtins a mapping looks filters
 * up in (the interpreter returns a builtin that is not a function as the filter's result).
 */
import { Environment } from '@huggingface/jinja';

/** The package's runtime values, as far as the shim reads them. */
interface RuntimeValue {
  type: string;
  value: unknown;
}

/** Python's repr() of a string: single quotes unless the text holds ' and no ". */
function reprString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = '';
  for (const ch of s) {
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch < ' ' || ch === '\x7f') out += '\\x' + ch.charCodeAt(0).toString(16).padStart(2, '0');
    else out += ch;
  }
  return quote + out + quote;
}

/** Python's repr() of a runtime value (what str() gives for dicts and lists). */
export function pythonRepr(v: RuntimeValue): string {
  switch (v.type) {
    case 'StringValue':
      return reprString(v.value as string);
    case 'IntegerValue':
      return String(v.value);
    case 'FloatValue':
      return String(v); // the package prints floats as Python does (1.0, 0.5)
    case 'BooleanValue':
      return v.value ? 'True' : 'False';
    case 'NullValue':
    case 'UndefinedValue':
      return 'None';
    case 'ArrayValue':
    case 'TupleValue':
      return '[' + (v.value as RuntimeValue[]).map(pythonRepr).join(', ') + ']';
    default:
      if (v.value instanceof Map) {
        return '{' + [...(v.value as Map<string, RuntimeValue>)].map(([k, x]) => `${reprString(k)}: ${pythonRepr(x)}`).join(', ') + '}';
      }
      return String(v.value);
  }
}

let installed = false;

/** Adds the missing filters to @huggingface/jinja (idempotent). */
export function installJinjaShim(): void {
  if (installed) return;
  installed = true;
  const env = new Environment();
  const mapping = env.set('m', {}) as unknown as object;
  const string = env.set('s', '') as unknown as { constructor: new (s: string) => RuntimeValue };
  const proto = Object.getPrototypeOf(mapping) as object;
  const getter = Object.getOwnPropertyDescriptor(proto, 'builtins')?.get;
  if (!getter) throw new Error('@huggingface/jinja: mapping values have no builtins (the shim needs an update)');
  Object.defineProperty(proto, 'builtins', {
    configurable: true,
    get(this: RuntimeValue) {
      const builtins = getter.call(this) as Map<string, unknown>;
      // computed when a filter is looked up, so it reflects the mapping at that moment
      builtins.set('string', new string.constructor(pythonRepr(this)));
      return builtins;
    },
  });
}
