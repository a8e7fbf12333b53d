/**
 * `flexinfer bench MODEL [...]`: flexinfer and llama.cpp side by side on the same file.
 *
 *   (default)        prompt processing + generation tokens/s, medians of --runs, ratios
 *   --budget-sweep   generation tokens/s at 100/75/50/25% memory budgets, in cgroups, cold cache
 *   --kv-sweep       KV memory, attention kernels and decode speed, vtensor vs paged vs contiguous; multi-turn TTFT
 *   --serve-sweep    aggregate tokens/s and TTFT with 1/4/8/16 concurrent streams
 *   --json-schema    decode tokens/s with a JSON-Schema constraint vs without; llama.cpp GBNF
 *
 * Every mode prints a table, writes JSON (--json prints it to stdout instead of the table;
 * --out FILE also saves it) and, for sweeps, an SVG plot (--plot FILE).
 */
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { InvalidOptionError } from '../errors.js';
import { loadOptionsFrom, numberOption } from './args.js';
import { KV_LAYOUTS, type KvLayout } from '../kv/layouts.js';

const HELP = `Usage: flexinfer bench MODEL [options]

Measures flexinfer and llama.cpp (node-llama-cpp, same file, same threads) in the same run.

Options:
  --threads N          compute threads (default: all cores)
  --prompt-tokens P    prompt length for prompt processing (default 128)
  --gen-tokens G       tokens to generate (default 64)
  --runs R             runs per engine; medians are reported (default 5)
  --memory-budget X    flexinfer memory budget (bytes, 1.5GiB, 60%)
  --kv LAYOUT          vtensor | paged | contiguous
  --no-llamacpp        measure flexinfer only
  --budget-sweep       tokens/s at 100/75/50/25% budgets (cgroup-limited, cold page cache),
                       with the storage probed before and after each budget point; for MoE
                       models 100/50/25/12.5% with the expert cache's hit rate, bytes read per
                       token and % of flexinfer's I/O bound
  --budgets LIST       budget sweep: only these points, e.g. 75,50 or 25,12.5 (to sweep in parts)
  --llamacpp-timeout S budget sweep: stop a llama.cpp run after S seconds (reported as timeout)
  --sample-seed N      MoE budget sweep: both engines sample (temperature 1, seed N) instead of
                       greedy: random-weight files repeat one greedy token, whose experts then
                       always hit; sampled tokens route as the file does (near uniform)
  --expert-cache MODE, --expert-policy P, --no-expert-prefetch, --expert-lookahead N
                       MoE expert cache (see run --help)
  --kv-sweep           KV cache memory, kernel and engine speed: vtensor vs paged vs contiguous
  --kv-parts LIST      with --kv-sweep: measure only these parts (memory,kernels,decode,chat)
  --kv-merge FILES     with --kv-sweep: merge earlier partial results (comma-separated JSON files)
                       into this run's JSON, table and plot (e.g. a sweep split into short runs)
  --serve-sweep        concurrent streams 1/4/8/16, without a budget and at 50%; with
                       --memory-budget X --parallel N --ctx-size C: the elastic memory pool
                       against the static split at that budget (both in cgroups)
  --parallel N         sequences the server runs at once (--serve-sweep with a budget)
  --ctx-size C         tokens per sequence (--serve-sweep with a budget)
  --configs LIST       --serve-sweep with a budget: measure only these of elastic, static,
                       llamacpp, llamacpp_budget (one per quiet run)
  --resume FILE        --serve-sweep with a budget: take the other configurations from an
                       earlier --out FILE of the same sweep (table and plots cover all)
  --merge LIST         budget sweep: no runs; one table and plot from the --out JSON files of
                       sweeps run in parts (comma-separated; MODEL may be left out)
  --json-schema        decode tok/s constrained by a JSON Schema vs free; mask share; llama.cpp GBNF
  --json               print the JSON result instead of the table
  --out FILE           also write the JSON result to FILE
  --plot FILE          SVG plot for sweeps (default: <mode>.svg next to --out, else ./bench-<mode>.svg)
`;

