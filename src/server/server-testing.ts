/**
 * Test helper: a synthetic model served on loopback, with an openai client. @internal
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { synthesize } from '../synth/synth.js';
import type { SynthPreset } from '../synth/presets.js';
import { loadModel, type Model } from '../index.js';
import { createServer, type FlexinferServer } from './server.js';

export interface TestServer {
  model: Model;
  server: FlexinferServer;
  /** http://127.0.0.1:PORT */
  base: string;
  client: OpenAI;
  close(): Promise<void>;
}

/** Synthesizes `preset` (q8_0, `seed`), loads it and serves it as model id `modelId`. */
export async function startTestServer(options: { modelId: string; seed: number; preset?: string | SynthPreset; contextSize?: number; parallel?: number }): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'flexinfer-test-server-'));
  const path = join(dir, 'model.gguf');
  const parallel = options.parallel ?? 4;
  await synthesize(path, options.preset ?? 'tiny-15m', 'q8_0', { seed: options.seed });
  const model = await loadModel(path, { threads: 2, contextSize: options.contextSize ?? 512, parallel });
  const server = createServer(model, { modelId: options.modelId, port: 0, parallel });
  const base = await server.listen();
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
  return {
    model,
    server,
    base,
    client,
    async close() {
      await server.close();
      await model.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
