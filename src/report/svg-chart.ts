/**
 * Small, dependency-free SVG charts for the HTML reports. Every chart is a string of SVG
 * that renders without scripts, with `<title>` tooltips on its marks.
 */

export interface Series {
  name: string;
  /** Points as [x, y]. */
  points: ReadonlyArray<readonly [number, number]>;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  width?: number;
  height?: number;
  /** A horizontal reference line, e.g. the dependency's capacity. */
  reference?: { y: number; label: string };
  /** A shaded x range, e.g. the outage window. */
  band?: { from: number; to: number; label: string };
  yMax?: number;
}

export interface BarChartOptions {
  title: string;
  yLabel: string;
  categories: readonly string[];
  series: ReadonlyArray<{ name: string; values: readonly number[] }>;
  width?: number;
  height?: number;
}

export const PALETTE = [
  '#2563eb',
  '#dc2626',
  '#16a34a',
  '#d97706',
  '#7c3aed',
  '#0891b2',
  '#db2777',
  '#4b5563',
  '#65a30d',
  '#9333ea',
  '#0f766e',
  '#b45309',
];

const M = { top: 36, right: 16, bottom: 44, left: 64 };

/** Legend columns: four short names a row, two long ones. */
function legendColumns(names: readonly string[]): number {
  return names.some((n) => n.length > 22) ? 2 : 4;
}

export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** A round step for about `count` ticks over [0, max]. */
function niceStep(max: number, count: number): number {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const nice = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10;
  return nice * mag;
}

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (a >= 1000) return `${(v / 1e3).toFixed(1)}k`;
  if (a >= 10 || v === Math.round(v)) return String(Math.round(v));
  return v.toFixed(2);
}

/** The frame and the plot area of a chart whose legend lists `options.series`. */
function plotArea(options: {
  width?: number;
  height?: number;
  series: ReadonlyArray<{ name: string }>;
}) {
  const width = options.width ?? 760;
  const height = options.height ?? 320;
  const legendRows = Math.ceil(
    options.series.length / legendColumns(options.series.map((x) => x.name)),
  );
  const plotBottom = height - M.bottom - legendRows * 14;
  return {
    width,
    height,
    plotBottom,
    plotW: width - M.left - M.right,
    plotH: plotBottom - M.top,
  };
}

/** A line chart of several series over a numeric x axis. */
export function lineChart(options: LineChartOptions): string {
  const { width, height, plotBottom, plotW, plotH } = plotArea(options);
  let xMax = 0;
  let yMax = options.yMax ?? 0;
  for (const s of options.series) {
    for (const [x, y] of s.points) {
      if (x > xMax) xMax = x;
      if (options.yMax === undefined && y > yMax) yMax = y;
    }
  }
  if (options.reference && options.reference.y > yMax) yMax = options.reference.y * 1.1;
  if (xMax <= 0) xMax = 1;
  if (yMax <= 0) yMax = 1;
  const xs = (x: number) => M.left + (x / xMax) * plotW;
  const ys = (y: number) => plotBottom - (Math.min(y, yMax) / yMax) * plotH;
  const parts: string[] = [];
  if (options.band) {
    const x0 = xs(Math.max(0, options.band.from));
    const x1 = xs(Math.min(xMax, options.band.to));
    parts.push(
      `<rect x="${x0.toFixed(1)}" y="${M.top}" width="${Math.max(0, x1 - x0).toFixed(1)}" height="${plotH}" class="band"><title>${escapeXml(options.band.label)}</title></rect>`,
    );
  }
  parts.push(axes(xs, ys, xMax, yMax, plotBottom, width, options.xLabel, options.yLabel));
  if (options.reference) {
    const y = ys(options.reference.y).toFixed(1);
    parts.push(
      `<line x1="${M.left}" x2="${width - M.right}" y1="${y}" y2="${y}" class="reference"/><text x="${width - M.right - 4}" y="${Number(y) - 4}" text-anchor="end" class="ref-label">${escapeXml(options.reference.label)}</text>`,
    );
  }
  options.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length] as string;
    const d = s.points
      .map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${xs(x).toFixed(1)},${ys(y).toFixed(1)}`)
      .join('');
    parts.push(
      `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6" class="series"><title>${escapeXml(s.name)}</title></path>`,
    );
  });
  return legendFrame(
    width,
    height,
    options.title,
    parts.join(''),
    options.series.map((s) => s.name),
  );
}

