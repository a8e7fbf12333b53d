/**
 * `flexinfer inspect FILE [--json]`: what a GGUF file holds (format, architecture and
 * hyperparameters, tokenizer, tensors by type and by layer), read from the header only.
 */

import { parseArgs } from 'node:util';
import { InvalidOptionError } from '../errors.js';
import { ggmlTypeInfo } from '../gguf/ggml-type.js';
import { readGguf, type GgufFile, type GgufTensorInfo } from '../gguf/reader.js';
import { GgufValueType } from '../gguf/value.js';
import { resolveModelArg } from './model-arg.js';

const HELP = `Usage: flexinfer inspect FILE [--json]

Shows a GGUF file: format version, size and alignment; architecture and hyperparameters;
tokenizer (model, vocabulary size, merges, special tokens, chat template); tensors (count,
bytes by type, bytes per layer, tensors outside the layers). Reads only the header.

Options:
  --json      print one JSON object instead of text
  -h, --help  show this help
`;

/** Hyperparameters shown first, in this order (keys under `<arch>.`); the rest follow sorted. */
const MAIN_KEYS = [
  'block_count',
  'context_length',
  'embedding_length',
  'feed_forward_length',
  'attention.head_count',
  'attention.head_count_kv',
  'attention.key_length',
  'attention.value_length',
  'rope.dimension_count',
  'rope.freq_base',
  'attention.layer_norm_rms_epsilon',
  'vocab_size',
];

/** llama.cpp's `general.file_type` (enum llama_ftype) names; retired ids are absent. */
const FILE_TYPES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1', 10: 'Q2_K', 11: 'Q3_K_S',
  12: 'Q3_K_M', 13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S', 17: 'Q5_K_M', 18: 'Q6_K',
  19: 'IQ2_XXS', 20: 'IQ2_XS', 21: 'Q2_K_S', 22: 'IQ3_XS', 23: 'IQ3_XXS', 24: 'IQ1_S', 25: 'IQ4_NL',
  26: 'IQ3_S', 27: 'IQ3_M', 28: 'IQ2_S', 29: 'IQ2_M', 30: 'IQ4_XS', 31: 'IQ1_M', 32: 'BF16',
  36: 'TQ1_0', 37: 'TQ2_0', 38: 'MXFP4_MOE',
};

/** Everything inspect reports; `--json` prints this object. */
export interface InspectReport {
  path: string;
  version: number;
  fileSize: number;
  alignment: number;
  dataOffset: number;
  architecture: string;
  name: string | null;
  fileType: number | null;
  /** llama.cpp's name of fileType ("Q4_K_M"), or null. */
  fileTypeName: string | null;
  hyperparameters: Record<string, unknown>;
  tokenizer: {
    model: string | null;
    pre: string | null;
    vocabSize: number;
    merges: number;
    bosTokenId: number | null;
    eosTokenId: number | null;
    chatTemplate: boolean;
  };
  tensorCount: number;
  tensorBytes: number;
  bytesByType: Record<string, { tensors: number; bytes: number; supported: boolean }>;
  layers: Array<{ layer: number; tensors: number; bytes: number }>;
  nonLayerTensors: Array<{ name: string; type: string; dims: number[]; bytes: number }>;
}

/** Builds the report from a parsed header. */
export function inspectReport(f: GgufFile): InspectReport {
  const arch = f.architecture;
  const prefix = `${arch}.`;
  const hyper: Record<string, unknown> = {};
  const archKeys = arch ? [...f.metadata.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)) : [];
  const ordered = [...MAIN_KEYS.filter((k) => archKeys.includes(k)), ...archKeys.filter((k) => !MAIN_KEYS.includes(k)).sort()];
  for (const k of ordered) hyper[k] = jsonable(f.get(prefix + k), f.metadata.get(prefix + k)?.type === GgufValueType.FLOAT32);

  const num = (key: string): number | null => {
    const v = f.get(key);
    return typeof v === 'number' ? v : null;
  };
  const str = (key: string): string | null => {
    const v = f.get(key);
    return typeof v === 'string' ? v : null;
  };
  const len = (key: string): number => {
    const v = f.get(key) as { length?: number } | undefined;
    return typeof v?.length === 'number' ? v.length : 0;
  };

  const bytesByType: InspectReport['bytesByType'] = {};
  const layers = new Map<number, { layer: number; tensors: number; bytes: number }>();
  const nonLayerTensors: InspectReport['nonLayerTensors'] = [];
  let tensorBytes = 0;
  for (const t of f.tensors) {
    const info = ggmlTypeInfo(t.type)!;
    const byType = (bytesByType[info.name] ??= { tensors: 0, bytes: 0, supported: info.supported });
    byType.tensors++;
    byType.bytes += t.byteSize;
    tensorBytes += t.byteSize;
    const layer = layerOf(t);
    if (layer === undefined) {
      nonLayerTensors.push({ name: t.name, type: info.name, dims: t.dims, bytes: t.byteSize });
    } else {
      const l = layers.get(layer) ?? { layer, tensors: 0, bytes: 0 };
      l.tensors++;
      l.bytes += t.byteSize;
      layers.set(layer, l);
    }
  }

  return {
    path: f.path,
    version: f.version,
    fileSize: f.fileSize,
    alignment: f.alignment,
    dataOffset: f.dataOffset,
    architecture: arch,
    name: str('general.name'),
    fileType: num('general.file_type'),
    fileTypeName: FILE_TYPES[num('general.file_type') ?? -1] ?? null,
    hyperparameters: hyper,
    tokenizer: {
      model: str('tokenizer.ggml.model'),
      pre: str('tokenizer.ggml.pre'),
      vocabSize: len('tokenizer.ggml.tokens'),
      merges: len('tokenizer.ggml.merges'),
      bosTokenId: num('tokenizer.ggml.bos_token_id'),
      eosTokenId: num('tokenizer.ggml.eos_token_id'),
      chatTemplate: f.metadata.has('tokenizer.chat_template'),
    },
    tensorCount: f.tensors.length,
    tensorBytes,
    bytesByType,
    layers: [...layers.values()].sort((a, b) => a.layer - b.layer),
    nonLayerTensors,
  };
}

