/**
 * Constrained decoding against an independent validator: random logits (what a random-weight
 * model gives) sampled at temperature 1 through the token mask must always produce JSON that
 * ajv accepts for the schema; unsupported schema features are refused by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Ajv2020 from 'ajv/dist/2020.js';
import { loadVocabSource, tokenizerFromVocabSource } from '../tokenizer/index.js';
import { GrammarEngine, checkGrammarSpec, type GrammarSpec } from './engine.js';
import { Rng, Sampler } from '../engine/sampling.js';
import { maskAllows, maskWords } from '../engine/constraint.js';
import { GrammarError, UnsupportedSchemaError } from '../errors.js';

const tok = tokenizerFromVocabSource(loadVocabSource('llama2'));
const V = tok.vocabSize;
const stopTokens = [tok.eosId!];
const empty = new Uint8Array(0);
const engine = new GrammarEngine({
  vocabSize: V,
  stopTokens,
  tokenBytes: (t) => (tok.isEog(t) || t < 3 ? empty : tok.tokenBytes(t)),
});

/** Samples up to maxTokens tokens through the constraint; returns the text and whether it completed. */
async function generate(spec: GrammarSpec, seed: number, maxTokens = 300): Promise<{ text: string; done: boolean; tokens: number[] }> {
  const c = await engine.createConstraint(spec);
  const sampler = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed });
  const rng = new Rng(seed + 1000);
  const logits = new Float32Array(V);
  const mask = new Int32Array(maskWords(V));
  const tokens: number[] = [];
  try {
    for (let i = 0; i < maxTokens && !c.done; i++) {
      for (let t = 0; t < V; t++) logits[t] = (rng.nextFloat() - 0.5) * 8;
      c.fillMask(mask);
      const t = sampler.sample(logits, V, 0, mask);
      assert.ok(maskAllows(mask, t), 'the sampler picked a masked token');
      assert.ok(c.accept(t), 'the constraint refused a token its mask allowed');
      tokens.push(t);
    }
    const body = tokens.filter((t) => !stopTokens.includes(t));
    return { text: Buffer.concat(body.map((t) => tok.tokenBytes(t))).toString('utf8'), done: c.done, tokens };
  } finally {
    c.dispose();
  }
}

const ajv = new Ajv2020.default({ strict: false, validateFormats: false });

const schemas: Record<string, object> = {
  nested: {
    type: 'object',
    properties: {
      user: { type: 'object', properties: { id: { type: 'integer', minimum: 1, maximum: 999 }, admin: { type: 'boolean' } }, required: ['id', 'admin'], additionalProperties: false },
      mode: { enum: ['fast', 'slow', 42, null] },
    },
    required: ['user', 'mode'],
    additionalProperties: false,
  },
  arrays: {
    type: 'object',
    properties: { scores: { type: 'array', items: { type: 'number' }, minItems: 1, maxItems: 3 }, levels: { type: 'array', items: { type: 'integer', minimum: -5, maximum: 5 }, maxItems: 4 }, flags: { type: 'array', items: { type: 'boolean' }, maxItems: 2 } },
    required: ['scores', 'levels', 'flags'],
    additionalProperties: false,
  },
  anyOfOptional: {
    type: 'object',
    properties: {
      value: { anyOf: [{ type: 'integer', minimum: 0, maximum: 9 }, { const: 'none' }] },
      note: { type: 'string', maxLength: 6 },
      day: { type: 'string', format: 'date' },
    },
    required: ['value'],
    additionalProperties: false,
  },
  refs: {
    $defs: { point: { type: 'object', properties: { x: { type: 'integer' }, y: { type: 'integer' } }, required: ['x', 'y'], additionalProperties: false } },
    type: 'object',
    properties: { a: { $ref: '#/$defs/point' }, kind: { type: 'string', enum: ['p', 'q'] } },
    required: ['a', 'kind'],
    additionalProperties: false,
  },
};

