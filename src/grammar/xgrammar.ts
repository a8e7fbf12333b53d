/**
 * Loads XGrammar (the token-mask engine of vLLM, SGLang and MLC) from the pinned npm package
 * @mlc-ai/web-xgrammar: a WebAssembly build with embind bindings.
 *
 * NOTE: why a loader of our own instead of `import`:
 * - the package ships a UMD bundle but declares "type": "module", so Node loads it as ESM
 *   where `require`/`this` do not exist and it throws at import (0.1.27). We evaluate the
 *   bundle as the CommonJS script it is.
 * - the bindings are reached through a promise on every call (`await asyncInitBinding()`);
 *   the engine's step loop is synchronous, so we keep the embind module object and call the
 *   C++ methods directly (GetNextTokenBitmask, AcceptToken).
 * - a C++ check failure (a schema XGrammar cannot convert, a bad regex) calls abort(): the
 *   whole WebAssembly instance is dead afterwards. Each evaluation of the bundle is a fresh
 *   instance, so a failure costs one instance, which the caller drops and recreates; its
 *   message (printed through printErr) becomes the error's text.
 * @internal
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);

/** The JavaScript classes of the package (see its xgrammar.d.ts). */
export interface XgrammarExports {
  TokenizerInfo: { createTokenizerInfo(vocab: string[], vocabType: string, prependSpace: boolean, vocabSize: number, stopTokens: number[]): Promise<XgTokenizerInfo> };
  GrammarCompiler: { createGrammarCompiler(info: XgTokenizerInfo, cacheEnabled?: boolean): Promise<XgCompiler> };
  GrammarMatcher: { createGrammarMatcher(compiled: XgCompiled, overrideStopTokens?: number[], terminateWithoutStop?: boolean, maxRollback?: number): Promise<XgMatcherWrapper> };
  Grammar: { fromEBNF(ebnf: string, root?: string): Promise<{ toString(): string; dispose(): void }> };
}
export interface XgTokenizerInfo {
  getVocabSize(): number;
  dispose(): void;
}
export interface XgCompiled {
  handle: unknown;
  dispose(): void;
}
export interface XgCompiler {
  compileJSONSchema(schema: string, anyWhitespace: boolean, indent: number, separators: [string, string] | undefined, strict: boolean, maxWhitespace?: number): Promise<XgCompiled>;
  compileBuiltinJSONGrammar(): Promise<XgCompiled>;
  compileGrammar(ebnf: string, root?: string): Promise<XgCompiled>;
  dispose(): void;
}
/** The embind GrammarMatcher (C++ methods). */
export interface XgMatcherHandle {
  AcceptToken(token: number, verbose: boolean): boolean;
  GetNextTokenBitmask(vocabSize: number): { delete(): void };
  IsTerminated(): boolean;
  Reset(): void;
  delete(): void;
}
interface XgMatcherWrapper {
  handle: XgMatcherHandle;
}

/** One WebAssembly instance of XGrammar. */
export interface XgrammarInstance {
  readonly lib: XgrammarExports;
  /** Copies a std::vector<int32> returned by the bindings into `out`. */
  copyVector(vec: { delete(): void }, out: Int32Array): void;
  /** The matcher's C++ object (synchronous calls). */
  matcherHandle(m: unknown): XgMatcherHandle;
  /** Lines the C++ side printed to stderr since the last call (FATAL messages). */
  takeErrors(): string;
  /** True once the instance aborted (every later call would throw). */
  readonly aborted: boolean;
}

let source: { text: string; file: string } | undefined;

/** Evaluates the bundle once more: a new, independent WebAssembly instance. */
export async function createXgrammarInstance(): Promise<XgrammarInstance> {
  if (!source) {
    const file = require.resolve('@mlc-ai/web-xgrammar');
    let text = readFileSync(file, 'utf8');
    // Hand our module arguments (stderr capture) to the emscripten factory and keep the
    // binding object; the pinned bundle has this statement exactly once.
    const needle = 'binding = await Module();';
    if (text.split(needle).length !== 2) throw new Error(`@mlc-ai/web-xgrammar: unexpected bundle (no unique '${needle}'); the pinned version is 0.1.27`);
    text = text.replace(needle, 'binding = await Module(__flexinferModuleArg); __flexinferOnBinding(binding);');
    source = { text, file };
  }
  let errors: string[] = [];
  let aborted = false;
  let binding: { vecIntToView(v: unknown): Int32Array } | undefined;
  const moduleArg = {
    printErr: (line: string) => errors.push(line),
    print: () => {},
    onAbort: () => {
      aborted = true;
    },
  };
  const mod = { exports: {} as Record<string, unknown> };
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const factory = new Function('exports', 'require', 'module', '__filename', '__dirname', '__flexinferModuleArg', '__flexinferOnBinding', source.text);
  factory.call(mod.exports, mod.exports, createRequire(source.file), mod, source.file, dirname(source.file), moduleArg, (b: typeof binding) => (binding = b));
  const lib = mod.exports as unknown as XgrammarExports;
  // Any async entry point initializes the binding; a tiny grammar is the cheapest.
  const g = await lib.Grammar.fromEBNF('root ::= "a"');
  g.dispose();
  if (!binding) throw new Error('@mlc-ai/web-xgrammar: the WebAssembly module did not initialize');
  const b = binding;
  return {
    lib,
    copyVector(vec, out) {
      const view = b.vecIntToView(vec);
      out.set(view.length > out.length ? view.subarray(0, out.length) : view);
      vec.delete();
    },
    matcherHandle: (m) => (m as XgMatcherWrapper).handle,
    takeErrors() {
      const s = errors.join('\n');
      errors = [];
      return s;
    },
    get aborted() {
      return aborted;
    },
  };
}
