/**
 * GEGLU and soft-capping bit for bit against llama.cpp's own CPU backend (ggml_geglu_split, and
 * ggml_scale / ggml_tanh / ggml_scale as llama.cpp's gemma graphs build the soft-cap), through the
 * prebuilt libggml-cpu (ggml-graph-oracle.ts). Skipped where the oracle cannot run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GGML_DECLS, lazyGgmlDriver } from './ggml-graph-oracle.js';
import { geluMul, softcap } from './ops.js';
import { rng } from './ops-testing.js';

const DRIVER =
  GGML_DECLS +
  String.raw`
extern "C" {
ggml_tensor* ggml_geglu_split(ggml_context*, ggml_tensor*, ggml_tensor*);
ggml_tensor* ggml_scale(ggml_context*, ggml_tensor*, float);
ggml_tensor* ggml_tanh(ggml_context*, ggml_tensor*);
}
int main(int argc, char** argv) {
  ggml_backend* be = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(be, 1);
  ggml_context* cg = ggml_init({1 << 24, nullptr, true});
  std::string op = argv[1];
  const int64_t n = atoll(argv[2]);
  std::vector<uint8_t> in = readAll(argv[argc - 2]);
  ggml_tensor* a = ggml_new_tensor_1d(cg, 0, n);
  ggml_tensor* b = ggml_new_tensor_1d(cg, 0, n);
  ggml_tensor* o;
  if (op == "geglu") o = ggml_geglu_split(cg, a, b);                 // geglu n in out: in = gate, up
  else if (op == "softcap") {                                        // softcap n cap in out: in = x
    const float cap = (float)atof(argv[3]);
    o = ggml_scale(cg, ggml_tanh(cg, ggml_scale(cg, a, 1.0f / cap)), cap);
  } else return 1;
  ggml_cgraph* g = ggml_new_graph(cg);
  ggml_build_forward_expand(g, o);
  ggml_backend_alloc_ctx_tensors_from_buft(cg, ggml_backend_cpu_buffer_type());
  ggml_backend_tensor_set(a, in.data(), 0, 4 * n);
  if (op == "geglu") ggml_backend_tensor_set(b, in.data() + 4 * n, 0, 4 * n);
  if (ggml_backend_graph_compute(be, g) != 0) return 3;
  std::vector<float> out(n);
  ggml_backend_tensor_get(o, out.data(), 0, out.size() * 4);
  writeAll(argv[argc - 1], out.data(), out.size() * 4);
  return 0;
}
`;

const driver = lazyGgmlDriver(DRIVER);

const bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const asF32 = (b: Uint8Array): Float32Array => new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);

function firstMismatch(ours: Float32Array, ref: Float32Array, input: Float32Array): string | undefined {
  assert.equal(ours.length, ref.length);
  for (let i = 0; i < ref.length; i++) if (!Object.is(ours[i], ref[i])) return `x = ${input[i]}: ours ${ours[i]} but llama.cpp ${ref[i]}`;
  return undefined;
}

test("geluMul equals llama.cpp's geglu bit for bit (every f16 value of the gate in (-10, 10), and beyond)", (t) => {
  const d = driver();
  if (!d) return t.skip('llama.cpp oracle unavailable');
  // every f16 bit pattern as a gate value (the table's whole domain), then random f32 values
  const gate = new Float32Array(65536 + 20000);
  const f = new Float32Array(1);
  for (let i = 0; i < 65536; i++) {
    // f16 bits -> f32 in plain JS
    const s = i >> 15 ? -1 : 1, e = (i >> 10) & 31, m = i & 1023;
    f[0] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    gate[i] = Number.isFinite(f[0]!) ? f[0]! : 0;
  }
  const next = rng(3);
  for (let i = 65536; i < gate.length; i++) gate[i] = (next() * 2 - 1) * 14;
  const up = new Float32Array(gate.length).map(() => next() * 2 - 1);
  const ref = asF32(d.run(['geglu', String(gate.length)], [bytes(gate), bytes(up)]));
  const ours = new Float32Array(gate.length);
  geluMul(ours, gate, up, gate.length);
  assert.equal(firstMismatch(ours, ref, gate), undefined);
});

test("softcap equals llama.cpp's scale-tanh-scale bit for bit", (t) => {
  const d = driver();
  if (!d) return t.skip('llama.cpp oracle unavailable');
  const next = rng(4);
  for (const cap of [30, 50]) {
    const x = new Float32Array(50000).map(() => (next() * 2 - 1) * 4 * cap);
    const ref = asF32(d.run(['softcap', String(x.length), String(cap)], [bytes(x)]));
    const ours = x.slice();
    softcap(ours, ours.length, cap);
    assert.equal(firstMismatch(ours, ref, x), undefined, `cap ${cap}`);
  }
});
