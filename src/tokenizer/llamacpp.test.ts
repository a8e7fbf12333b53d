// llama.cpp (node-llama-cpp, vocab-only load) tokenizes the corpus exactly as we do, on
// GGUF files carrying each shipped vocabulary (written by our GGUF writer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeGguf } from '../gguf/writer.js';
import { readGgufSync } from '../gguf/reader.js';
import { gv, type GgufValue } from '../gguf/value.js';
import { loadVocabSource, tokenizerFromGguf, tokenizerFromVocabSource, vocabSourceMetadata, type VocabSource } from './index.js';
import { TOKENIZER_CORPUS } from './test-corpus.js';

const PIECES = [
  ' ', '  ', '\t', '\n', '\r\n', 'a', 'Z', 'the', ' the', "'s", "'LL", '0', '7', '123', '.', ',', '!', '(', '{', '<', '>', '|',
  '<s>', '</s>', '<|eot_id|>', '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<tool_call>', 'é', 'e\u0301', 'ß', '日', '語',
  'ア', '한', 'ب', 'ि', 'न', 'я', '🦙', '👍🏽', '👨‍👩‍👧', '🇯🇵', '\u200b', '\u00a0', '\u3000', '\u0085', '\ufeff', '\u2028',
  '𝔘', '½', '٣', '\u0000', '~', '$', '%', '=', '/', '\\', '"', "'", ':', '#',
  '\ud83d', '\udc00', // lone surrogates: U+FFFD once the string is UTF-8
];

/** Deterministic pseudo-random numbers in [0, 1). */
function lcg(seed: number): () => number {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff;
    return x / 0x80000000;
  };
}

/** GGUF metadata for a vocab-only file: the tokenizer keys plus the minimal hyperparameters llama.cpp reads. */
function metadata(src: VocabSource, arch: string): Array<[string, GgufValue]> {
  const meta: Array<[string, GgufValue]> = [
    ['general.architecture', gv.str(arch)],
    [`${arch}.block_count`, gv.u32(1)],
    [`${arch}.context_length`, gv.u32(256)],
    [`${arch}.embedding_length`, gv.u32(64)],
    [`${arch}.feed_forward_length`, gv.u32(128)],
    [`${arch}.attention.head_count`, gv.u32(4)],
    [`${arch}.attention.head_count_kv`, gv.u32(2)],
    [`${arch}.attention.layer_norm_rms_epsilon`, gv.f32(1e-5)],
    [`${arch}.rope.dimension_count`, gv.u32(16)],
  ];
  for (const [k, v] of vocabSourceMetadata(src)) {
    if (typeof v === 'string') meta.push([k, gv.str(v)]);
    else if (typeof v === 'boolean') meta.push([k, gv.bool(v)]);
    else if (typeof v === 'number') meta.push([k, gv.u32(v)]);
    else if (v instanceof Float32Array) meta.push([k, gv.f32Arr(v)]);
    else if (v instanceof Int32Array) meta.push([k, gv.i32Arr(v)]);
    else meta.push([k, gv.strArr(v as string[])]);
  }
  return meta;
}

test('llama.cpp tokenizes the corpus like we do (llama2, gemma2, gemma3, phi3 SPM; llama3, qwen2, qwen3, smollm3 BPE)', async () => {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-tok-'));
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.disabled });
  try {
    for (const [name, arch] of [['llama2', 'llama'], ['llama3', 'llama'], ['qwen2', 'qwen2'], ['qwen3', 'qwen3'], ['smollm3', 'smollm3'], ['gemma2', 'gemma2'], ['gemma3', 'gemma3'], ['phi3', 'phi3']] as const) {
      const src = loadVocabSource(name);
      const path = join(dir, `${name}.gguf`);
      await writeGguf(path, metadata(src, arch), []);
      const model = await llama.loadModel({ modelPath: path, vocabOnly: true });
      try {
        const tok = tokenizerFromVocabSource(src);
        // The same tokenizer, read back from the file through our GGUF reader.
        const fromFile = tokenizerFromGguf(readGgufSync(path));
        assert.equal(fromFile.vocabSize, tok.vocabSize);
        assert.equal(fromFile.chatTemplate, src.chatTemplate);
        for (const s of TOKENIZER_CORPUS) assert.deepEqual(fromFile.encode(s), tok.encode(s));
        const bad: string[] = [];
        for (const parseSpecial of [true, false]) {
          for (const s of TOKENIZER_CORPUS) {
            const ours = Array.from(tok.encode(s, { addBos: false, parseSpecial }));
            const theirs = Array.from(model.tokenize(s, parseSpecial), Number);
            if (ours.join() !== theirs.join()) bad.push(`${name} parseSpecial=${parseSpecial} ${JSON.stringify(s)}: ours ${ours} llama.cpp ${theirs}`);
          }
        }
        // Random strings built from pieces that stress the rules: whitespace, contractions,
        // digits, special-token text, combining marks, emoji, odd whitespace code points.
        const rnd = lcg(12345);
        for (let i = 0; i < 1000; i++) {
          let s = '';
          for (let n = 1 + Math.floor(rnd() * 12); n > 0; n--) s += PIECES[Math.floor(rnd() * PIECES.length)];
          for (const parseSpecial of [true, false]) {
            const ours = Array.from(tok.encode(s, { addBos: false, parseSpecial }));
            const theirs = Array.from(model.tokenize(s, parseSpecial), Number);
            if (ours.join() !== theirs.join()) bad.push(`${name} parseSpecial=${parseSpecial} ${JSON.stringify(s)}: ours ${ours} llama.cpp ${theirs}`);
          }
        }
        assert.deepEqual(bad, []);
        if (name === 'qwen2') {
          // Random id sequences (including ones that are not valid UTF-8) detokenize alike.
          for (let i = 0; i < 500; i++) {
            const ids = Array.from({ length: 1 + Math.floor(rnd() * 8) }, () => Math.floor(rnd() * src.tokens.length));
            assert.equal(tok.decode(ids), model.detokenize(ids as never, true), String(ids));
          }
        }
        if (name === 'qwen2') {
          // Qwen2 detokenizes without llama.cpp's space clean-up, so text agrees exactly too.
          for (const s of TOKENIZER_CORPUS) {
            const ids = model.tokenize(s, true);
            assert.equal(tok.decode(Array.from(ids, Number)), model.detokenize(ids, true), JSON.stringify(s));
          }
        }
      } finally {
        await model.dispose();
      }
    }
  } finally {
    await llama.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