/** Layer index of a `blk.N.*` tensor. */
function layerOf(t: GgufTensorInfo): number | undefined {
  const m = /^blk\.(\d+)\./.exec(t.name);
  return m ? Number(m[1]) : undefined;
}

/** Shortest decimal that reads back as the same float32 (1e-5, not 0.000009999999747). */
export function shortestF32(x: number): number {
  if (!Number.isFinite(x)) return x;
  for (let p = 1; p < 17; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return x;
}

/** JSON-safe form: bigints as strings, typed arrays as arrays (long ones summarized). */
function jsonable(v: unknown, f32 = false): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number' && f32) return shortestF32(v);
  if (v instanceof Float32Array) return jsonable(Array.from(v), true);
  if (ArrayBuffer.isView(v) || Array.isArray(v)) {
    const a = Array.from(v as ArrayLike<unknown>);
    return a.length > 64 ? `[${a.length} items]` : a.map((x) => jsonable(x, f32));
  }
  return v;
}

/** Human-readable byte count (binary units). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}

function text(r: InspectReport): string {
  const out: string[] = [];
  const row = (k: string, v: string) => out.push(`  ${k.padEnd(40)} ${v}`);
  out.push(`${r.path}`);
  out.push(`  GGUF v${r.version}, ${formatBytes(r.fileSize)} (${r.fileSize} bytes), alignment ${r.alignment}, data at byte ${r.dataOffset}`);
  out.push('');
  out.push(`model: ${r.architecture || '(no general.architecture)'}${r.name ? `  "${r.name}"` : ''}${r.fileType !== null ? `  file_type ${r.fileType}${r.fileTypeName ? ` (${r.fileTypeName})` : ''}` : ''}`);
  for (const [k, v] of Object.entries(r.hyperparameters)) row(`${r.architecture}.${k}`, typeof v === 'string' ? v : JSON.stringify(v));
  out.push('');
  const t = r.tokenizer;
  out.push(`tokenizer: ${t.model ?? '(none)'}${t.pre ? ` (pre ${t.pre})` : ''}`);
  row('vocabulary', String(t.vocabSize));
  row('merges', String(t.merges));
  row('bos / eos token id', `${t.bosTokenId ?? '-'} / ${t.eosTokenId ?? '-'}`);
  row('chat template', t.chatTemplate ? 'yes' : 'no');
  out.push('');
  out.push(`tensors: ${r.tensorCount}, ${formatBytes(r.tensorBytes)}`);
  for (const [name, b] of Object.entries(r.bytesByType).sort((a, b) => b[1].bytes - a[1].bytes)) {
    row(`${name}${b.supported ? '' : ' (not supported)'}`, `${formatBytes(b.bytes).padStart(10)}  ${b.tensors} tensors`);
  }
  if (r.layers.length > 0) {
    out.push(`layers: ${r.layers.length}`);
    for (const l of r.layers) row(`blk.${l.layer}`, `${formatBytes(l.bytes).padStart(10)}  ${l.tensors} tensors`);
  }
  if (r.nonLayerTensors.length > 0) {
    out.push('outside the layers:');
    for (const n of r.nonLayerTensors) row(n.name, `${formatBytes(n.bytes).padStart(10)}  ${n.type} [${n.dims.join(', ')}]`);
  }
  return out.join('\n') + '\n';
}

/** Entry point: `flexinfer inspect FILE [--json]`. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidOptionError('FILE', `expected one GGUF file, got ${positionals.length} (see flexinfer inspect --help)`);
  const report = inspectReport(await readGguf(await resolveModelArg(positionals[0]!)));
  process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : text(report));
  return 0;
}
