/**
 * Stop strings over streamed text. Text that could still be the start of a stop string is held
 * back until the next piece decides it; the matched stop string itself is never emitted.
 */

/** Result of pushing one piece of text. */
export interface StopPush {
  /** Text safe to emit now. */
  text: string;
  /** True when a stop string matched: `text` ends right before it and generation must stop. */
  stopped: boolean;
}

/** Streams text through a set of stop strings (empty strings are ignored). */
export class StopMatcher {
  private readonly stops: string[];
  private held = '';

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** Adds a piece of generated text. */
  push(piece: string): StopPush {
    if (this.stops.length === 0) return { text: piece, stopped: false };
    const text = this.held + piece;
    // Earliest match of any stop string wins.
    let cut = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.held = '';
      return { text: text.slice(0, cut), stopped: true };
    }
    // Hold back the longest suffix that is a proper prefix of some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
        if (text.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /** Text still held back (emit it when generation ends for another reason). */
  flush(): string {
    const t = this.held;
    this.held = '';
    return t;
  }
}