/** An integer flag >= min, or the default. */
function int(name: string, v: string | undefined, dflt: number, min: number): number {
  return numberOption(name, v, { min, integer: true }) ?? dflt;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      threads: { type: 'string' },
      'prompt-tokens': { type: 'string' },
      'gen-tokens': { type: 'string' },
      runs: { type: 'string' },
      'memory-budget': { type: 'string' },
      kv: { type: 'string' },
      parallel: { type: 'string' },
      'ctx-size': { type: 'string' },
      configs: { type: 'string' },
      resume: { type: 'string' },
      'no-llamacpp': { type: 'boolean' },
      'llamacpp-timeout': { type: 'string' },
      'sample-seed': { type: 'string' },
      'expert-cache': { type: 'string' },
      'expert-policy': { type: 'string' },
      'no-expert-prefetch': { type: 'boolean' },
      'expert-lookahead': { type: 'string' },
      'budget-sweep': { type: 'boolean' },
      budgets: { type: 'string' },
      merge: { type: 'string' },
      'kv-sweep': { type: 'boolean' },
      'kv-parts': { type: 'string' },
      'kv-merge': { type: 'string' },
      'serve-sweep': { type: 'boolean' },
      'json-schema': { type: 'boolean' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      plot: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.merge !== undefined) return mergeSweeps(values);
  if (positionals.length !== 1) throw new InvalidOptionError('MODEL', `expected one model file, got ${positionals.length}\n\n${HELP}`);
  const path = positionals[0]!;
  const threads = int('threads', values.threads, availableParallelism(), 1);
  const kv = values.kv as KvLayout | undefined;
  if (kv !== undefined && !(KV_LAYOUTS as readonly string[]).includes(kv)) throw new InvalidOptionError('--kv', `must be one of ${KV_LAYOUTS.join(', ')}, got '${kv}'`);
  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const modes = (['budget-sweep', 'kv-sweep', 'serve-sweep', 'json-schema'] as const).filter((m) => values[m]);
  if (modes.length > 1) throw new InvalidOptionError('--*-sweep', 'choose one mode per run');
  const mode = (modes[0] ?? 'speed') as 'speed' | (typeof modes)[number];
  if ((values['kv-parts'] !== undefined || values['kv-merge'] !== undefined) && mode !== 'kv-sweep') {
    throw new InvalidOptionError('--kv-parts / --kv-merge', 'only apply to --kv-sweep');
  }

  let result: unknown;
  let table: string;
  let svg: string | undefined;
  let extraSvgs: Record<string, string> = {};
  if (mode === 'speed') {
    const { runSpeedBench } = await import('../bench/speed.js');
    const r = await runSpeedBench(path, {
      threads,
      promptTokens: int('prompt-tokens', values['prompt-tokens'], 128, 1),
      genTokens: int('gen-tokens', values['gen-tokens'], 64, 2),
      runs: int('runs', values.runs, 5, 1),
      noLlamaCpp: values['no-llamacpp'] ?? false,
      memoryBudget: values['memory-budget'],
      kv,
      onLog: log,
    });
    result = r;
    table = speedTable(r);
  } else if (mode === 'json-schema') {
    const { runJsonSchemaBench, jsonSchemaTable } = await import('../bench/json-schema.js');
    const r = await runJsonSchemaBench(path, {
      threads,
      runs: int('runs', values.runs, 3, 1),
      genTokens: int('gen-tokens', values['gen-tokens'], 48, 2),
      noLlamaCpp: values['no-llamacpp'] ?? false,
      onLog: log,
    });
    result = r;
    table = jsonSchemaTable(r);
  } else {
    const sweeps = await import('../bench/sweeps.js');
    const kvMerge = values['kv-merge']?.split(',').filter((f) => f !== '');
    const kvParts = mode === 'kv-sweep' ? (await import('../bench/kv-sweep.js')).parseKvParts(values['kv-parts'] ?? (kvMerge?.length ? '' : undefined)) : undefined;
    if (kvParts?.length === 0 && !kvMerge?.length) throw new InvalidOptionError('--kv-parts', `choose at least one of memory, kernels, decode, chat`);
    const serve = await serveSweepOptions(values.configs, values.resume);
    const budgets = values.budgets?.split(',').map((b) => numberOption('budgets', b.trim().replace(/%$/, ''), { min: 1, max: 1000 })!);
    const out = await sweeps.runSweep(mode, path, {
      threads,
      runs: int('runs', values.runs, 3, 1),
      genTokens: int('gen-tokens', values['gen-tokens'], 32, 2),
      promptTokens: int('prompt-tokens', values['prompt-tokens'], 128, 1),
      noLlamaCpp: values['no-llamacpp'] ?? false,
      kv,
      ...(kvParts && { kvParts }),
      ...(kvMerge && { kvMerge }),
      ...(values['memory-budget'] !== undefined ? { memoryBudget: values['memory-budget'] } : {}),
      ...(values.parallel !== undefined ? { parallel: int('parallel', values.parallel, 1, 1) } : {}),
      ...(values['ctx-size'] !== undefined ? { ctxSize: int('ctx-size', values['ctx-size'], 64, 16) } : {}),
      ...serve,
      ...(budgets ? { budgets } : {}),
      ...(values['llamacpp-timeout'] !== undefined ? { llamaCppTimeoutMs: 1000 * numberOption('llamacpp-timeout', values['llamacpp-timeout'], { min: 1 })! } : {}),
      ...(values['sample-seed'] !== undefined ? { sampleSeed: int('sample-seed', values['sample-seed'], 0, 0) } : {}),
      ...(loadOptionsFrom(values).experts ? { experts: loadOptionsFrom(values).experts! } : {}),
      onLog: log,
    });
    extraSvgs = out.extraSvgs ?? {};
    result = out.result;
    table = out.table;
    svg = out.svg;
  }
  return writeResult(values, mode, { result, table, svg, extraSvgs });
}

