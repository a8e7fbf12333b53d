/**
 * A dependency-free SVG line plot for benchmark sweeps (tokens/s vs budget, memory vs
 * sequences, ...). Each series is a polyline with point markers; x may be numeric or a list
 * of category labels.
 */

export interface PlotSeries {
  name: string;
  /** y per x position; null = no point (e.g. a run killed for memory). */
  values: Array<number | null>;
  /** Dashed line (for bounds / reference curves). */
  dashed?: boolean;
}

export interface PlotSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Labels of the x positions, in order. */
  xTicks: string[];
  series: PlotSeries[];
  /** Points to annotate (e.g. "OOM") at x index for a series. */
  notes?: Array<{ series: string; x: number; text: string }>;
  width?: number;
  height?: number;
  /** Log-scale y axis. */
  logY?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Nice round tick step for a range. */
function niceStep(range: number, targetTicks: number): number {
  const raw = range / Math.max(1, targetTicks);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const nice = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return nice * mag;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return v.toFixed(0);
  if (a >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

/** Renders the plot as a standalone SVG document. */
export function renderLinePlot(spec: PlotSpec): string {
  const W = spec.width ?? 720;
  const H = spec.height ?? 420;
  const m = { left: 70, right: 180, top: 40, bottom: 60 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const all = spec.series.flatMap((s) => s.values.filter((v): v is number => v != null && Number.isFinite(v)));
  const positive = all.filter((v) => v > 0);
  const logY = !!spec.logY && positive.length > 0;
  let yMin = 0;
  let yMax = all.length ? Math.max(...all) : 1;
  if (logY) {
    yMin = Math.pow(10, Math.floor(Math.log10(Math.min(...positive))));
    yMax = Math.pow(10, Math.ceil(Math.log10(Math.max(...positive))));
  } else {
    if (yMax <= 0) yMax = 1;
    const step = niceStep(yMax, 5);
    yMax = Math.ceil((yMax * 1.05) / step) * step;
  }
  const n = spec.xTicks.length;
  const xAt = (i: number): number => m.left + (n <= 1 ? pw / 2 : (i / (n - 1)) * pw);
  const yAt = (v: number): number => {
    const t = logY ? (Math.log10(v) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin)) : (v - yMin) / (yMax - yMin);
    return m.top + ph - t * ph;
  };
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(spec.title)}</text>`);
  // Grid and y ticks.
  const yTicks: number[] = [];
  if (logY) {
    for (let v = yMin; v <= yMax * 1.0001; v *= 10) yTicks.push(v);
  } else {
    const step = niceStep(yMax - yMin, 5);
    for (let v = yMin; v <= yMax + step / 2; v += step) yTicks.push(v);
  }
  for (const v of yTicks) {
    const y = yAt(v);
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${m.left - 8}" y="${y + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  spec.xTicks.forEach((label, i) => {
    const x = xAt(i);
    out.push(`<line x1="${x}" x2="${x}" y1="${m.top + ph}" y2="${m.top + ph + 5}" stroke="#333"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 20}" text-anchor="middle">${esc(label)}</text>`);
  });
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 15}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  // Series.
  spec.series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length]!;
    const pts = s.values
      .map((v, i) => (v != null && Number.isFinite(v) && (!logY || v > 0) ? `${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}` : null))
      .filter((p): p is string => p !== null);
    if (pts.length > 1) {
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${pts.join(' ')}"/>`);
    }
    for (const p of pts) {
      const [x, y] = p.split(',');
      out.push(`<circle cx="${x}" cy="${y}" r="3.5" fill="${color}"/>`);
    }
    const ly = m.top + 10 + si * 20;
    out.push(`<line x1="${m.left + pw + 12}" x2="${m.left + pw + 36}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${m.left + pw + 42}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  for (const note of spec.notes ?? []) {
    const si = spec.series.findIndex((s) => s.name === note.series);
    const color = COLORS[(si < 0 ? 0 : si) % COLORS.length]!;
    out.push(`<text x="${xAt(note.x)}" y="${m.top + ph - 8 - Math.max(0, si) * 14}" text-anchor="middle" fill="${color}" font-weight="bold">${esc(note.text)}</text>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Several plots (renderLinePlot documents) as panels of one SVG, `columns` per row, so a sweep
 * that measures several things writes one picture.
 */
export function composePlots(plots: string[], columns = 2): string {
  const sizes = plots.map((p) => {
    const m = /<svg[^>]*width="(\d+)"[^>]*height="(\d+)"/.exec(p);
    if (!m) throw new Error('composePlots: not a renderLinePlot document');
    return { w: Number(m[1]), h: Number(m[2]) };
  });
  const cellW = Math.max(...sizes.map((s) => s.w));
  const cellH = Math.max(...sizes.map((s) => s.h));
  const rows = Math.ceil(plots.length / columns);
  const W = cellW * Math.min(columns, plots.length);
  const H = cellH * rows;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  plots.forEach((p, i) => {
    const x = (i % columns) * cellW;
    const y = Math.floor(i / columns) * cellH;
    out.push(p.trim().replace('<svg xmlns="http://www.w3.org/2000/svg" ', `<svg x="${x}" y="${y}" `));
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** A stacked area plot over a numeric x axis (e.g. the memory split over time). */
export interface StackedAreaSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  /** x of every sample, increasing. */
  x: number[];
  /** Bands from the bottom up; values per x (>= 0). */
  series: Array<{ name: string; values: number[]; color?: string }>;
  /** Vertical markers with a label (e.g. "4 streams"). */
  markers?: Array<{ x: number; text: string }>;
  /** A horizontal reference line (e.g. the budget). */
  line?: { y: number; text: string };
  width?: number;
  height?: number;
}

/** Renders a stacked area plot as a standalone SVG document. */
export function renderStackedArea(spec: StackedAreaSpec): string {
  const W = spec.width ?? 860;
  const H = spec.height ?? 440;
  const m = { left: 70, right: 200, top: 40, bottom: 60 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const n = spec.x.length;
  const tops = spec.x.map((_, i) => spec.series.reduce((a, s) => a + Math.max(0, s.values[i] ?? 0), 0));
  let yMax = Math.max(1, ...tops, spec.line?.y ?? 0);
  const yStep = niceStep(yMax, 5);
  yMax = Math.ceil((yMax * 1.05) / yStep) * yStep;
  const x0 = n > 0 ? spec.x[0]! : 0;
  const x1 = n > 1 ? spec.x[n - 1]! : x0 + 1;
  const xAt = (v: number): number => m.left + ((v - x0) / (x1 - x0 || 1)) * pw;
  const yAt = (v: number): number => m.top + ph - (v / yMax) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(spec.title)}</text>`);
  for (let v = 0; v <= yMax + yStep / 2; v += yStep) {
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${yAt(v)}" y2="${yAt(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${m.left - 8}" y="${yAt(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  const xStep = niceStep(x1 - x0, 8);
  for (let v = Math.ceil(x0 / xStep) * xStep; v <= x1 + 1e-9; v += xStep) {
    out.push(`<line x1="${xAt(v)}" x2="${xAt(v)}" y1="${m.top + ph}" y2="${m.top + ph + 5}" stroke="#333"/>`);
    out.push(`<text x="${xAt(v)}" y="${m.top + ph + 20}" text-anchor="middle">${fmt(v)}</text>`);
  }
  // Bands, bottom up: each polygon runs along its top edge and back along the one below.
  const below = new Array<number>(n).fill(0);
  spec.series.forEach((s, si) => {
    const color = s.color ?? COLORS[si % COLORS.length]!;
    const top = below.map((b, i) => b + Math.max(0, s.values[i] ?? 0));
    if (n > 0) {
      const up = top.map((v, i) => `${xAt(spec.x[i]!).toFixed(1)},${yAt(v).toFixed(1)}`);
      const down = below.map((v, i) => `${xAt(spec.x[i]!).toFixed(1)},${yAt(v).toFixed(1)}`).reverse();
      out.push(`<polygon fill="${color}" fill-opacity="0.75" stroke="none" points="${[...up, ...down].join(' ')}"/>`);
    }
    for (let i = 0; i < n; i++) below[i] = top[i]!;
    const ly = m.top + 10 + (spec.series.length - 1 - si) * 20;
    out.push(`<rect x="${m.left + pw + 12}" y="${ly - 7}" width="22" height="12" fill="${color}" fill-opacity="0.75"/>`);
    out.push(`<text x="${m.left + pw + 42}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  if (spec.line) {
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${yAt(spec.line.y)}" y2="${yAt(spec.line.y)}" stroke="#000" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${m.left + pw - 4}" y="${yAt(spec.line.y) - 5}" text-anchor="end">${esc(spec.line.text)}</text>`);
  }
  for (const mk of spec.markers ?? []) {
    out.push(`<line x1="${xAt(mk.x)}" x2="${xAt(mk.x)}" y1="${m.top}" y2="${m.top + ph}" stroke="#333" stroke-dasharray="2 3"/>`);
    out.push(`<text x="${xAt(mk.x) + 3}" y="${m.top + 12}">${esc(mk.text)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 15}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
