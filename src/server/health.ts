/**
 * What GET /health answers: the server's state (loading -> ready -> draining, or failed with a
 * reason) and named checks that can make a ready server unhealthy (e.g. the model file changed
 * under it). Routers and Kubernetes probes read only the status code: 200 when ready and every
 * check passes, 503 otherwise; the body says why.
 */

export type HealthState = 'loading' | 'ready' | 'draining' | 'failed';

/** A named condition of a ready server: returns null when fine, else the reason it is not. */
export type HealthCheck = () => string | null;

/** Body of /health. `status` is 'ok' | 'loading' | 'draining' | 'error' | 'unhealthy'. */
export interface HealthBody {
  status: string;
  error?: string;
  failing?: Record<string, string>;
}

export class ServerHealth {
  private current: HealthState = 'loading';
  private failure: string | null = null;
  private readonly checks = new Map<string, HealthCheck>();

  get state(): HealthState {
    return this.current;
  }

  /** The reason of a failed state, or null. */
  get reason(): string | null {
    return this.failure;
  }

  /** The model is loaded (no effect once draining or failed). */
  setReady(): void {
    if (this.current === 'loading') this.current = 'ready';
  }

  /** The server cannot serve (the model failed to load, ...). */
  setFailed(reason: string): void {
    this.current = 'failed';
    this.failure = reason;
  }

  /** Shutting down: no new work; /health turns 503 at once. */
  setDraining(): void {
    if (this.current !== 'failed') this.current = 'draining';
  }

  /** Adds (or replaces) a named check; it counts only while the state is 'ready'. */
  addCheck(name: string, check: HealthCheck): void {
    this.checks.set(name, check);
  }

  removeCheck(name: string): void {
    this.checks.delete(name);
  }

  /** Failing checks by name (empty when all pass). */
  failingChecks(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, check] of this.checks) {
      let reason: string | null;
      try {
        reason = check();
      } catch (err) {
        reason = `check threw: ${(err as Error).message}`;
      }
      if (reason !== null) out[name] = reason;
    }
    return out;
  }

  /** The HTTP status and body of /health. */
  report(): { code: 200 | 503; body: HealthBody } {
    switch (this.current) {
      case 'loading':
        return { code: 503, body: { status: 'loading' } };
      case 'draining':
        return { code: 503, body: { status: 'draining' } };
      case 'failed':
        return { code: 503, body: { status: 'error', error: this.failure ?? 'unknown failure' } };
      case 'ready': {
        const failing = this.failingChecks();
        const names = Object.keys(failing);
        if (names.length === 0) return { code: 200, body: { status: 'ok' } };
        return { code: 503, body: { status: 'unhealthy', error: names.map((n) => `${n}: ${failing[n]}`).join('; '), failing } };
      }
    }
  }
}
