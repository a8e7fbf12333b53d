// Round trips, streaming decode, EOG sets and metadata validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadVocabSource, tokenizerFromMetadata, tokenizerFromVocabSource, type Tokenizer } from './index.js';
import { TOKENIZER_CORPUS } from './test-corpus.js';
import { TokenizerError } from '../errors.js';

const names = ['llama2', 'llama3', 'qwen2'] as const;
const tokenizers = new Map<string, Tokenizer>();
const get = (name: (typeof names)[number]) => {
  let t = tokenizers.get(name);
  if (!t) tokenizers.set(name, (t = tokenizerFromVocabSource(loadVocabSource(name))));
  return t;
};

for (const name of names) {
  test(`${name}: decode(encode(s)) == s on the corpus`, () => {
    const tok = get(name);
    for (const s of TOKENIZER_CORPUS) {
      // Without BOS; the SPM leading space added by encode is dropped again by decode.
      assert.equal(tok.decode(tok.encode(s, { addBos: false })), s, JSON.stringify(s));
      assert.equal(tok.decode(tok.encode(s, { addBos: false, parseSpecial: false })), s, JSON.stringify(s));
      if (tok.bosId !== undefined) {
        assert.equal(tok.decode(tok.encode(s, { addBos: true, parseSpecial: false }), { skipSpecial: true }), s, JSON.stringify(s));
      }
    }
  });

  test(`${name}: streaming decode equals decode(all) and never splits a character`, () => {
    const tok = get(name);
    for (const s of TOKENIZER_CORPUS) {
      const ids = tok.encode(s);
      const whole = tok.decode(ids);
      const dec = tok.createDecoder();
      let streamed = '';
      for (const id of ids) {
        const chunk = dec.push(id);
        if (!whole.includes('\uFFFD')) assert.ok(!chunk.includes('\uFFFD'), `U+FFFD in a chunk of ${JSON.stringify(s)}`);
        // A chunk never ends with a lone high surrogate (half of an astral character).
        if (chunk.length > 0) assert.ok(!/[\uD800-\uDBFF]$/.test(chunk));
        streamed += chunk;
      }
      streamed += dec.flush();
      assert.equal(streamed, whole, JSON.stringify(s));
    }
  });
}

test('streaming: a character split over byte tokens is held back until complete', () => {
  const tok = get('llama2');
  const ids = Array.from(tok.encode('🦙', { addBos: false })); // ▁ then 4 byte tokens (not in the vocabulary)
  assert.deepEqual(ids.map((id) => tok.tokenText(id)), ['\u2581', '<0xF0>', '<0x9F>', '<0xA6>', '<0x99>']);
  const dec = tok.createDecoder();
  assert.deepEqual(ids.map((id) => dec.push(id)), ['', '', '', '', '🦙']);
  // An incomplete sequence at the end becomes U+FFFD on flush, as decode() does.
  const dec2 = tok.createDecoder({ continuation: true });
  assert.equal(dec2.push(tok.tokenId('<0xE2>')!), '');
  assert.equal(dec2.flush(), '\uFFFD');
});

test('SPM decode: leading space rule', () => {
  const tok = get('llama2');
  const hello = tok.tokenId('\u2581Hello')!;
  assert.equal(tok.decode([hello]), 'Hello');
  assert.equal(tok.decode([1, hello], { skipSpecial: true }), 'Hello');
  assert.equal(tok.decode([1, hello]), '<s>Hello');
  assert.equal(tok.decode([hello, hello]), 'Hello Hello');
  assert.equal(tok.decode([hello], { continuation: true }), ' Hello');
  const dec = tok.createDecoder({ continuation: true });
  assert.equal(dec.push(hello), ' Hello');
});

test('tokenBytes and tokenText', () => {
  const l2 = get('llama2');
  assert.deepEqual(Array.from(l2.tokenBytes(l2.tokenId('<0x0A>')!)), [10]);
  assert.equal(Buffer.from(l2.tokenBytes(l2.tokenId('\u2581Hello')!)).toString(), ' Hello');
  const l3 = get('llama3');
  assert.equal(Buffer.from(l3.tokenBytes(1917)).toString(), ' world');
  assert.equal(Buffer.from(l3.tokenBytes(128009)).toString(), '<|eot_id|>');
  assert.equal(l3.tokenText(1917), '\u0120world');
  assert.equal(l3.tokenId('<|eot_id|>'), 128009);
  assert.throws(() => l3.tokenBytes(128256), TokenizerError);
  const q = get('qwen2');
  assert.equal(q.tokenBytes(151700).length, 0); // unused padding token
});

