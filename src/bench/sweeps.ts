import type { KvLayout } from '../kv/layouts.js';

/**
 * Parameter sweeps of `flexinfer bench`: each returns its JSON result, a printable table and
 * an SVG plot.
 */

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
  onLog: (line: string) => void;
}

export interface SweepOutput {
  result: unknown;
  table: string;
  svg: string;
}

export async function runSweep(mode: 'budget-sweep' | 'kv-sweep' | 'serve-sweep', path: string, o: SweepOptions): Promise<SweepOutput> {
  switch (mode) {
    case 'budget-sweep':
      return (await import('./budget-sweep.js')).runBudgetSweep(path, o);
    case 'kv-sweep':
      return (await import('./kv-sweep.js')).runKvSweep(path, o);
    case 'serve-sweep':
      return (await import('./serve-sweep.js')).runServeSweep(path, o);
  }
}
