/**
 * Which read path the streamer uses, decided between tokens from the run's own reads.
 *
 * NOTE: the calibration says which path was fastest when it was measured; the virtual disk
 * changes within minutes (DESIGN.md), and the streaming pattern (tensors with gaps, or nearly
 * sequential) is not the probes' pattern. So the selector starts on the calibration's best
 * path, measures every token's achieved rate (bytes read / wall time with reads in flight)
 * and now and then tries each other candidate for a few tokens:
 *
 *   exploit best ──(exploreEvery tokens, the first time firstExplore; or two tokens slower by `drift`)──> settle 1 token on the
 *   other path (the ring still holds reads of the old one) ──> measure `exploreTokens` tokens
 *   ──> exploit whichever estimate is higher
 *
 * Each candidate keeps its own turn: the number of exploit tokens until it is tried again. A
 * candidate that lost by more than 20% is tried half as often next time (up to every 256
 * tokens), so a clearly worse path costs little; one that came close is tried again soon.
 * (Before 2026-12-06 09:10 the next turn was the soonest of all candidates' intervals and went
 * to the least-measured one, so with three candidates a clearly slower buffered path was
 * still tried every ~34 tokens: 3 turns in a 100-token run, each ~170-250 ms.)
 *
 * The first turn comes early (token 3 after the warm-up, not 16) for a path of the other kind
 * (O_DIRECT vs buffered) whose probe figure (prior) is at least the start's, and for one of
 * the start's kind (another depth: such a turn costs little) unless its prior is clearly lower.
 * A path of the other kind without a prior or with a lower one waits exploreEvery tokens, one
 * whose prior is clearly lower 4 x exploreEvery. (The probes run outside the budget's cgroup,
 * where buffered reads have the page cache to themselves: their figure flatters buffered.)
 * Measured (issue-9 notes, session 9, tinyllama-1.1b Q8_0, quiet, FLEXINFER_IO_TRACE): with the
 * ring's 2 MiB pages O_DIRECT read 4-5.8 GB/s in the runs while the early buffered turn read
 * 1.0-2.3 GB/s: that one token took 310-430 ms against 130-180 ms, ~9% of a 16-token bench
 * run at 75%, and its read-ahead left 70-80 MB of page cache that kept the budget's cgroup at
 * its limit for the rest of the run (70-80 thousand limit hits per 100 tokens; the store now
 * drops it after a buffered stretch). The early turn was worth it with 4 KiB ring pages, when
 * buffered@8 read 3.7 GB/s at 25% against O_DIRECT's 2.4-2.6 (2026-12-06 00:54): then the
 * probes had buffered well above O_DIRECT, which still earns the early turn.
 * Pure policy: no I/O here.
 */
import type { ReadPath } from './probe.js';

/** What one token's O_DIRECT or buffered reads achieved. */
export interface PathSample {
  direct: boolean;
  bytes: number;
  /** Wall time with at least one read of this path in flight. */
  busySec: number;
}

/** Options of ReadPathSelector. */
export interface ReadPathSelectorOptions {
  /** Tokens between explorations (default 16; doubled after a clear loss). */
  exploreEvery?: number;
  /** Exploit tokens before the first turn of a candidate likely to win or cheap to lose (default 3; see NOTE). */
  firstExplore?: number;
  /** Tokens measured on a candidate when exploring (default 1). */
  exploreTokens?: number;
  /** Tokens ignored at the start (the ring's first fill; default 1). */
  warmupTokens?: number;
  /** Explore early when a token's rate falls this far below the current estimate (default 0.3). */
  drift?: number;
  /** Samples with fewer bytes carry no rate (default 1 MiB). */
  minBytes?: number;
}

interface Candidate {
  path: ReadPath;
  /** EWMA of per-token rates (bytes/s), 0 = never measured. */
  estimate: number;
  samples: number;
  /** The probe's figure, if any (orders drift turns before a candidate is measured). */
  prior: number;
  /** Interval between this candidate's turns (exploit tokens; doubled after a clear loss). */
  every: number;
  /** Exploit tokens left until this candidate's next turn. */
  due: number;
}

const EWMA = 0.5;
const MAX_EVERY = 256;
const CLEAR_LOSS = 0.8;

/** Picks the read path between tokens (see NOTE). */
export class ReadPathSelector {
  readonly #cands: Candidate[];
  readonly #o: Required<ReadPathSelectorOptions>;
  #best: number;
  #current: number;
  #phase: 'warmup' | 'exploit' | 'explore' = 'warmup';
  #phaseTokens = 0;
  /** Consecutive tokens whose rate fell below (1 - drift) x the estimate. */
  #fallen = 0;
  #switches = 0;

