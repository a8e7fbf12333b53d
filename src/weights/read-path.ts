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
 * A candidate that lost by more than 20% is tried half as often next time (up to every 256
 * tokens), so a clearly worse path costs little; one that came close is tried again soon.
 * The first turn comes early (token 3 after the warm-up, not 16): a short run would otherwise
 * never look. tinyllama-1.1b Q8_0, interleaved quiet runs of 16 tokens (issue-9 notes,
 * 2026-12-06 00:54): at 25% buffered@8 read 3.7 GB/s inside the budget's cgroup against
 * O_DIRECT@32's 2.4-2.6, and the early turn found it (3.43 / 3.09 / 3.44 tok/s against
 * 2.57 / 2.75 / 2.68); at 75% buffered read 1.4-1.7 GB/s, so the turn cost one slow token
 * (9.54 / 8.70 / 9.64 against 10.33 / 10.06 / 7.27).
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
  /** Exploit tokens before the first exploration (default 3; later ones every exploreEvery). */
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
  /** Tokens of exploitation before this candidate is tried again. */
  every: number;
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
  #sinceExplore = 0;
  #nextExplore = 0;
  /** Consecutive tokens whose rate fell below (1 - drift) x the estimate. */
  #fallen = 0;
  #switches = 0;
  /** Whether any exploration has started. */
  #explored = false;

  /**
   * `candidates[start]` is where the run begins (the calibration's best); `prior` is a
   * candidate's probe figure (bytes/s), which only schedules its first turn.
   */
  constructor(candidates: ReadonlyArray<ReadPath & { prior?: number }>, start = 0, options: ReadPathSelectorOptions = {}) {
    if (candidates.length === 0) throw new RangeError('ReadPathSelector: no candidate paths');
    if (!(start >= 0 && start < candidates.length)) throw new RangeError(`ReadPathSelector: start ${start} is not a candidate`);
    this.#o = { exploreEvery: 16, firstExplore: 3, exploreTokens: 1, warmupTokens: 1, drift: 0.3, minBytes: 1 << 20, ...options };
    const startPrior = candidates[start]!.prior;
    this.#cands = candidates.map((c) => ({
      path: { direct: c.direct, depth: c.depth },
      estimate: 0,
      samples: 0,
      every: c.prior !== undefined && startPrior !== undefined && c.prior < CLEAR_LOSS * startPrior ? 4 * this.#o.exploreEvery : this.#o.exploreEvery,
    }));
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
        this.#sinceExplore++;
        // Two slow tokens in a row (one is noise on this disk) mean the path got slower.
        this.#fallen = rate > 0 && before > 0 && rate < (1 - this.#o.drift) * before ? this.#fallen + 1 : 0;
        if (this.#cands.length > 1 && (this.#sinceExplore >= this.#nextExplore || this.#fallen >= 2)) this.#startExplore();
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
    if (phase === 'exploit') {
      this.#sinceExplore = 0;
      this.#fallen = 0;
      // The next exploration: when the soonest-due other candidate is due (before any, a
      // candidate not marked a clear loser by its prior is due at firstExplore).
      const due = (c: Candidate) => (!this.#explored && c.every === this.#o.exploreEvery ? Math.min(c.every, this.#o.firstExplore) : c.every);
      this.#nextExplore = Math.min(...this.#cands.filter((_, i) => i !== this.#best).map(due), MAX_EVERY);
    }
  }

  #startExplore(): void {
    this.#explored = true;
    // The other candidate measured least recently (fewest samples, then the soonest due).
    let pick = -1;
    this.#cands.forEach((c, i) => {
      if (i === this.#best) return;
      if (pick < 0 || c.samples < this.#cands[pick]!.samples || (c.samples === this.#cands[pick]!.samples && c.every < this.#cands[pick]!.every)) pick = i;
    });
    this.#switchTo(pick);
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
    this.#best = winner;
    this.#switchTo(winner);
    this.#enter('exploit');
  }

  #switchTo(i: number): void {
    if (i !== this.#current) this.#switches++;
    this.#current = i;
  }
}
