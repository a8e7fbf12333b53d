/**
 * `flexinfer plan MODEL --memory-budget X`: how a memory budget would be spent on a model —
 * per layer which tensors are resident and which are streamed, the prefetch window and ring
 * buffer, the budget split (weights, buffers, KV, scratch), bytes read per token and the
 * predicted tokens per second. Reads only the header; `--calibrate` measures the storage.
 */
import { parseArgs } from 'node:util';
import { InsufficientMemoryError, InvalidOptionError } from '../errors.js';
import { readGgufSync, type GgufFile } from '../gguf/reader.js';
import { formatBytes, parseMemoryBudget } from '../weights/budget.js';
import { calibrateStorage, readCachedCalibration } from '../weights/calibrate.js';
import { DEFAULT_HARDWARE, dominantType, elasticLadder, planInputs, planWithReserve, planWithWindow } from '../weights/create.js';
import type { HardwareFigures, Plan } from '../weights/plan.js';
import { planMoe, type ExpertCacheMode, type ExpertCachePlan, type MoePlan } from '../weights/expert-plan.js';
import { EXPERT_POLICIES, type ExpertPolicyName } from '../weights/expert-cache.js';
import { moeShape } from '../weights/create-moe.js';
import type { TensorKind } from '../weights/tensors.js';
import { modelConfigFromGguf } from '../models/registry.js';
import { kvBytesFor, kvFloorBytes, kvPoolSize } from '../kv/pool-size.js';
import { ElasticWeightStore } from '../weights/elastic-store.js';
import { planPool, type PoolPlan } from '../engine/pool-plan.js';
import { engineScratchBytes, runtimeReserveFor } from '../engine/memory.js';
import { defaultContextSize, MAX_BATCH_ROWS, MAX_CONTEXT_SIZE, MAX_PARALLEL } from '../engine/model.js';
import { fittedContexts } from '../engine/context-fit.js';
import { readCacheCap, readCachePolicy } from '../weights/read-cache.js';
import { resolveModelArg } from './model-arg.js';
import { KV_LAYOUTS, type KvLayout } from '../kv/layouts.js';

const HELP = `Usage: flexinfer plan MODEL --memory-budget X [options]

Shows how flexinfer would run MODEL within a memory budget: which tensors stay resident
(locked) and which are streamed from storage every token, per layer; the prefetch window and
stream buffers; the budget split; bytes read per token and the predicted tokens per second.
For Mixture-of-Experts models also the expert cache: slots per layer (or one global pool),
the hit rate expected under uniform routing and the expert bytes read per token.

Options:
  --memory-budget X     bytes, 1.5GiB, 512MiB, 2GB or 60% (of the model file); required
  --ctx-size N          context tokens per sequence for the KV cache (default min(4096, model's),
                        or the most the budget holds when that is less)
  --parallel N          sequences (default 1)
  --kv LAYOUT           vtensor (default), paged or contiguous: how the KV pool is sized
  --memory-pool P       elastic (default with vtensor: a KV floor, and one pool that resident
                        weights and KV share while the model runs) or static (KV reserved for
                        --parallel full-context sequences)
  --kv-floor X          elastic: KV memory weights never take (default one full-context sequence)
  --seq-tokens N        elastic: tokens per sequence in the expected split (default --ctx-size)
  --window N            prefetch window in layers (default 3, or less if the budget needs it)
  --scratch BYTES       activation scratch (default: what the engine allocates for this model)
  --read-bandwidth X    storage read speed per second, e.g. 1.5GB (default: calibration cache)
  --compute-bandwidth X weight bytes the kernels process per second (default 8GB)
  --calibrate           measure the storage first (O_DIRECT vs buffered) and cache the result
  --expert-cache MODE   MoE models: auto (default: the cost model's choice), global or per-layer
  --expert-policy P     MoE models: least-stale (default), lfu or lru
  --json                print the plan as JSON
  -h, --help            show this help
`;

