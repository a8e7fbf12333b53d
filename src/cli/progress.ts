/**
 * One-line progress bar on stderr for long commands (synth, downloads of work): bytes done of
 * total, MB/s and ETA, redrawn at most ~10 times a second. Prints nothing when stderr is not
 * a TTY (logs, CI, pipes), so callers need not check.
 */

export interface Progress {
  /** Reports `done` units (bytes) of the total. */
  update(done: number): void;
  /** Finishes the line (call once, also on error). */
  done(): void;
}

const MB = 1024 * 1024;

function fmtBytes(n: number): string {
  if (n >= 1024 * MB) return `${(n / (1024 * MB)).toFixed(2)} GiB`;
  return `${(n / MB).toFixed(1)} MiB`;
}

function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return '--';
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${s.toFixed(0)}s`;
}

/**
 * A progress line `label [#####.....] 1.2 GiB / 3.8 GiB  85.3 MB/s  ETA 31s` for `total`
 * bytes. `stream` defaults to process.stderr; a non-TTY stream gets no output.
 */
export function createProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = stream.isTTY === true;
  const t0 = performance.now();
  let last = -Infinity; // the first update always draws (performance.now() may be < 100 ms in a young process)
  let current = 0;
  let finished = false;
  const draw = () => {
    const secs = (performance.now() - t0) / 1000;
    const rate = secs > 0 ? current / secs : 0;
    const frac = total > 0 ? Math.min(1, current / total) : 1;
    const width = 24;
    const fill = Math.round(frac * width);
    const eta = rate > 0 ? (total - current) / rate : Infinity;
    const line = `${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${fmtBytes(current)} / ${fmtBytes(total)}  ${(rate / 1e6).toFixed(1)} MB/s  ETA ${fmtSeconds(eta)}`;
    const cols = stream.columns ?? 100;
    stream.write(`\r${line.slice(0, Math.max(10, cols - 1))}\x1b[K`);
  };
  return {
    update(done: number) {
      current = done;
      if (!tty || finished) return;
      const now = performance.now();
      if (now - last < 100 && done < total) return;
      last = now;
      draw();
    },
    done() {
      if (finished) return;
      finished = true;
      if (!tty) return;
      draw();
      stream.write('\n');
    },
  };
}
