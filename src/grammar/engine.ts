/**
 * Constrained decoding over a model's vocabulary: compiles a JSON Schema or an EBNF/GBNF
 * grammar once, then gives each sequence a TokenConstraint (the token bitmask per step).
 *
 * NOTE (measured, scratch bench on the Qwen2.5 vocabulary of 151,936 tokens, random walks
 * through the grammar; see README "Structured output" for the benchmark of record):
 * XGrammar precomputes the tokens whose validity does not depend on the parser stack, so a
 * step inside JSON structure costs ~0.01-0.03 ms and the median over whole outputs is
 * 0.01-0.25 ms; steps inside strings whose length is bounded cost most (mean 3.6 ms, p90
 * 12 ms for a schema with `maxLength: 20` strings). Compiling a schema costs 5-300 ms, and
 * ~2 s when strings have a `maxLength`; compiled grammars are cached by their text.
 * Writing our own engine was not needed to meet the 10% target measured by the benchmark.
 */
import { BYTE_TO_CHAR } from '../tokenizer/byte-level.js';
import { GrammarError, UnsupportedSchemaError } from '../errors.js';
import type { TokenConstraint } from '../engine/constraint.js';
import { checkJsonSchema } from './json-schema.js';
import { createXgrammarInstance, type XgCompiled, type XgCompiler, type XgMatcherHandle, type XgrammarInstance } from './xgrammar.js';

/** What to constrain the output to. */
export type GrammarSpec =
  /** Any JSON object (OpenAI's response_format json_object). */
  | { type: 'json_object' }
  /** JSON valid against a schema. */
  | { type: 'json_schema'; schema: unknown }
  /** A grammar in GBNF / EBNF notation (llama.cpp's grammars; the start rule is `root`). */
  | { type: 'grammar'; grammar: string };

/**
 * Most whitespace characters between two JSON tokens. llama.cpp's JSON grammar bounds it the
 * same way (`space ::= | " " | "\n"{1,2} [ \t]{0,20}`): without a bound a model can loop on
 * whitespace, and a random-weight model does.
 */
export const MAX_JSON_WHITESPACE = 20;

/** The vocabulary as the grammar engine needs it. */
export interface GrammarVocab {
  /** Raw bytes of token t (control and unused tokens: empty, never allowed as text). */
  tokenBytes(t: number): Uint8Array;
  /** Tokens that end a generation (allowed only when the output is complete). */
  stopTokens: number[];
  /** Rows of the logits (may exceed the number of tokens in the file). */
  vocabSize: number;
}

/** Checks a spec on the caller's side (typed errors before a request is queued). */
export function checkGrammarSpec(spec: GrammarSpec): void {
  if (spec === null || typeof spec !== 'object') throw new GrammarError('expected { type: "json_object" | "json_schema" | "grammar", ... }');
  switch (spec.type) {
    case 'json_object':
      return;
    case 'json_schema':
      checkJsonSchema(spec.schema);
      return;
    case 'grammar':
      if (typeof spec.grammar !== 'string' || spec.grammar.trim() === '') throw new GrammarError('the grammar text is empty');
      return;
    default:
      throw new GrammarError(`unknown constraint type ${JSON.stringify((spec as { type?: unknown }).type)}; use json_object, json_schema or grammar`);
  }
}

/** Compiles grammars for one vocabulary and hands out per-sequence constraints. */
export class GrammarEngine {
  private instance: XgrammarInstance | null = null;
  private compiler: XgCompiler | null = null;
  private starting: Promise<void> | null = null;
  /** Compiled grammars by their key, least recently used first. */
  private readonly cache = new Map<string, XgCompiled>();
  private static readonly CACHE_SIZE = 32;
  /** Statistics for stats(): compile and mask times. */
  readonly counters = { compiles: 0, compileMs: 0, masks: 0, maskMs: 0 };

  constructor(private readonly vocab: GrammarVocab) {}