/** Grouped bars: one group per category, one bar per series. */
export function barChart(options: BarChartOptions): string {
  const { width, height, plotBottom, plotW, plotH } = plotArea(options);
  let yMax = 0;
  for (const s of options.series) for (const v of s.values) if (v > yMax) yMax = v;
  if (yMax <= 0) yMax = 1;
  const step = niceStep(yMax, 5);
  yMax = Math.ceil(yMax / step) * step;
  const groupW = plotW / Math.max(1, options.categories.length);
  const barW = (groupW * 0.8) / Math.max(1, options.series.length);
  const ys = (y: number) => plotBottom - (y / yMax) * plotH;
  const parts: string[] = [yAxis(ys, yMax, plotBottom, width, options.yLabel)];
  options.categories.forEach((cat, ci) => {
    const gx = M.left + ci * groupW + groupW * 0.1;
    options.series.forEach((s, si) => {
      const v = s.values[ci] ?? 0;
      const color = PALETTE[si % PALETTE.length] as string;
      const y = ys(v);
      parts.push(
        `<rect x="${(gx + si * barW).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, barW - 2).toFixed(1)}" height="${(plotBottom - y).toFixed(1)}" fill="${color}" class="bar"><title>${escapeXml(`${s.name} · ${cat}: ${formatNumber(v)}`)}</title></rect>`,
      );
    });
    parts.push(
      `<text x="${(gx + groupW * 0.4).toFixed(1)}" y="${plotBottom + 16}" text-anchor="middle" class="tick">${escapeXml(cat)}</text>`,
    );
  });
  return legendFrame(
    width,
    height,
    options.title,
    parts.join(''),
    options.series.map((s) => s.name),
  );
}

/** Bins `values` into `bins` equal buckets over [0, max] and draws them as bars, one series each. */
export function histogramChart(options: {
  title: string;
  xLabel: string;
  series: ReadonlyArray<{ name: string; values: readonly number[] }>;
  bins?: number;
  width?: number;
  height?: number;
}): string {
  const bins = options.bins ?? 20;
  let max = 0;
  for (const s of options.series) for (const v of s.values) if (v > max) max = v;
  if (max <= 0) max = 1;
  const width = bins === 0 ? 1 : max / bins;
  const series: Series[] = options.series.map((s) => {
    const counts = new Array<number>(bins).fill(0);
    for (const v of s.values) {
      const bin = Math.min(bins - 1, Math.floor(v / width));
      counts[bin] = (counts[bin] ?? 0) + 1;
    }
    const total = Math.max(1, s.values.length);
    return {
      name: s.name,
      points: counts.map((c, i) => [(i + 0.5) * width, c / total] as const),
    };
  });
  return lineChart({
    title: options.title,
    xLabel: options.xLabel,
    yLabel: 'share of delays',
    series,
    ...(options.width === undefined ? {} : { width: options.width }),
    ...(options.height === undefined ? {} : { height: options.height }),
  });
}

function legendFrame(
  width: number,
  height: number,
  title: string,
  body: string,
  names: readonly string[],
): string {
  const columns = legendColumns(names);
  const rows = Math.ceil(names.length / columns);
  const legend = names
    .map((name, i) => {
      const x = M.left + (i % columns) * ((width - M.left - M.right) / columns);
      const y = height - rows * 14 + Math.floor(i / columns) * 14;
      const color = PALETTE[i % PALETTE.length] as string;
      return `<rect x="${x.toFixed(1)}" y="${y - 9}" width="10" height="10" fill="${color}"/><text x="${(x + 14).toFixed(1)}" y="${y}" class="legend">${escapeXml(name)}</text>`;
    })
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="${escapeXml(title)}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}"><text x="${M.left}" y="20" class="chart-title">${escapeXml(title)}</text>${body}${legend}</svg>`;
}

function yAxis(
  ys: (y: number) => number,
  yMax: number,
  plotBottom: number,
  width: number,
  label: string,
): string {
  const step = niceStep(yMax, 5);
  const parts: string[] = [];
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    const y = ys(v).toFixed(1);
    parts.push(
      `<line x1="${M.left}" x2="${width - M.right}" y1="${y}" y2="${y}" class="grid"/><text x="${M.left - 6}" y="${Number(y) + 4}" text-anchor="end" class="tick">${formatNumber(v)}</text>`,
    );
  }
  parts.push(
    `<text transform="translate(14,${((M.top + plotBottom) / 2).toFixed(0)}) rotate(-90)" text-anchor="middle" class="axis-label">${escapeXml(label)}</text>`,
  );
  return parts.join('');
}

function axes(
  xs: (x: number) => number,
  ys: (y: number) => number,
  xMax: number,
  yMax: number,
  plotBottom: number,
  width: number,
  xLabel: string,
  yLabel: string,
): string {
  const parts = [yAxis(ys, yMax, plotBottom, width, yLabel)];
  const step = niceStep(xMax, 8);
  for (let v = 0; v <= xMax + 1e-9; v += step) {
    const x = xs(v).toFixed(1);
    parts.push(
      `<line x1="${x}" x2="${x}" y1="${plotBottom}" y2="${plotBottom + 4}" class="axis"/><text x="${x}" y="${plotBottom + 16}" text-anchor="middle" class="tick">${formatNumber(v)}</text>`,
    );
  }
  parts.push(
    `<line x1="${M.left}" x2="${width - M.right}" y1="${plotBottom}" y2="${plotBottom}" class="axis"/>`,
    `<text x="${((M.left + width - M.right) / 2).toFixed(0)}" y="${plotBottom + 32}" text-anchor="middle" class="axis-label">${escapeXml(xLabel)}</text>`,
  );
  return parts.join('');
}