const KIND_COLUMNS: [TensorKind, string][] = [
  ['attn_q', 'q'],
  ['attn_k', 'k'],
  ['attn_v', 'v'],
  ['attn_qkv', 'qkv'],
  ['attn_output', 'o'],
  ['ffn_gate', 'gate'],
  ['ffn_up', 'up'],
  ['ffn_down', 'down'],
  ['ffn_gate_inp', 'router'],
  ['other', 'other'],
];

/** Model shapes the KV and scratch estimates need, from the GGUF metadata. */
export function modelShapes(file: GgufFile): { numLayers: number; kvBytesPerToken: number; dim: number; ffn: number; vocab: number; contextLength: number } {
  const a = file.architecture;
  const n = (k: string, d?: number) => file.getNumber(`${a}.${k}`) ?? d ?? 0;
  const dim = n('embedding_length');
  const heads = n('attention.head_count', 1) || 1;
  const kvHeads = n('attention.head_count_kv', heads);
  const keyLen = n('attention.key_length', dim / heads);
  const valueLen = n('attention.value_length', keyLen);
  const numLayers = n('block_count');
  const embd = file.tensor('token_embd.weight');
  return {
    numLayers,
    // K and V in f16 for every layer (the KV cache's layout).
    kvBytesPerToken: numLayers * kvHeads * (keyLen + valueLen) * 2,
    dim,
    ffn: n('feed_forward_length'),
    vocab: embd?.dims[1] ?? 0,
    contextLength: n('context_length', 4096),
  };
}

/**
 * Rough activation scratch: f32 activations of a 512-token prompt batch (residual, norms,
 * q/k/v, attention output, FFN gate/up) plus the logits row. An estimate until the engine
 * reports its own figure.
 */
export function estimateScratchBytes(s: { dim: number; ffn: number; vocab: number }, batch = 512): number {
  return 4 * (batch * (6 * s.dim + 3 * s.ffn) + s.vocab);
}

/** The sliding windows of the file's local layers (the engine's KvShape.layerWindows), or undefined. */
function layerWindowsOf(file: GgufFile): number[] | undefined {
  try {
    const w = modelConfigFromGguf(file).layerWindows;
    return w?.some((x) => x > 0) ? w : undefined;
  } catch {
    return undefined; // architecture without a forward pass here: every layer global
  }
}

/** The scratch the engine will allocate (as engine/worker.ts computes it), or undefined. */
function scratchOfFile(file: GgufFile, parallel: number): number | undefined {
  try {
    const config = modelConfigFromGguf(file);
    return engineScratchBytes(config, parallel, MAX_BATCH_ROWS);
  } catch {
    return undefined; // architecture without a forward pass here: the shape estimate
  }
}

function kindCell(l: Plan['layers'][number], kind: TensorKind): string {
  const k = l.byKind[kind];
  if (!k) return '';
  if (k.resident > 0 && k.streamed === 0) return 'R';
  if (k.streamed > 0 && k.resident === 0) return 's';
  return 'Rs';
}