test('EOG sets match llama.cpp (eos, eot, and end-of-turn tokens by text)', () => {
  const eog = (t: Tokenizer) => Array.from({ length: t.vocabSize }, (_, i) => i).filter((i) => t.isEog(i));
  assert.deepEqual(eog(get('llama2')), [2]);
  assert.deepEqual(eog(get('llama3')), [128001, 128008, 128009]);
  // '</s>' (a normal token in Qwen's vocabulary, made EOG by llama.cpp's text rule),
  // <|endoftext|>, <|im_end|>, and the FIM pad / repo name / file separator tokens.
  assert.deepEqual(eog(get('qwen2')), [128247, 151643, 151645, 151662, 151663, 151664]);
});

test('skipSpecial drops control tokens but keeps user-defined ones', () => {
  const q = get('qwen2');
  const ids = q.encode('<|im_start|>user\n<tool_call>x</tool_call><|im_end|>');
  assert.equal(q.decode(ids, { skipSpecial: true }), 'user\n<tool_call>x</tool_call>');
});

test('a 10k-token prompt encodes (timing is reported, not asserted)', () => {
  const tok = get('llama3');
  const text = TOKENIZER_CORPUS.join('\n').repeat(8);
  const t0 = performance.now();
  const ids = tok.encode(text);
  const ms = performance.now() - t0;
  assert.ok(ids.length > 10_000);
  assert.equal(tok.decode(ids, { skipSpecial: false }).length > 0, true);
  console.log(`# llama3: ${ids.length} tokens in ${ms.toFixed(0)} ms`);
});

test('metadata validation: typed errors naming the problem', () => {
  const meta = (m: Record<string, unknown>) => (key: string) => m[key];
  assert.throws(() => tokenizerFromMetadata(meta({ 'tokenizer.ggml.model': 'bert' })), /not supported/);
  assert.throws(() => tokenizerFromMetadata(meta({ 'tokenizer.ggml.model': 'llama' })), /tokens is missing/);
  assert.throws(
    () => tokenizerFromMetadata(meta({ 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.tokens': ['a'] })),
    /merges is missing/,
  );
  assert.throws(
    () =>
      tokenizerFromMetadata(
        meta({ 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.tokens': ['a', 'b', 'ab'], 'tokenizer.ggml.merges': ['a b'], 'tokenizer.ggml.pre': 'nope' }),
      ),
    (e: unknown) => e instanceof TokenizerError && /pre-tokenizer 'nope'/.test(e.message),
  );
  assert.throws(
    () => tokenizerFromMetadata(meta({ 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': ['a', 'b'], 'tokenizer.ggml.scores': [0] })),
    /one entry per token/,
  );
});

test('tiny hand-made vocabularies: SPM scores decide merges, BPE ranks decide merges', () => {
  // SPM: 'ab' scores higher than 'bc', so 'abc' -> ab + c, unless 'bc' scores higher.
  const spm = (scoreAb: number, scoreBc: number) =>
    tokenizerFromMetadata(
      (k) =>
        ({
          'tokenizer.ggml.model': 'llama',
          'tokenizer.ggml.tokens': ['<unk>', '<s>', '</s>', 'a', 'b', 'c', 'ab', 'bc', '\u2581'],
          'tokenizer.ggml.scores': [0, 0, 0, -1, -1, -1, scoreAb, scoreBc, -1],
          'tokenizer.ggml.token_type': [2, 3, 3, 1, 1, 1, 1, 1, 1],
          'tokenizer.ggml.add_space_prefix': false,
        })[k],
    );
  assert.deepEqual(Array.from(spm(-2, -3).encode('abc', { addBos: false })), [6, 5]);
  assert.deepEqual(Array.from(spm(-3, -2).encode('abc', { addBos: false })), [3, 7]);
  // No byte tokens: an unknown char becomes <unk>.
  assert.deepEqual(Array.from(spm(-2, -3).encode('axb', { addBos: false })), [3, 0, 4]);
  // BPE: lower rank merges first; equal pairs merge leftmost first.
  const bpe = (merges: string[]) =>
    tokenizerFromMetadata(
      (k) =>
        ({
          'tokenizer.ggml.model': 'gpt2',
          'tokenizer.ggml.pre': 'gpt-2',
          'tokenizer.ggml.tokens': ['a', 'b', 'c', 'ab', 'bc', 'aa', 'aaa'],
          'tokenizer.ggml.merges': merges,
        })[k],
    );
  assert.deepEqual(Array.from(bpe(['a b', 'b c']).encode('abc')), [3, 2]);
  assert.deepEqual(Array.from(bpe(['b c', 'a b']).encode('abc')), [0, 4]);
  assert.deepEqual(Array.from(bpe(['a a']).encode('aaa')), [5, 0]);
  assert.deepEqual(Array.from(bpe(['a a', 'aa a']).encode('aaa')), [6]);
});
