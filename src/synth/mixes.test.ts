/**
 * The quantization mixes (mixes.ts) against llama.cpp's own quantizer: an F16 synthetic file is
 * quantized by libllama's llama_model_quantize (the prebuilt @node-llama-cpp/linux-x64 library,
 * through a small compiled driver) into every file type, and each tensor's type in llama.cpp's
 * output must be the one `flexinfer synth` writes for that type. Shapes: tiny-15m (rows of 288:
 * fallbacks everywhere, n_gqa 1), a narrow TinyLlama (rows of 256, n_gqa 4, 8 layers) and a
 * narrow Qwen2 (rows of 384 and 768, n_gqa 6, biases). The full-size presets are checked by
 * scripts/check-mixes.js (too slow for the suite).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgmlType, ggmlTypeInfo } from '../gguf/ggml-type.js';
import { readGgufSync } from '../gguf/reader.js';
import { llamaCppLibDir } from '../gguf/quant/ggml-oracle.js';
import { QUANT_MIXES, QUANT_MIX_NAMES, fallbackType, mixTypes, useMoreBits, type QuantMix } from './mixes.js';
import { planSynth } from './plan.js';
import { SYNTH_PRESETS, type SynthPreset } from './presets.js';
import { synthesize } from './synth.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-mixes-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// llama_model_quantize_params as llama.h (node-llama-cpp 3.21.1's llama.cpp) declares it; the
// driver only sets nthread, ftype and pure after taking the library's defaults, and the trailing
// pad keeps the by-value return safe if the library's struct were longer.
const DRIVER = String.raw`
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
struct Params {
  int32_t nthread; int32_t ftype; int32_t output_tensor_type; int32_t token_embedding_type;
  bool allow_requantize; bool quantize_output_tensor; bool only_copy; bool pure; bool keep_split; bool dry_run;
  const void* imatrix; const void* kv_overrides; const void* tt_overrides; const int32_t* prune_layers; size_t max_buf_size;
  char pad[256];
};
extern "C" {
Params llama_model_quantize_default_params(void);
uint32_t llama_model_quantize(const char*, const char*, const Params*);
void llama_backend_init(void);
void llama_log_set(void (*)(int, const char*, void*), void*);
}
static void quiet(int, const char*, void*) {}
// drv <in.gguf> <out prefix> <ftype>[p] ...: writes <prefix>-<ftype>[p].gguf per file type (p: --pure)
int main(int argc, char** argv) {
  llama_log_set(quiet, nullptr);
  llama_backend_init();
  for (int i = 3; i < argc; i++) {
    Params p = llama_model_quantize_default_params();
    std::string a = argv[i];
    p.pure = a.back() == 'p';
    p.ftype = atoi(a.c_str());
    p.nthread = 2;
    std::string out = std::string(argv[2]) + "-" + a + ".gguf";
    if (llama_model_quantize(argv[1], out.c_str(), &p) != 0) { fprintf(stderr, "quantize %s failed\n", a.c_str()); return 1; }
  }
  return 0;
}
`;

let driverPath: string | undefined;
function driver(): string {
  if (driverPath) return driverPath;
  const lib = llamaCppLibDir();
  const libs = readdirSync(lib).filter((f) => /^libllama\..*so$|^libllama\.so$|^libggml\..*so$|^libggml-base\.so$/.test(f)).map((f) => join(lib, f));
  writeFileSync(join(dir, 'drv.cc'), DRIVER);
  const bin = join(dir, 'drv');
  execFileSync('g++', ['-std=c++17', '-O1', join(dir, 'drv.cc'), '-o', bin, ...libs, `-Wl,-rpath,${lib}`], { stdio: 'pipe' });
  driverPath = bin;
  return bin;
}

/** Every mix's types as llama.cpp writes them for `preset`: tensor name -> ggml type, per mix. */
async function llamaCppTypes(preset: SynthPreset, mixes: readonly QuantMix[]): Promise<Map<QuantMix, Map<string, GgmlType>>> {
  const f16 = join(dir, `${preset.name}-f16.gguf`);
  await synthesize(f16, preset, 'f16', { seed: 5, alignment: 32 });
  const arg = (m: QuantMix) => `${QUANT_MIXES[m].ftype}${'pure' in QUANT_MIXES[m] ? 'p' : ''}`;
  const prefix = join(dir, preset.name);
  execFileSync(driver(), [f16, prefix, ...mixes.filter((m) => m !== 'f16').map(arg)], { stdio: 'pipe', timeout: 240_000 });
  const out = new Map<QuantMix, Map<string, GgmlType>>();
  for (const m of mixes) {
    const path = m === 'f16' ? f16 : `${prefix}-${arg(m)}.gguf`;
    const file = readGgufSync(path);
    out.set(m, new Map(file.tensors.map((t) => [t.name, t.type])));
    // llama.cpp lays the tensors out back to back, each padded to the alignment (32): the gaps
    // between its offsets are its own ggml_nbytes, to compare with our byte sizes of every type
    // (the reader's t.byteSize comes from ggml-type.ts's table).
    const byOffset = [...file.tensors].sort((a, b) => a.fileOffset - b.fileOffset);
    for (let i = 0; i + 1 < byOffset.length; i++) {
      const t = byOffset[i]!;
      const gap = byOffset[i + 1]!.fileOffset - t.fileOffset;
      assert.equal(gap, Math.ceil(t.byteSize / 32) * 32, `${m}: ${t.name} (${ggmlTypeInfo(t.type)!.name}) takes ${gap} bytes in llama.cpp's file`);
    }
    if (m !== 'f16') rmSync(path);
  }
  rmSync(f16);
  return out;
}

