/**
 * Graceful drain for rolling updates: once started, new generation requests are refused (503 +
 * Retry-After, so a router retries them on another replica), the requests in flight run to their
 * end, and only when they are done, or at the timeout, or when forced (a second SIGTERM), the
 * ones still running are cut: their abort signal carries a ShutdownError, and the handler answers
 * them with an OpenAI-shaped error (a stream gets an error event and [DONE]).
 */
import { ApiError } from './errors.js';

/** The abort reason of a request cut by a shutdown. */
export class ShutdownError extends Error {
  constructor(message = 'The server is shutting down; retry the request.') {
    super(message);
    this.name = 'ShutdownError';
  }
}

/** True when a request's abort signal was fired by a shutdown (not by its client). */
export function isShutdown(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason instanceof ShutdownError;
}

/** The error a request cut by a shutdown ends with. */
export function shutdownApiError(): ApiError {
  return new ApiError(503, 'The server shut down before this request finished; retry it.', 'service_unavailable', null, 'server_shutting_down');
}

/** How a drain ended. */
export interface DrainResult {
  /** Requests still running when the drain ended (cut with an error). */
  numCut: number;
  /** True when every request finished on its own. */
  clean: boolean;
  ms: number;
}

/** Tracks in-flight requests (their AbortControllers) and runs the drain. */
export class Drain {
  private readonly active = new Set<AbortController>();
  private started = false;
  private idleWaiters: Array<() => void> = [];
  private forceNow: (() => void) | null = null;
  private forced = false;
  private running: Promise<DrainResult> | null = null;

  get draining(): boolean {
    return this.started;
  }

  get numActive(): number {
    return this.active.size;
  }

  /** Registers a running request; call the returned function when it has answered. */
  track(abort: AbortController): () => void {
    this.active.add(abort);
    return () => {
      this.active.delete(abort);
      if (this.active.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    };
  }

  /** The 503 a new request gets while draining. */
  refusal(): ApiError {
    return new ApiError(503, 'The server is shutting down; retry on another replica.', 'service_unavailable', null, 'server_shutting_down');
  }

  /**
   * Starts the drain (idempotent: a second call returns the same promise). Resolves when no
   * request is in flight any more; requests still running after `timeoutMs` or force() are cut.
   */
  drain(timeoutMs: number): Promise<DrainResult> {
    if (this.running) return this.running;
    this.started = true;
    const t0 = performance.now();
    this.running = (async () => {
      let numCut = 0;
      if (this.active.size > 0 && !this.forced) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          this.idleWaiters.push(resolve);
          this.forceNow = resolve;
          timer = setTimeout(resolve, Math.max(0, timeoutMs));
        });
        clearTimeout(timer);
      }
      if (this.active.size > 0) {
        numCut = this.active.size;
        for (const a of this.active) a.abort(new ShutdownError());
        // The handlers answer with the error and untrack themselves.
        await new Promise<void>((resolve) => (this.active.size === 0 ? resolve() : this.idleWaiters.push(resolve)));
      }
      return { numCut, clean: numCut === 0, ms: performance.now() - t0 };
    })();
    return this.running;
  }

  /** Ends the wait at once: requests still running are cut (second SIGTERM). */
  force(): void {
    this.forced = true;
    this.forceNow?.();
  }
}