  /** A constraint for one sequence (compiles the grammar on first use of its text). */
  async createConstraint(spec: GrammarSpec): Promise<TokenConstraint> {
    checkGrammarSpec(spec);
    await this.start();
    const compiled = await this.compile(spec);
    const inst = this.instance!;
    const wrapper = await inst.lib.GrammarMatcher.createGrammarMatcher(compiled, this.vocab.stopTokens, false, -1);
    return new XgrammarConstraint(inst, inst.matcherHandle(wrapper), this.vocab.vocabSize, this.counters);
  }

  private async start(): Promise<void> {
    if (this.compiler && this.instance && !this.instance.aborted) return;
    this.starting ??= (async () => {
      const inst = await createXgrammarInstance();
      const V = this.vocab.vocabSize;
      // Every token as byte-level text (GPT-2's byte -> char table), whatever the model's
      // tokenizer: the engine then sees exactly the bytes each token stands for.
      const encoded: string[] = new Array(V);
      for (let t = 0; t < V; t++) {
        const bytes = this.vocab.tokenBytes(t);
        let s = '';
        for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]!];
        encoded[t] = s;
      }
      const info = await inst.lib.TokenizerInfo.createTokenizerInfo(encoded, 'byte_level', false, V, this.vocab.stopTokens);
      this.compiler = await inst.lib.GrammarCompiler.createGrammarCompiler(info, false);
      this.instance = inst;
      this.cache.clear();
    })().finally(() => (this.starting = null));
    await this.starting;
  }

  private async compile(spec: GrammarSpec): Promise<XgCompiled> {
    const key = spec.type === 'json_schema' ? `s:${JSON.stringify(spec.schema)}` : spec.type === 'grammar' ? `g:${spec.grammar}` : 'o';
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const inst = this.instance!;
    inst.takeErrors();
    const t0 = performance.now();
    let compiled: XgCompiled;
    try {
      if (spec.type === 'grammar') compiled = await this.compiler!.compileGrammar(spec.grammar, 'root');
      else {
        const schema = spec.type === 'json_object' ? { type: 'object' } : spec.schema === true ? {} : spec.schema;
        // One line with bounded whitespace between tokens; no properties beyond the schema's.
        compiled = await this.compiler!.compileJSONSchema(JSON.stringify(schema), true, -1, undefined, spec.type === 'json_schema', MAX_JSON_WHITESPACE);
      }
    } catch (err) {
      const detail = cleanFatal(inst.takeErrors()) || (err as Error).message;
      if (inst.aborted) {
        // The instance is dead: the next request starts a fresh one.
        this.compiler = null;
        this.instance = null;
      }
      if (spec.type === 'json_schema') throw new UnsupportedSchemaError(detail, '');
      throw new GrammarError(detail);
    }
    this.counters.compiles++;
    this.counters.compileMs += performance.now() - t0;
    this.cache.set(key, compiled);
    if (this.cache.size > GrammarEngine.CACHE_SIZE) {
      const [oldKey, old] = this.cache.entries().next().value as [string, XgCompiled];
      this.cache.delete(oldKey);
      old.dispose(); // matchers still using it keep their own reference
    }
    return compiled;
  }
}

/** '[FATAL] /path/file.cc:75: Regex parsing error ...' -> 'Regex parsing error ...'. */
function cleanFatal(text: string): string {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('Aborted('))
    .map((l) => l.replace(/^\[[A-Z]+\]\s*\S+:\d+:\s*/, ''))
    .join('; ');
}

class XgrammarConstraint implements TokenConstraint {
  private finished = false;
  private disposed = false;

  constructor(
    private readonly inst: XgrammarInstance,
    private readonly matcher: XgMatcherHandle,
    private readonly vocabSize: number,
    private readonly counters: GrammarEngine['counters'],
  ) {}

  get done(): boolean {
    return this.finished;
  }

  fillMask(mask: Int32Array): void {
    const t0 = performance.now();
    this.inst.copyVector(this.matcher.GetNextTokenBitmask(this.vocabSize), mask);
    this.counters.masks++;
    this.counters.maskMs += performance.now() - t0;
  }

  accept(token: number): boolean {
    const ok = this.matcher.AcceptToken(token, false);
    if (ok && this.matcher.IsTerminated()) this.finished = true;
    return ok;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (!this.inst.aborted) this.matcher.delete();
  }
}