/** Text rendering of a plan. */
export function formatPlan(plan: Plan | MoePlan, path: string, fileSize: number, extra: { ctxSize: number; parallel: number; hardwareSource: string; kvWhat?: string }): string {
  const gb = (x: number) => `${(x / 1e9).toFixed(2)} GB/s`;
  const lines: string[] = [];
  const s = plan.split;
  const moe = 'experts' in plan ? plan.experts : undefined;
  const cache = moe ? ` + expert cache ${formatBytes(moe.cacheBytes)}` : '';
  lines.push(`model:     ${path} (${formatBytes(fileSize)})`);
  lines.push(`budget:    ${formatBytes(plan.budget)} = weights ${formatBytes(s.weights)}${cache} + stream buffers ${formatBytes(s.buffers)} + KV ${formatBytes(s.kv)} (${extra.kvWhat ?? `${extra.parallel} x ${extra.ctxSize} tokens`}) + scratch ${formatBytes(s.scratch)}  (used ${formatBytes(s.total)})`);
  const ring = plan.numSlots > 0 ? `prefetch window ${plan.window} layer${plan.window === 1 ? '' : 's'}; ring ${plan.numSlots} x ${formatBytes(plan.slotBytes)}` : 'no layer streams (no ring)';
  lines.push(`strategy:  ${plan.strategy}; ${ring}`);
  const os = plan.outputSlices;
  if (os) lines.push(`output:    streamed every token in ${os.numSlices} slices of ${os.sliceRows} rows (2 slice buffers and the logits temp: ${formatBytes(os.bufferBytes)}) instead of resident`);
  const rows = plan.tensors.some((t) => t.placement === 'rows');
  lines.push(`resident:  ${formatBytes(plan.residentBytes)} of ${formatBytes(fileSize)}${rows ? '; token embeddings read by row' : ''}`);
  lines.push(`per token: ${formatBytes(plan.bytesReadPerToken)} read; predicted ${plan.predictedSecPerToken.toFixed(4)} s/token = ${plan.predictedTokensPerSec.toFixed(2)} tokens/s`);
  const streams = plan.tensors.some((t) => t.placement === 'streamed' || t.placement === 'slices');
  if (plan.budget >= fileSize && plan.bytesReadPerToken > 0 && streams) {
    // A budget as large as the file is not "no budget": KV, scratch and the stream buffers are
    // paid from it too, so the weights they displace stream (README "Memory budget").
    lines.push(`note:      a budget of the file's size still streams ${formatBytes(plan.bytesReadPerToken)} per token: KV, scratch and stream buffers share it; omit --memory-budget to keep every weight resident`);
  }
  lines.push(`hardware:  read ${gb(plan.hardware.readBytesPerSec)}, compute ${plan.hardware.computeSecPerLayer !== undefined ? `${plan.hardware.computeSecPerLayer} s/layer` : gb(plan.hardware.computeBytesPerSec ?? 8e9)} (${extra.hardwareSource})`);
  if (moe) lines.push(...formatExpertCache(moe));
  lines.push('');
  const present = KIND_COLUMNS.filter(([k]) => plan.layers.some((l) => l.byKind[k]));
  const head = ['layer', 'resident', 'streamed', ...present.map(([, c]) => c), ...(moe ? ['expert slots'] : [])];
  const slotsOf = (l: number) => (moe!.mode === 'per-layer' ? `${moe!.slots[l]} of ${moe!.numExperts}` : 'global');
  const table = plan.layers.map((l) => [String(l.layer), formatBytes(l.residentBytes), formatBytes(l.streamedBytes), ...present.map(([k]) => kindCell(l, k)), ...(moe ? [slotsOf(l.layer)] : [])]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i < 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  lines.push(fmt(head));
  for (const r of table) lines.push(fmt(r).trimEnd());
  lines.push('(R = resident in this layer, s = streamed every token; norms are always resident)');
  if (moe) lines.push('(experts are not in the resident/streamed columns: they live in the expert cache or are read on a miss)');
  return lines.join('\n') + '\n';
}

/** The expert-cache lines of a MoE plan. */
export function formatExpertCache(e: ExpertCachePlan): string[] {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const total = e.numLayers * e.numExperts;
  const where =
    e.mode === 'per-layer'
      ? `${Math.min(...e.slots)}${Math.max(...e.slots) > Math.min(...e.slots) ? `-${Math.max(...e.slots)}` : ''} slots per layer of ${e.numExperts} experts`
      : `one global pool of ${e.numSlots} slots for ${e.numLayers} x ${e.numExperts} experts`;
  const lines = [
    `experts:   ${e.mode} cache, ${where} (${pct(e.numSlots / total)}), ${formatBytes(Math.max(...e.slotBytes))} per slot = ${formatBytes(e.cacheBytes)}; policy ${e.policy}${e.allResident ? '; every expert resident' : ''}`,
    `           ${e.numExpertsUsed} of ${e.numExperts} experts per token and layer; expected hit rate under uniform routing ${pct(e.expectedHitRate)}; expert reads ${formatBytes(e.expectedReadBytesPerToken)} per token`,
  ];
  for (const o of e.options) {
    if (o.mode === e.mode) continue;
    lines.push(`           ${o.mode} instead: ${o.feasible ? `${o.numSlots} slots, hit rate ${pct(o.expectedHitRate)}, ${(1 / o.predictedSecPerToken).toFixed(2)} tokens/s` : 'does not fit'}`);
  }
  if (e.rows > 1) {
    const tps = (o: ExpertCachePlan['options'][number]) => (o.feasible ? `${(1 / o.batchSecPerToken).toFixed(2)} tokens/s` : 'does not fit');
    lines.push(`           chosen for ${e.rows} rows per pass (--parallel): ~${e.expertsPerStep.toFixed(1)} distinct experts per layer step; all rows together ${e.options.map((o) => `${o.mode} ${tps(o)}`).join(', ')}`);
  }
  return lines;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'memory-budget': { type: 'string' },
      'ctx-size': { type: 'string' },
      parallel: { type: 'string', default: '1' },
      kv: { type: 'string', default: 'vtensor' },
      'memory-pool': { type: 'string', default: 'elastic' },
      'kv-floor': { type: 'string' },
      'seq-tokens': { type: 'string' },
      window: { type: 'string' },
      scratch: { type: 'string' },
      'read-bandwidth': { type: 'string' },
      'compute-bandwidth': { type: 'string' },
      calibrate: { type: 'boolean', default: false },
      'expert-cache': { type: 'string' },
      'expert-policy': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidOptionError('plan', `expected one MODEL file, got ${positionals.length}; see flexinfer plan --help`);
  const path = await resolveModelArg(positionals[0]!);
  if (values['memory-budget'] === undefined) throw new InvalidOptionError('--memory-budget', 'is required (e.g. --memory-budget 2GiB or 50%)');
  const file = readGgufSync(path);
  const budget = parseMemoryBudget(values['memory-budget'], file.fileSize);
  const int = (name: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
      throw new InvalidOptionError(`--${name}`, max === Number.MAX_SAFE_INTEGER ? `must be an integer >= ${min}, got '${text}'` : `must be an integer in [${min}, ${max}], got '${text}'`);
    }
    return Number(text);
  };
  const shapes = modelShapes(file);
  const defaultCtx = values['ctx-size'] !== undefined ? int('ctx-size', values['ctx-size'], 1, MAX_CONTEXT_SIZE) : defaultContextSize(shapes.contextLength);
  const parallel = int('parallel', values.parallel!, 1, MAX_PARALLEL);
  const window = values.window !== undefined ? int('window', values.window, 1) : undefined;
  const scratch = values.scratch !== undefined ? parseMemoryBudget(values.scratch, 0, '--scratch') : scratchOfFile(file, parallel) ?? estimateScratchBytes(shapes);

  let hardware: HardwareFigures = { ...DEFAULT_HARDWARE };
  let source = 'defaults; run with --calibrate to measure';
  if (values.calibrate) {
    const cal = calibrateStorage(path, { computeType: dominantType(file) });
    hardware.readBytesPerSec = cal.readBytesPerSec;
    if (cal.computeBytesPerSec) hardware.computeBytesPerSec = cal.computeBytesPerSec;
    source = `measured now: O_DIRECT ${(cal.directBytesPerSec / 1e9).toFixed(2)} GB/s, buffered ${(cal.bufferedBytesPerSec / 1e9).toFixed(2)} GB/s, matmul on ${cal.computeType}`;
  } else {
    const cal = readCachedCalibration(path);
    if (cal) {
      hardware.readBytesPerSec = cal.readBytesPerSec;
      if (cal.computeBytesPerSec) hardware.computeBytesPerSec = cal.computeBytesPerSec;
      source = `calibration cache of ${cal.measuredAt}`;
    }
  }
  if (values['read-bandwidth'] !== undefined) {
    hardware.readBytesPerSec = parseMemoryBudget(values['read-bandwidth'], 0, '--read-bandwidth');
    source = 'given';
  }
  if (values['compute-bandwidth'] !== undefined) hardware = { ...hardware, computeBytesPerSec: parseMemoryBudget(values['compute-bandwidth'], 0, '--compute-bandwidth') };

  const kv = values.kv!;
  if (!(KV_LAYOUTS as readonly string[]).includes(kv)) throw new InvalidOptionError('--kv', `must be one of ${KV_LAYOUTS.join(', ')}, got '${kv}'`);
  const poolMode = values['memory-pool']!;
  if (poolMode !== 'elastic' && poolMode !== 'static') throw new InvalidOptionError('--memory-pool', `must be elastic or static, got '${poolMode}'`);
  const elasticPool = poolMode === 'elastic' && kv === 'vtensor';
  const moe = moeShape(file);
  const expertCache = values['expert-cache'];
  if (expertCache !== undefined && !['auto', 'global', 'per-layer'].includes(expertCache)) throw new InvalidOptionError('--expert-cache', `must be auto, global or per-layer, got '${expertCache}'`);
  const policy = values['expert-policy'];
  if (policy !== undefined && !(EXPERT_POLICIES as readonly string[]).includes(policy)) throw new InvalidOptionError('--expert-policy', `must be one of ${EXPERT_POLICIES.join(', ')}, got '${policy}'`);
  const windows = layerWindowsOf(file);
  const reserve = runtimeReserveFor(parallel, file.dataOffset);
  // The plan at ctxSize exactly as the engine makes it.
  const planAt = (ctxSize: number) => {
    // The KV pool exactly as the engine sizes it (vTensor: whole chunks plus spare tails).
    const kvShape = { numLayers: shapes.numLayers, kvDim: shapes.kvBytesPerToken / (shapes.numLayers * 2 * 2), maxContext: ctxSize, ...(windows ? { layerWindows: windows } : {}) };
    const { kvBytes, chunkBytes } = kvPoolSize(kvShape, parallel, kv as KvLayout, MAX_BATCH_ROWS);
    // Elastic: the plan at load holds the KV floor; the pool moves weights as KV grows.
    // MoE files keep a static split (the expert cache moves their weights: engine/memory.ts).
    const elastic = elasticPool && !moe;
    const floorBytes = !elastic ? 0 : values['kv-floor'] !== undefined ? parseMemoryBudget(values['kv-floor'], file.fileSize, '--kv-floor') : kvFloorBytes(kvShape, chunkBytes, MAX_BATCH_ROWS);
    const inputs = planInputs(file);
    const options = { budget, kvBytes: elastic ? floorBytes : kvBytes, scratchBytes: scratch, hardware };
    const plan: Plan | MoePlan = moe
      ? planMoe(inputs, {
          ...options,
          ...(window !== undefined ? { window } : {}),
          ...moe,
          ...(expertCache ? { expertCache: expertCache as ExpertCacheMode | 'auto' } : {}),
          ...(policy ? { expertPolicy: policy as ExpertPolicyName } : {}),
          rows: parallel,
        })
      : elastic
        ? planWithWindow(inputs, options, window)
        : planWithReserve(inputs, options, window, budget !== Infinity ? reserve : 0);
    let pool: PoolPlan | undefined;
    if (elastic) {
      // The ladder and read cache a load in this process's memory limit would use (create.ts).
      const { ladder, readCacheBytes } = elasticLadder(file, options, window, Math.max(0, reserve - floorBytes), { ...readCachePolicy(path, file.fileSize, budget), maxBytes: readCacheCap(kvBytes, floorBytes, reserve) });
      const seqTokens = values['seq-tokens'] !== undefined ? Math.min(ctxSize, int('seq-tokens', values['seq-tokens'], 1)) : ctxSize;
      const kvFor = (n: number) => kvBytesFor(kvShape, chunkBytes, n, seqTokens, MAX_BATCH_ROWS);
      pool = planPool(ladder, ElasticWeightStore.levels(file, ladder), { budget, scratchBytes: scratch, runtimeBytes: reserve, readCacheBytes, floorBytes, tokensPerSequence: seqTokens, kvBytesFor: kvFor }, [1, 4, 16]);
    }
    return { ctxSize, kvShape, chunkBytes, floorBytes, plan, pool };
  };
  // As loadModel: a default context shrinks to what the budget holds (engine/context-fit.ts).
  const fit = values['ctx-size'] === undefined && values['kv-floor'] === undefined;
  let at: ReturnType<typeof planAt> | undefined;
  let refused: unknown;
  for (const c of fit ? [defaultCtx, ...fittedContexts(defaultCtx)] : [defaultCtx]) {
    try {
      at = planAt(c);
      break;
    } catch (err) {
      if (!(fit && err instanceof InsufficientMemoryError)) throw err;
      refused = err;
    }
  }
  if (!at) throw refused;
  const { ctxSize, kvShape, chunkBytes, floorBytes, plan, pool } = at;
  if (values.json) {
    process.stdout.write(JSON.stringify({ model: path, fileSize: file.fileSize, ctxSize, parallel, hardwareSource: source, ...plan, ...(pool ? { pool } : {}) }, null, 2) + '\n');
  } else {
    const floorWhat = floorBytes === kvFloorBytes(kvShape, chunkBytes, MAX_BATCH_ROWS) ? `one sequence of ${ctxSize} tokens${kvShape.layerWindows ? '; sliding-window layers: their window and one batch' : ''}` : 'as set';
    process.stdout.write(formatPlan(plan, path, file.fileSize, { ctxSize, parallel, hardwareSource: source, ...(pool ? { kvWhat: `the elastic pool's floor at load: ${floorWhat}` } : {}) }));
    if (pool) process.stdout.write(formatPoolPlan(pool, floorWhat));
    if (ctxSize < defaultCtx) process.stdout.write(`\ncontext ${ctxSize} tokens: the most this budget holds beside the weights (default ${defaultCtx}; --ctx-size sets it)\n`);
  }
  return 0;
}

