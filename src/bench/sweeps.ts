import type { KvLayout } from '../kv/layouts.js';

/**
 * Parameter sweeps of `flexinfer bench`: each returns its JSON result, a printable table and
 * an SVG plot.
 */

import type { ExpertOptions } from '../engine/model.js';
import { readGgufSync } from '../gguf/reader.js';
import { moeShape } from '../weights/create-moe.js';

export interface SweepOptions {
  threads: number;
  runs: number;
  genTokens: number;
  promptTokens: number;
  noLlamaCpp: boolean;
  kv?: KvLayout;
  /** --kv-sweep: the parts to measure in this run (default all). */
  kvParts?: import('./kv-sweep.js').KvSweepPart[];
  /** --kv-sweep: earlier partial results (JSON files) merged into this run's output. */
  kvMerge?: string[];
  /** --serve-sweep with a budget, --parallel and --ctx-size: elastic pool vs static split. */
  memoryBudget?: string;
  parallel?: number;
  ctxSize?: number;
  /** --serve-sweep with a budget: measure only these configurations; take the rest from `resume`. */
  serveConfigs?: readonly import('./serve-elastic.js').ServeConfig[];
  resume?: import('./serve-elastic.js').ResumeFrom;
  /** Budget sweep: budgets in % of the file (default 100/75/50/25, MoE 100/50/25/12.5). */
  budgets?: number[];
  /** MoE models: expert-cache options of flexinfer's runs. */
  experts?: ExpertOptions;
  /** MoE budget sweep: sample at temperature 1 with this seed (both engines) instead of greedy. */
  sampleSeed?: number;
  /** Longest a llama.cpp run may take (default as flexinfer's). */
  llamaCppTimeoutMs?: number;
  onLog: (line: string) => void;
}

export interface SweepOutput {
  result: unknown;
  table: string;
  svg: string;
  /** More plots, written beside the main one as <plot>-<suffix>.svg. */
  extraSvgs?: Record<string, string>;
}

export async function runSweep(mode: 'budget-sweep' | 'kv-sweep' | 'serve-sweep', path: string, o: SweepOptions): Promise<SweepOutput> {
  switch (mode) {
    case 'budget-sweep':
      // Mixture-of-Experts files: the expert cache's sweep (hit rates, bytes per token).
      if (moeShape(readGgufSync(path))) return (await import('./moe-sweep.js')).runMoeBudgetSweep(path, o);
      return (await import('./budget-sweep.js')).runBudgetSweep(path, o);
    case 'kv-sweep':
      return (await import('./kv-sweep.js')).runKvSweep(path, o);
    case 'serve-sweep':
      if (o.memoryBudget !== undefined && o.parallel !== undefined && o.ctxSize !== undefined) {
        return (await import('./serve-elastic.js')).runElasticServeSweep(path, {
          ...o,
          memoryBudget: o.memoryBudget,
          parallel: o.parallel,
          ctxSize: o.ctxSize,
          ...(o.serveConfigs ? { configs: o.serveConfigs } : {}),
        });
      }
      return (await import('./serve-sweep.js')).runServeSweep(path, o);
  }
}