const MIXES = QUANT_MIX_NAMES.filter((m) => m !== 'f32' && m !== 'bf16'); // F32 / BF16 sources are not converted here

// The mixes whose rules read n_gqa, the layer count or K-quant row fits (the legacy ones are
// their base type plus the output rule everywhere, covered on tiny-15m; IQ4_XS's n_gqa rule is
// checked by hand below: llama.cpp's IQ4 scale search is the slow part of these tests).
const K_MIXES: readonly QuantMix[] = ['q6_k', 'q5_k_m', 'q4_k_m', 'q4_k_s', 'q3_k_l', 'q3_k_m', 'q2_k'];

function checkPreset(preset: SynthPreset, theirs: Map<QuantMix, Map<string, GgmlType>>): void {
  for (const mix of theirs.keys()) {
    const plan = planSynth(preset, mix, 32);
    const got = theirs.get(mix)!;
    assert.equal(got.size, plan.tensors.length, mix);
    const bad = plan.tensors
      .filter((t) => got.get(t.name) !== t.type)
      .map((t) => `${t.name}: flexinfer ${ggmlTypeInfo(t.type)!.name}, llama.cpp ${ggmlTypeInfo(got.get(t.name)!)?.name}`);
    assert.deepEqual(bad, [], `${preset.name} ${mix}`);
  }
}

const narrow = (base: string, over: Partial<SynthPreset>): SynthPreset => ({ ...SYNTH_PRESETS[base]!, ...over, name: `${base}-narrow` });

test("every mix equals llama.cpp's llama_model_quantize on tiny-15m (fallbacks on 288-wide rows)", { timeout: 300_000 }, async () => {
  const p = SYNTH_PRESETS['tiny-15m']!;
  checkPreset(p, await llamaCppTypes(p, MIXES));
});

test("the K mixes equal llama_model_quantize on a narrow TinyLlama (256-wide rows, n_gqa 4, untied output)", { timeout: 300_000 }, async () => {
  const p = narrow('tinyllama-1.1b', { dim: 256, nHeads: 8, nKvHeads: 2, ffn: 512, nLayers: 8 });
  checkPreset(p, await llamaCppTypes(p, K_MIXES));
});

test("the main K mixes equal llama_model_quantize on a narrow Qwen2 (rows of 384 and 768, n_gqa 6, biases)", { timeout: 300_000 }, async () => {
  // qwen2 architecture and hyperparameters, the llama2 vocabulary (32000 rows, not 151936: the mix
  // rules do not read the tokenizer, and the file stays small)
  const p = narrow('qwen2.5-0.5b', { dim: 384, nHeads: 6, nKvHeads: 1, ffn: 768, nLayers: 3, vocab: 'llama2', nVocab: 32000 });
  checkPreset(p, await llamaCppTypes(p, ['q4_k_m', 'q3_k_m', 'q2_k']));
});

// Opt-in (FLEXINFER_FULL_MIXES=1): every mix at the full shapes of qwen2.5-0.5b and
// tinyllama-1.1b (F16 files of 1 and 2.2 GB, quantized 18 times by llama.cpp: ~15 min here).
if (process.env.FLEXINFER_FULL_MIXES) {
  for (const name of ['qwen2.5-0.5b', 'tinyllama-1.1b']) {
    test(`every mix equals llama_model_quantize on full-size ${name}`, { timeout: 3_600_000 }, async () => {
      const p = SYNTH_PRESETS[name]!;
      checkPreset(p, await llamaCppTypes(p, MIXES));
    });
  }
}

