/** A small line chart of recent samples, drawn as inline SVG (no canvas, no library). */

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 72;
const HEIGHT = 18;
/** The shortest stretch of time a sparkline spans: a young service's first beats still draw a line. */
const MIN_SPAN_MS = 10_000;

export interface Sample {
  at: number;
  value: number;
}

/**
 * The polyline's points for the samples of the last `windowMs` (or since
 * the first sample, when that is more recent), scaled to their own maximum
 * (at least `floor`), with some headroom. Empty when there is nothing to draw.
 */
export function sparkPoints(samples: readonly Sample[], now: number, windowMs: number, floor = 0): [number, number][] {
  const shown = samples.filter((sample) => sample.at >= now - windowMs);
  if (shown.length === 0) return [];
  const span = Math.min(windowMs, Math.max(MIN_SPAN_MS, now - (shown[0] as Sample).at));
  const from = now - span;
  // Headroom above the highest value: a steady value draws a line, not a filled block.
  const max = Math.max(floor, 1.25 * Math.max(...shown.map((sample) => sample.value))) || 1;
  const x = (at: number) => Math.min(WIDTH, Math.max(0, ((at - from) / span) * WIDTH));
  const y = (value: number) => HEIGHT - 1 - (Math.max(0, value) / max) * (HEIGHT - 2);
  const points = shown.map((sample): [number, number] => [x(sample.at), y(sample.value)]);
  // The last value holds until now: the line runs to the right edge.
  const last = points[points.length - 1] as [number, number];
  if (last[0] < WIDTH) points.push([WIDTH, last[1]]);
  return points;
}

export function createSparkline(label: string): SVGSVGElement {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute('width', String(WIDTH));
  svg.setAttribute('height', String(HEIGHT));
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const area = document.createElementNS(SVG, 'polygon');
  area.setAttribute('class', 'area');
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('class', 'line');
  line.setAttribute('fill', 'none');
  svg.append(area, line);
  return svg;
}

const format = (points: [number, number][]) => points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ');

export function drawSparkline(svg: SVGSVGElement, points: [number, number][]): void {
  const line = format(points);
  const [area, polyline] = [svg.children[0], svg.children[1]];
  if (!area || !polyline || polyline.getAttribute('points') === line) return;
  polyline.setAttribute('points', line);
  const first = points[0];
  area.setAttribute('points', first ? `${first[0].toFixed(1)},${HEIGHT} ${line} ${WIDTH},${HEIGHT}` : '');
}
