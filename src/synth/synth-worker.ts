/**
 * Worker thread body for parallel synthesis: generates one planned tensor's bytes per message
 * and hands the buffer back (transferred, not copied). @internal
 */
import { parentPort } from 'node:worker_threads';
import type { SynthTensor } from './plan.js';
import { synthTensorData } from './synth.js';

export interface SynthJob {
  id: number;
  tensor: SynthTensor;
  seed: number;
  referenceQuant: boolean;
}

export type SynthJobResult = { id: number; data: Uint8Array } | { id: number; error: string };

const scratch = new Float32Array((1 << 20) + 65536);

parentPort!.on('message', (job: SynthJob) => {
  try {
    const data = synthTensorData(job.tensor, job.seed, scratch, job.referenceQuant);
    parentPort!.postMessage({ id: job.id, data } satisfies SynthJobResult, [data.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: (err as Error).stack ?? String(err) } satisfies SynthJobResult);
  }
});