  /**
   * `candidates[start]` is where the run begins (the calibration's best); `prior` is a
   * candidate's probe figure (bytes/s), which only schedules its first turn.
   */
  constructor(candidates: ReadonlyArray<ReadPath & { prior?: number }>, start = 0, options: ReadPathSelectorOptions = {}) {
    if (candidates.length === 0) throw new RangeError('ReadPathSelector: no candidate paths');
    if (!(start >= 0 && start < candidates.length)) throw new RangeError(`ReadPathSelector: start ${start} is not a candidate`);
    this.#o = { exploreEvery: 16, firstExplore: 3, exploreTokens: 1, warmupTokens: 1, drift: 0.3, minBytes: 1 << 20, ...options };
    const first = candidates[start]!;
    const { exploreEvery, firstExplore } = this.#o;
    this.#cands = candidates.map((c) => {
      const clearLoser = c.prior !== undefined && first.prior !== undefined && c.prior < CLEAR_LOSS * first.prior;
      const every = clearLoser ? 4 * exploreEvery : exploreEvery;
      // See NOTE: an early first turn where it is likely to win or cheap to lose.
      const early = c.direct === first.direct ? !clearLoser : c.prior !== undefined && first.prior !== undefined && c.prior >= first.prior;
      return { path: { direct: c.direct, depth: c.depth }, estimate: 0, samples: 0, prior: c.prior ?? 0, every, due: early ? Math.min(every, firstExplore) : every };
    });
    this.#best = this.#current = start;
    if (this.#o.warmupTokens === 0) this.#phase = 'exploit';
  }

  /** The path reads should take now. */
  get current(): ReadPath {
    return this.#cands[this.#current]!.path;
  }

  /** The path the selector exploits between explorations (the best measured so far). */
  get best(): ReadPath {
    return this.#cands[this.#best]!.path;
  }

  /** Times the path changed. */
  get switches(): number {
    return this.#switches;
  }

  /** What each candidate achieved (EWMA of per-token rates; 0 = not measured yet). */
  estimates(): Array<ReadPath & { bytesPerSec: number; samples: number }> {
    return this.#cands.map((c) => ({ ...c.path, bytesPerSec: c.estimate, samples: c.samples }));
  }

  /**
   * One token's reads: a sample per kind of read (O_DIRECT, buffered); the one of the current
   * path's kind counts. Returns the path for the next token's reads.
   */
  onToken(samples: readonly PathSample[]): ReadPath {
    const cur = this.#cands[this.#current]!;
    // The current path's sample (reads queued before a switch may add a sample of the old one).
    const mine = samples.find((s) => s.direct === cur.path.direct);
    const rate = mine && mine.bytes >= this.#o.minBytes && mine.busySec > 0 ? mine.bytes / mine.busySec : 0;
    this.#phaseTokens++;
    switch (this.#phase) {
      case 'warmup':
        if (this.#phaseTokens >= this.#o.warmupTokens) this.#enter('exploit');
        break;
      case 'explore':
        this.#record(cur, rate);
        if (this.#phaseTokens >= this.#o.exploreTokens) this.#finishExplore();
        break;
      case 'exploit': {
        const before = cur.estimate;
        this.#record(cur, rate);
        for (const c of this.#others()) c.due--;
        // Two slow tokens in a row (one is noise on this disk) mean the path got slower.
        this.#fallen = rate > 0 && before > 0 && rate < (1 - this.#o.drift) * before ? this.#fallen + 1 : 0;
        if (this.#cands.length > 1) {
          if (this.#fallen >= 2) this.#startExplore(this.#mostPromising());
          else {
            const due = this.#mostOverdue();
            if (due.due <= 0) this.#startExplore(due);
          }
        }
        break;
      }
    }
    return this.current;
  }

  #record(c: Candidate, rate: number): void {
    if (!(rate > 0)) return;
    c.estimate = c.samples === 0 ? rate : EWMA * rate + (1 - EWMA) * c.estimate;
    c.samples++;
  }

  #enter(phase: 'exploit' | 'explore'): void {
    this.#phase = phase;
    this.#phaseTokens = 0;
    if (phase === 'exploit') this.#fallen = 0;
  }

  /** The candidates other than the best. */
  #others(): Candidate[] {
    return this.#cands.filter((_, i) => i !== this.#best);
  }

  /** The other candidate whose turn is most overdue (then the least measured). */
  #mostOverdue(): Candidate {
    return this.#others().reduce((a, b) => (b.due < a.due || (b.due === a.due && b.samples < a.samples) ? b : a));
  }

  /** After a drift: the other candidate likeliest to be faster now (estimate, else prior). */
  #mostPromising(): Candidate {
    return this.#others().reduce((a, b) => ((b.estimate || b.prior) > (a.estimate || a.prior) ? b : a));
  }

  #startExplore(c: Candidate): void {
    this.#switchTo(this.#cands.indexOf(c));
    this.#enter('explore');
  }

  #finishExplore(): void {
    const tried = this.#cands[this.#current]!;
    const best = this.#cands[this.#best]!;
    const [winner, loser] = tried.estimate > best.estimate ? [this.#current, this.#best] : [this.#best, this.#current];
    const w = this.#cands[winner]!;
    const l = this.#cands[loser]!;
    // The loser is tried again soon if it came close, half as often if it lost clearly.
    l.every = l.estimate < CLEAR_LOSS * w.estimate ? Math.min(MAX_EVERY, l.every * 2) : this.#o.exploreEvery;
    l.due = l.every;
    this.#best = winner;
    this.#switchTo(winner);
    this.#enter('exploit');
  }

  #switchTo(i: number): void {
    if (i !== this.#current) this.#switches++;
    this.#current = i;
  }
}