// ---- the rules by hand, for the branches the files above do not reach ----

test('use_more_bits and the fallbacks, hand-computed', () => {
  // n = 32: i < 4, i >= 28, (i - 4) % 3 == 2
  const more = Array.from({ length: 32 }, (_, i) => i).filter((i) => useMoreBits(i, 32));
  assert.deepEqual(more, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
  assert.equal(fallbackType(GgmlType.Q4_K, 896), GgmlType.Q5_0);
  assert.equal(fallbackType(GgmlType.Q5_K, 896), GgmlType.Q5_1);
  assert.equal(fallbackType(GgmlType.Q6_K, 896), GgmlType.Q8_0);
  assert.equal(fallbackType(GgmlType.Q2_K, 896), GgmlType.Q4_0);
  assert.equal(fallbackType(GgmlType.Q3_K, 896), GgmlType.Q4_0);
  assert.equal(fallbackType(GgmlType.IQ4_XS, 896), GgmlType.IQ4_NL);
  assert.equal(fallbackType(GgmlType.Q4_K, 4864), GgmlType.Q4_K);
  assert.equal(fallbackType(GgmlType.Q4_K, 100), GgmlType.F16); // not even 32-blocks
  assert.equal(fallbackType(GgmlType.Q5_0, 100), GgmlType.F16);
});

test('MoE tensors: expert matrices by category and layer, n_expert 8 bumps attn_v / attn_k / attn_output', () => {
  const model = { arch: 'qwen3moe', nLayers: 4, nHeads: 32, nKvHeads: 4, nExperts: 8 };
  const tensors: Array<{ name: string; dims: readonly number[] }> = [];
  for (let l = 0; l < 4; l++) {
    for (const [n, dims] of [
      ['attn_q', [2048, 4096]], ['attn_k', [2048, 512]], ['attn_v', [2048, 512]], ['attn_output', [4096, 2048]],
      ['ffn_gate_inp', [2048, 8]], ['ffn_gate_exps', [2048, 768, 8]], ['ffn_up_exps', [2048, 768, 8]], ['ffn_down_exps', [768, 2048, 8]],
    ] as const) tensors.push({ name: `blk.${l}.${n}.weight`, dims });
  }
  const types = mixTypes('q4_k_m', model, tensors);
  const typeOf = (name: string) => types[tensors.findIndex((t) => t.name === name)];
  for (let l = 0; l < 4; l++) {
    assert.equal(typeOf(`blk.${l}.attn_v.weight`), GgmlType.Q8_0); // n_expert == 8
    assert.equal(typeOf(`blk.${l}.attn_k.weight`), GgmlType.Q8_0);
    assert.equal(typeOf(`blk.${l}.attn_output.weight`), GgmlType.Q5_K);
    assert.equal(typeOf(`blk.${l}.ffn_gate_inp.weight`), null); // the router is not quantized
    assert.equal(typeOf(`blk.${l}.ffn_gate_exps.weight`), GgmlType.Q4_K);
    // use_more_bits(l, 4): 4/8 = 0, 7*4/8 = 3 -> layer 3, (l - 0) % 3 == 2 -> layer 2; rows of 768 = 3 * 256
    assert.equal(typeOf(`blk.${l}.ffn_down_exps.weight`), l >= 2 ? GgmlType.Q6_K : GgmlType.Q4_K);
  }
  // dense, n_gqa 8 >= 4: IQ4_XS gives attn_v Q5_K; Q2_K gives it Q4_K
  const dense = { arch: 'llama', nLayers: 16, nHeads: 32, nKvHeads: 4 };
  const v = [{ name: 'blk.0.attn_v.weight', dims: [2048, 256] }];
  assert.equal(mixTypes('iq4_xs', dense, v)[0], GgmlType.Q5_K);
  assert.equal(mixTypes('q2_k', dense, v)[0], GgmlType.Q4_K);
  assert.equal(mixTypes('q2_k', { ...dense, nKvHeads: 16 }, v)[0], GgmlType.Q3_K);
  // 70B (llama, 80 layers, GQA): attn_v's Q4_K becomes Q5_K
  assert.equal(mixTypes('q4_k_s', { arch: 'llama', nLayers: 80, nHeads: 64, nKvHeads: 8 }, [{ name: 'blk.9.attn_v.weight', dims: [8192, 1024] }])[0], GgmlType.Q5_K);
});