type Values = { out?: string; plot?: string; json?: boolean; merge?: string; 'budget-sweep'?: boolean };

/** Writes --out and the plot, prints the table (or the JSON with --json). */
function writeResult(values: Values, mode: string, o: { result: unknown; table: string; svg?: string | undefined; extraSvgs?: Record<string, string> }): number {
  const json = JSON.stringify(o.result, null, 2);
  if (values.out) writeFileSync(values.out, json + '\n');
  if (o.svg) {
    const plotPath = values.plot ?? (values.out ? values.out.replace(/\.json$/, '') + '.svg' : `bench-${mode}.svg`);
    writeFileSync(plotPath, o.svg);
    process.stderr.write(`plot: ${plotPath}\n`);
    for (const [suffix, extra] of Object.entries(o.extraSvgs ?? {})) {
      const p = plotPath.replace(/\.svg$/, '') + `-${suffix}.svg`;
      writeFileSync(p, extra);
      process.stderr.write(`plot: ${p}\n`);
    }
  }
  process.stdout.write(values.json ? json + '\n' : o.table);
  return 0;
}

/** --configs and --resume of the budgeted --serve-sweep, checked. */
async function serveSweepOptions(configs: string | undefined, resume: string | undefined): Promise<Pick<import('../bench/sweeps.js').SweepOptions, 'serveConfigs' | 'resume'>> {
  const { SERVE_CONFIGS } = await import('../bench/serve-elastic.js');
  const out: Pick<import('../bench/sweeps.js').SweepOptions, 'serveConfigs' | 'resume'> = {};
  if (configs !== undefined) {
    const list = configs.split(',').map((c) => c.trim());
    const bad = list.filter((c) => !(SERVE_CONFIGS as readonly string[]).includes(c));
    if (bad.length > 0 || list.length === 0) throw new InvalidOptionError('--configs', `unknown configuration '${bad.join(',')}'; choose from ${SERVE_CONFIGS.join(', ')}`);
    out.serveConfigs = list as typeof SERVE_CONFIGS[number][];
  }
  if (resume !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(resume, 'utf8'));
    } catch (e) {
      throw new InvalidOptionError('--resume', `cannot read ${resume} as JSON (${(e as Error).message}); pass the --out file of an earlier --serve-sweep with the same budget`);
    }
    const runs = (parsed as { runs?: unknown }).runs;
    if (typeof runs !== 'object' || runs === null) throw new InvalidOptionError('--resume', `${resume} has no "runs": pass the --out file of an earlier --serve-sweep with --memory-budget`);
    out.resume = parsed as import('../bench/serve-elastic.js').ResumeFrom;
  }
  return out;
}

/** --budget-sweep --merge a.json,b.json: one table and plot from sweeps run in parts. */
async function mergeSweeps(values: Values): Promise<number> {
  if (!values['budget-sweep']) throw new InvalidOptionError('--merge', 'merges budget sweeps: use it with --budget-sweep');
  const files = values.merge!.split(',').map((f) => f.trim()).filter((f) => f !== '');
  const parts = files.map((name) => {
    let text: string;
    try {
      text = readFileSync(name, 'utf8');
    } catch (e) {
      throw new InvalidOptionError('--merge', `cannot read ${name}: ${(e as Error).message}`);
    }
    try {
      return { name, json: JSON.parse(text) as unknown };
    } catch {
      throw new InvalidOptionError('--merge', `${name} is not JSON`);
    }
  });
  const { mergeBudgetSweeps } = await import('../bench/budget-sweep.js');
  return writeResult(values, 'budget-sweep', mergeBudgetSweeps(parts));
}

function speedTable(r: import('../bench/speed.js').SpeedBenchResult): string {
  const rows = [
    ['engine', 'prompt tok/s', 'gen tok/s'],
    ['flexinfer', r.flexinfer.prompt_tps.toFixed(1), r.flexinfer.gen_tps.toFixed(1)],
  ];
  if (r.llamacpp) rows.push(['llama.cpp', r.llamacpp.prompt_tps.toFixed(1), r.llamacpp.gen_tps.toFixed(1)]);
  if (r.llamacpp) rows.push(['ratio', `${r.ratio.prompt?.toFixed(2)}x`, `${r.ratio.gen?.toFixed(2)}x`]);
  const w = [10, 14, 12];
  const lines = rows.map((row) => row.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' '));
  let out = `${r.model}: ${r.prompt_tokens}-token prompt, ${r.gen_tokens} generated, ${r.threads} threads, median of ${r.runs}\n`;
  out += lines.join('\n') + '\n';
  out += `flexinfer weight bandwidth during generation: ${r.flexinfer.weight_gb_per_s} GB/s\n`;
  if (!r.llamacpp) out += `llama.cpp not measured: ${r.llamacpp_error ?? 'disabled with --no-llamacpp'}\n`;
  return out;
}