/** Text rendering of the elastic pool's figures and expected split. */
export function formatPoolPlan(p: PoolPlan, floorWhat: string): string {
  const lines = ['', 'elastic pool (--memory-pool static reserves KV for --parallel full-context sequences instead):'];
  lines.push(`  budget ${formatBytes(p.budget)} = scratch ${formatBytes(p.scratchBytes)} + KV floor ${formatBytes(p.floorBytes)} (${floorWhat}) + pool ${formatBytes(p.poolBytes)}`);
  lines.push(`  resident weights and KV above the floor share the pool; the weights go down to ${formatBytes(p.minWeightBytes)} (norms, the output matrix or its slice buffers, stream buffers) when KV needs it`);
  lines.push(`  a runtime reserve of ${formatBytes(p.runtimeBytes)} (the process's own memory) takes what KV leaves of the floor, then room in the pool`);
  if (p.readCacheBytes > 0) lines.push(`  the weights leave ${formatBytes(p.readCacheBytes)} of the pool to the page cache of buffered reads; KV above the floor takes it first`);
  const t = p.rows[0]?.tokensPerSequence ?? 0;
  lines.push(`  at most ${p.maxSequences} sequence${p.maxSequences === 1 ? '' : 's'} of ${t} tokens before preemption; expected split:`);
  const head = ['sequences', 'KV', 'resident', 'ring', 'read/token', 'predicted'];
  const rows = p.rows.map((r) =>
    r.fits
      ? [String(r.sequences), formatBytes(r.kvBytes), formatBytes(r.residentBytes), formatBytes(r.ringBytes), formatBytes(r.streamedBytesPerToken), `${r.predictedTokensPerSec.toFixed(2)} tok/s`]
      : [String(r.sequences), formatBytes(r.kvBytes), `(does not fit: the scheduler preempts beyond ${p.maxSequences})`, '', '', ''],
  );
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i]!.length > 30 ? 0 : r[i]!.length))));
  const fmt = (r: string[]) => '  ' + r.map((c, i) => (i === 0 ? c.padStart(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  lines.push(fmt(head));
  for (const r of rows) lines.push(fmt(r).trimEnd());
  lines.push('  (predicted: one stream; batched sequences share each streamed read)');
  return lines.join('\n') + '\n';
}
