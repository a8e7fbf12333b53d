/**
 * llama.cpp (through node-llama-cpp 3.21.1, a pinned dev dependency with a prebuilt linux-x64
 * binary: `getLlama({ gpu: false, build: 'never' })` works offline) must load synthetic files
 * and tokenize text to the same ids as flexinfer's tokenizer reading the same file.
 *
 * Every vocabulary is covered by a small model that keeps the preset's tokenizer, architecture
 * and head layout but shrinks the layers (the tokenizer does not depend on them); one real
 * preset (qwen2.5-0.5b, Q8_0, 0.5 GB) is written and loaded at full size.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufSync } from '../gguf/reader.js';
import { tokenizerFromGguf } from '../tokenizer/index.js';
import { SYNTH_PRESETS, type SynthPreset } from './presets.js';
import { synthesize } from './synth.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-llamacpp-test-'));

type NlcModule = typeof import('node-llama-cpp');
type Llama = Awaited<ReturnType<NlcModule['getLlama']>>;
let llamaPromise: Promise<Llama> | undefined;

/** The llama.cpp bindings; a load failure fails the test with the reason (never skipped). */
function llamaCpp(): Promise<Llama> {
  llamaPromise ??= (async () => {
    let mod: NlcModule;
    try {
      mod = await import('node-llama-cpp');
    } catch (err) {
      throw new Error(`node-llama-cpp (pinned dev dependency) cannot be imported: ${(err as Error).message}`);
    }
    try {
      return await mod.getLlama({ gpu: false, build: 'never', logLevel: mod.LlamaLogLevel.error, progressLogs: false });
    } catch (err) {
      throw new Error(`node-llama-cpp's prebuilt linux-x64 binary does not load (getLlama, build: 'never'): ${(err as Error).message}`);
    }
  })();
  return llamaPromise;
}

