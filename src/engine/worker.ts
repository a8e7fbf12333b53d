/**
 * The engine worker: hosts the tokenizer, weight store, KV manager, model and the step loop,
 * so compute never blocks the main thread's event loop. The main thread talks to it with
 * messages (see protocol.ts); logits come back as transferred Float32Arrays.
 *
 * The step loop runs one scheduler step per macrotask (setImmediate), so abort, new requests
 * and stats queries are handled between forward passes.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readGgufSync } from '../gguf/reader.js';
import { createTransformer, modelConfigFromGguf } from '../models/registry.js';
import { expertPlanSummary, type MoePlan } from '../weights/expert-plan.js';
import { tokenizerFromGguf } from '../tokenizer/index.js';
import { setThreads } from '../native/index.js';
import { Scheduler, admitAheadFromEnv, maxPauseStepsFromEnv } from './scheduler.js';
import { GrammarEngine } from '../grammar/engine.js';
import { createFittedMemory } from './context-fit.js';
import { maxLogitRowsFor } from './memory.js';
import type { StepMeasure } from './memory-pool.js';
import { serializeError, type FromWorker, type ToWorker, type WorkerInit } from './protocol.js';

const port = parentPort!;
const init = workerData as WorkerInit;

function post(msg: FromWorker, transfer?: ArrayBuffer[]): void {
  port.postMessage(msg, transfer);
}

async function start(): Promise<void> {
  const file = readGgufSync(init.path);
  const config = modelConfigFromGguf(file);
  const tokenizer = tokenizerFromGguf(file);
  setThreads(init.threads);

  const maxLogitRows = maxLogitRowsFor(init.parallel, init.maxBatchRows, config.vocabSize);
  // The memory budget covers weights + KV + scratch: a static split, or the elastic pool.
  // A default context shrinks to what the budget holds (context-fit.ts).
  const { memory, contextSize } = await createFittedMemory(file, config, init, (loadedBytes, totalBytes) => post({ type: 'progress', loadedBytes, totalBytes }));
  const { store, kv } = memory;
  const model = createTransformer(config, store, kv, { maxRows: init.maxBatchRows, maxLogitRows });

  const scheduler = new Scheduler({
    model,
    kv,
    tokenizer,
    vocabSize: config.vocabSize,
    contextSize,
    maxRunning: init.parallel,
    prefixCache: init.prefixCache,
    maxPauseSteps: maxPauseStepsFromEnv(),
    admitAheadTokens: admitAheadFromEnv(),
    events: {
      chunk: (id, text, tokens, logprobs) => post({ type: 'chunk', id, text, tokens, ...(logprobs ? { logprobs } : {}) }),
      done: (id, result) => post({ type: 'done', id, result }),
      logits: (id, logits, numRows) => post({ type: 'logits', id, logits, numRows }, [logits.buffer as ArrayBuffer]),
      failed: (id, error) => post({ type: 'error', id, error: serializeError(error) }),
    },
  });

  // Constrained decoding: the grammar engine starts on the first request that needs it.
  let grammars: GrammarEngine | null = null;
  const grammarEngine = (): GrammarEngine => {
    if (grammars) return grammars;
    // Control, unknown and unused tokens never appear as text; end-of-generation tokens are
    // the engine's stop tokens (allowed once the output is complete).
    const types = file.get('tokenizer.ggml.token_type') as ArrayLike<number> | undefined;
    const numTokens = (file.get('tokenizer.ggml.tokens') as unknown[] | undefined)?.length ?? 0;
    const stopTokens: number[] = [];
    for (let t = 0; t < Math.min(numTokens, config.vocabSize); t++) if (tokenizer.isEog(t)) stopTokens.push(t);
    const empty = new Uint8Array(0);
    grammars = new GrammarEngine({
      vocabSize: config.vocabSize,
      stopTokens,
      tokenBytes: (t) => {
        if (t >= numTokens || tokenizer.isEog(t)) return empty;
        const type = types?.[t] ?? 1;
        return type === 2 || type === 3 || type === 5 ? empty : tokenizer.tokenBytes(t);
      },
    });
    return grammars;
  };
  // Requests aborted while their grammar compiled.
  const abortedEarly = new Set<number>();
  const compiling = new Set<number>();

  function weightStats(): Record<string, unknown> {
    const plan = memory.plan();
    const st = store as unknown as { stats?: () => Record<string, unknown>; residentBytes?: number; locked?: boolean };
    // MoE stores report the expert cache beside the dense store's counters.
    const { experts: expertStats, ...streaming } = st.stats?.() ?? {};
    const moe = (plan as Partial<MoePlan>).experts;
    return {
      mode: moe && !moe.allResident ? 'experts' : plan.numSlots > 0 || plan.outputSlices ? 'streaming' : 'resident',
      plan: {
        budget: plan.budget,
        strategy: plan.strategy,
        split: plan.split,
        residentBytes: plan.residentBytes,
        streamedBytesPerToken: plan.streamedBytesPerToken,
        ...(plan.outputSlices ? { outputSlices: { numSlices: plan.outputSlices.numSlices, sliceRows: plan.outputSlices.sliceRows, bufferBytes: plan.outputSlices.bufferBytes } } : {}),
      },
      ...(Object.keys(streaming).length > 0 ? { streaming } : {}),
      ...(moe ? { experts: { ...expertPlanSummary(moe), ...(expertStats ?? {}) } } : {}),
      ...(st.residentBytes !== undefined ? { residentBytes: st.residentBytes, locked: st.locked } : {}),
    };
  }

  // One step per macrotask while there is work. Between steps the memory pool may move weights
  // (betweenPasses); while idle it finishes promotions on a timer.
  let pumping = false;
  let last: StepMeasure | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  const idleTick = (): void => {
    idleTimer = undefined;
    if (!pumping && memory.idle()) idleTimer = setTimeout(idleTick, 50);
  };
  const pump = (): void => {
    try {
      if (scheduler.idle) {
        pumping = false;
        if (idleTimer === undefined) idleTick();
        return;
      }
      const before = scheduler.stats();
      const t0 = performance.now();
      memory.betweenPasses(last);
      scheduler.step();
      const after = scheduler.stats();
      last = { ms: performance.now() - t0, rows: after.rows - before.rows, prefixHitTokens: after.prefixHitTokens - before.prefixHitTokens };
    } catch (err) {
      // A failing forward pass is a bug or a broken store: nothing can continue.
      pumping = false;
      post({ type: 'error', id: null, error: serializeError(err) });
      return;
    }
    setImmediate(pump);
  };
  const kick = (): void => {
    if (!pumping) {
      pumping = true;
      setImmediate(pump);
    }
  };

  port.on('message', (msg: ToWorker) => {
    try {
      switch (msg.type) {
        case 'generate': {
          // n > 1: the other choices' ids; each choice gets its own constraint instance.
          const ids = [msg.id, ...msg.forks.map((f) => f.id)];
          type Constraint = Awaited<ReturnType<GrammarEngine['createConstraint']>>;
          const submit = (constraints: Constraint[] | null): void => {
            scheduler.submitGenerate(msg.id, msg.prompt, {
              maxTokens: msg.maxTokens,
              sampling: msg.sampling,
              stop: msg.stop,
              ignoreEos: msg.ignoreEos,
              logprobs: msg.logprobs,
              ...(constraints ? { constraint: constraints[0]! } : {}),
              forks: msg.forks.map((f, i) => ({ id: f.id, sampling: f.sampling, ...(constraints ? { constraint: constraints[i + 1]! } : {}) })),
            });
            kick();
          };
          if (!msg.grammar) {
            submit(null);
            break;
          }
          compiling.add(msg.id);
          const engine = grammarEngine();
          Promise.all(ids.map(() => engine.createConstraint(msg.grammar!)))
            .then(
              (constraints) => {
                if (abortedEarly.delete(msg.id)) {
                  for (const c of constraints) c.dispose();
                  for (const id of ids) post({ type: 'error', id, error: serializeError(new DOMException('This operation was aborted', 'AbortError')) });
                } else submit(constraints);
              },
              (err) => {
                abortedEarly.delete(msg.id);
                for (const id of ids) post({ type: 'error', id, error: serializeError(err) });
              },
            )
            .finally(() => compiling.delete(msg.id));
          break;
        }
        case 'evaluate':
          scheduler.submitEvaluate(msg.id, msg.tokens, msg.allLogits);
          kick();
          break;
        case 'embed':
          scheduler.submitEmbed(msg.id, msg.tokens, msg.pooling);
          kick();
          break;
        case 'abort':
          if (compiling.has(msg.id)) abortedEarly.add(msg.id);
          scheduler.abort(msg.id);
          break;
        case 'stats': {
          const mem = process.memoryUsage();
          post({
            type: 'stats',
            id: msg.id,
            stats: {
              scheduler: scheduler.stats(),
              kv: kv.stats(),
              ...(grammars ? { grammar: { ...grammars.counters } } : {}),
              weights: weightStats(),
              pool: memory.stats(msg.history === true),
              memory: { rss: mem.rss, arrayBuffers: mem.arrayBuffers, external: mem.external },
            },
          });
          break;
        }
        case 'dispose':
          clearTimeout(idleTimer);
          memory.dispose();
          post({ type: 'disposed' });
          break;
      }
    } catch (err) {
      post({ type: 'error', id: 'id' in msg ? msg.id : null, error: serializeError(err) });
    }
  });

  post({ type: 'ready', weights: weightStats(), contextSize });
}

start().catch((err) => post({ type: 'error', id: null, error: serializeError(err) }));