test('json_schema: random logits at temperature 1 always give JSON the schema accepts (ajv)', async () => {
  for (const [name, schema] of Object.entries(schemas)) {
    const validate = ajv.compile(schema);
    let complete = 0;
    for (let seed = 1; seed <= 4; seed++) {
      const { text, done } = await generate({ type: 'json_schema', schema }, seed);
      if (!done) continue; // cut by maxTokens: an unfinished value, reported as such by the engine
      complete++;
      const value = JSON.parse(text) as unknown;
      assert.ok(validate(value), `${name} seed ${seed}: ${text} -> ${ajv.errorsText(validate.errors)}`);
      // Whitespace between tokens is bounded (MAX_JSON_WHITESPACE).
      assert.ok(!/\s{21}/.test(text.replace(/"(?:[^"\\]|\\.)*"/g, '""')), `${name}: unbounded whitespace in ${JSON.stringify(text)}`);
    }
    assert.ok(complete >= 3, `${name}: only ${complete} of 4 outputs completed within 300 tokens`);
  }
});

test('json_object: any JSON object; without the mask the same sampler never gives JSON', async () => {
  const { text, done } = await generate({ type: 'json_object' }, 5, 400);
  if (done) assert.equal(typeof JSON.parse(text), 'object');
  // The honest baseline: the same random logits unconstrained are not JSON.
  const sampler = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed: 5 });
  const rng = new Rng(1005);
  const logits = new Float32Array(V);
  const out: number[] = [];
  for (let i = 0; i < 40; i++) {
    for (let t = 0; t < V; t++) logits[t] = (rng.nextFloat() - 0.5) * 8;
    out.push(sampler.sample(logits, V));
  }
  assert.throws(() => JSON.parse(tok.decode(out)));
});

test('grammar: a GBNF grammar constrains the text exactly', async () => {
  const grammar = 'root ::= ("yes" | "no") " " [0-9] [0-9]?';
  for (let seed = 1; seed <= 3; seed++) {
    const { text, done } = await generate({ type: 'grammar', grammar }, seed, 20);
    assert.ok(done);
    assert.match(text, /^(yes|no) [0-9][0-9]?$/);
  }
});

test('unsupported schema features are refused by name, before anything compiles', () => {
  const cases: Array<[object, RegExp]> = [
    [{ type: 'object', not: { type: 'string' } }, /at '\/not'.*'not' is not supported/],
    [{ type: 'number', maximum: 1 }, /integers only/],
    [{ type: 'integer', multipleOf: 3 }, /multipleOf/],
    [{ type: 'array', uniqueItems: true }, /uniqueItems/],
    [{ type: 'object', if: {}, then: {} }, /'if'/],
    [{ type: 'string', format: 'credit-card' }, /format "credit-card"/],
    [{ $ref: 'https://example.com/s.json' }, /local references/],
    [{ properties: { a: { $ref: '#/$defs/missing' } } }, /points nowhere/],
    [{ type: 'string', pattern: '(?<=a)b' }, /lookaround/],
    [{ type: 'string', pattern: '(a' }, /not a valid regular expression/],
    [{ type: 'frob' }, /unknown type/],
  ];
  for (const [schema, re] of cases) {
    assert.throws(() => checkGrammarSpec({ type: 'json_schema', schema }), (e: unknown) => e instanceof UnsupportedSchemaError && re.test(e.message), JSON.stringify(schema));
  }
});

test('a grammar that does not compile is a GrammarError, and the engine keeps working', async () => {
  await assert.rejects(engine.createConstraint({ type: 'grammar', grammar: 'root ::= "a" undefined_rule' }), GrammarError);
  await assert.rejects(engine.createConstraint({ type: 'grammar', grammar: 'root ::= ("a"' }), GrammarError);
  const { text, done } = await generate({ type: 'grammar', grammar: 'root ::= "ok"' }, 1, 10);
  assert.ok(done);
  assert.equal(text, 'ok');
});