after(async () => {
  if (llamaPromise) await (await llamaPromise).dispose().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

/** Text that exercises spaces, digits, punctuation, newlines, accents, CJK, emoji and code. */
const CORPUS = [
  'Hello world',
  ' Hello  world   with   extra spaces ',
  'Once upon a time, there was a little girl named Lily. She loved to play outside!',
  'Numbers: 1 12 123 1234 12345 3.14159 -42 1,000,000 2024-11-27',
  "It's can't won't we'll they're I'm you've",
  'Line one\nLine two\n\n\tTabbed\r\nWindows line',
  'Café naïve résumé façade Übermäßig',
  '日本語のテキストと中文文本，还有한국어。',
  'Emoji: 😀👍🏽🇫🇷 and symbols © ® ™ → ∑ ∞',
  'function add(a, b) {\n    return a + b; // sum\n}\nconsole.log(add(1, 2));',
  'https://example.com/path?query=1&x=y#frag',
  '    leading spaces and trailing   ',
  'UPPER lower MiXeD CamelCaseWord snake_case_word',
  '',
  ' ',
  '\n\n\n',
  'a',
];

/** Text with the control tokens of each vocabulary, tokenized with special-token parsing. */
const SPECIAL: Record<string, string[]> = {
  llama2: ['<s>Hello</s>', 'text <s> more</s>'],
  llama3: ['<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>', 'a<|eot_id|>b'],
  qwen2: ['<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>', 'x<|endoftext|>y'],
};

/** A small model with `base`'s tokenizer and architecture features but few, narrow layers. */
function shrunk(base: SynthPreset): SynthPreset {
  return { ...base, name: `${base.name}-shrunk`, dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffn: 512 };
}

type LlamaModel = Awaited<ReturnType<Llama['loadModel']>>;

/**
 * Standard deviation of llama.cpp's next-token log-probabilities after a short prompt, i.e. of
 * the logits. The synth scales embeddings/output to N(0, 1/dim) after a final RMS norm, so this
 * is ~1 (measured 1.000 for tiny-15m, tinyllama-1.1b, qwen2.5-0.5b); NaN/inf anywhere in the
 * forward, or a degenerate distribution, moves it far away.
 */
async function nextTokenLogitStd(model: LlamaModel, text: string): Promise<number> {
  const ctx = await model.createContext({ contextSize: 256, threads: 2 });
  try {
    const seq = ctx.getSequence();
    const prompt = model.tokenize(text, false);
    const bos = model.tokens.bos;
    const it = seq.evaluateWithMetadata(bos == null ? prompt : [bos, ...prompt], { probabilities: true });
    const first = await it.next();
    await it.return();
    assert.ok(!first.done, 'llama.cpp produced no token');
    const probs = first.value.probabilities;
    let n = 0;
    let sum = 0;
    let s1 = 0;
    let s2 = 0;
    for (const p of probs.values()) {
      assert.ok(Number.isFinite(p) && p > 0, `probability ${p}`);
      n++;
      sum += p;
      const lp = Math.log(p);
      s1 += lp;
      s2 += lp * lp;
    }
    assert.ok(n >= 32000, `only ${n} probabilities`); // the whole vocabulary
    assert.ok(Math.abs(sum - 1) < 1e-3, `probabilities sum to ${sum}`);
    return Math.sqrt(s2 / n - (s1 / n) ** 2);
  } finally {
    await ctx.dispose();
  }
}

async function checkFile(path: string, vocab: string): Promise<void> {
  const llama = await llamaCpp();
  const model = await llama.loadModel({ modelPath: path });
  try {
    const tok = tokenizerFromGguf(readGgufSync(path));
    assert.equal(model.fileInfo.metadata.general.architecture, readGgufSync(path).architecture);
    for (const text of CORPUS) {
      const theirs = [...model.tokenize(text, false)];
      const ours = [...tok.encode(text, { addBos: false, addEos: false, parseSpecial: false })];
      assert.deepEqual(ours, theirs, `${vocab}: ${JSON.stringify(text)}`);
    }
    for (const text of SPECIAL[vocab]!) {
      const theirs = [...model.tokenize(text, true)];
      const ours = [...tok.encode(text, { addBos: false, addEos: false, parseSpecial: true })];
      assert.deepEqual(ours, theirs, `${vocab} (special): ${JSON.stringify(text)}`);
    }
    assert.equal(tok.bosId, model.tokens.bos ?? undefined);
    assert.equal(tok.eosId, model.tokens.eos ?? undefined);
    const std = await nextTokenLogitStd(model, 'Once upon a time there was');
    assert.ok(std > 0.5 && std < 2, `${path}: logit std ${std}`);
  } finally {
    await model.dispose();
  }
}

test('llama.cpp loads synthetic tiny-15m (F32, Q8_0, Q5_K_M) and tokenizes like flexinfer (llama2 SentencePiece)', async () => {
  for (const type of ['f32', 'q8_0', 'q5_k_m']) {
    const path = join(dir, `tiny-15m-${type}.gguf`);
    await synthesize(path, 'tiny-15m', type, { seed: 3 });
    await checkFile(path, 'llama2');
  }
});

test('llama.cpp loads shrunk llama-3.2-1b (rope_freqs, tied) and tokenizes like flexinfer (llama3 BPE)', async () => {
  const path = join(dir, 'llama3-shrunk.gguf');
  await synthesize(path, shrunk(SYNTH_PRESETS['llama-3.2-1b']!), 'q8_0', { seed: 3 });
  await checkFile(path, 'llama3');
});

test('llama.cpp loads shrunk qwen2.5-0.5b (qkv biases) and tokenizes like flexinfer (qwen2 BPE)', async () => {
  const path = join(dir, 'qwen2-shrunk.gguf');
  await synthesize(path, shrunk(SYNTH_PRESETS['qwen2.5-0.5b']!), 'q4_k_m', { seed: 3 });
  await checkFile(path, 'qwen2');
});

test('slow: llama.cpp loads full-size synthetic qwen2.5-0.5b Q8_0', async () => {
  const path = join(dir, 'qwen2.5-0.5b-q8_0.gguf');
  await synthesize(path, 'qwen2.5-0.5b', 'q8_0', { seed: 3 });
  const llama = await llamaCpp();
  const model = await llama.loadModel({ modelPath: path });
  try {
    assert.equal(model.trainContextSize, 32768);
    assert.equal(model.fileInfo.metadata.general.architecture, 'qwen2');
    const tok = tokenizerFromGguf(readGgufSync(path));
    const text = CORPUS.join('\n');
    assert.deepEqual([...tok.encode(text, { addBos: false, addEos: false, parseSpecial: false })], [...model.tokenize(text, false)]);
    const std = await nextTokenLogitStd(model, 'Once upon a time there was'); // 24 layers deep
    assert.ok(std > 0.5 && std < 2, `logit std ${std}`);
  } finally {
    await model.dispose();
    rmSync(path, { force: true });
  }
});
