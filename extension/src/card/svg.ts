/**
 * The two small drawings of a result card: a probability gauge (half-circle
 * arc from 0 to 100 %) and an error bar (value ± error on a number line).
 * Built with DOM calls only; colours come from CSS classes in style/base.css.
 */
import { formatPercent } from './format';

const SVG_NS = 'http://www.w3.org/2000/svg';

function svgElement<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | number>
): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, String(value));
  }
  return element;
}

function clamp01(x: number): number {
  return Math.min(Math.max(x, 0), 1);
}

// Gauge geometry in SVG user units: centre (60, 60), radius 48, stroke 12.
const GAUGE = { cx: 60, cy: 60, r: 48, width: 120, height: 72 };

/** Point of the gauge arc at fraction t (0 = left end, 1 = right end). */
function gaugePoint(t: number): string {
  const angle = Math.PI * (1 - t);
  const x = GAUGE.cx + GAUGE.r * Math.cos(angle);
  const y = GAUGE.cy - GAUGE.r * Math.sin(angle);
  return `${x.toFixed(2)} ${y.toFixed(2)}`;
}

/** Path of the gauge arc between fractions t0 < t1 (at most a half-circle, so never the large arc). */
function gaugeArc(t0: number, t1: number): string {
  return `M ${gaugePoint(t0)} A ${GAUGE.r} ${GAUGE.r} 0 0 1 ${gaugePoint(t1)}`;
}

/**
 * A half-circle gauge for a probability, with the band probability ± error
 * shaded when an error is known.
 */
export function probabilityGauge(probability: number, error?: number): SVGSVGElement {
  const p = clamp01(probability);
  const svg = svgElement('svg', {
    viewBox: `0 0 ${GAUGE.width} ${GAUGE.height}`,
    width: GAUGE.width,
    height: GAUGE.height,
    role: 'img',
    'aria-label': `probability ${formatPercent(probability)}`
  });
  svg.appendChild(svgElement('path', { d: gaugeArc(0, 1), class: 'koopnb-gauge-track' }));
  if (p > 0) {
    svg.appendChild(svgElement('path', { d: gaugeArc(0, p), class: 'koopnb-gauge-fill' }));
  }
  if (error !== undefined && error > 0) {
    const low = clamp01(probability - error);
    const high = clamp01(probability + error);
    if (high > low) {
      svg.appendChild(svgElement('path', { d: gaugeArc(low, high), class: 'koopnb-gauge-band' }));
    }
  }
  const label = svgElement('text', {
    x: GAUGE.cx,
    y: GAUGE.cy - 4,
    'text-anchor': 'middle',
    class: 'koopnb-gauge-label'
  });
  label.textContent = formatPercent(probability);
  svg.appendChild(label);
  return svg;
}

// Error-bar geometry: a number line `ERRORBAR.width` wide with margins for the caps.
const ERRORBAR = { width: 160, height: 16, margin: 4 };

/**
 * `value ± error` drawn on a number line: [0, 1] for probabilities, otherwise
 * from 0 (or the lowest point) to 1.25 × the highest point, so the bar's length
 * shows the error relative to the size of the value; a tiny error is a tick.
 */
export function errorBar(value: number, error: number, isProbability: boolean): SVGSVGElement {
  const low = value - error;
  const high = value + error;
  const [axisMin, axisMax] = isProbability
    ? [0, 1]
    : [Math.min(0, 1.25 * low), Math.max(0, 1.25 * high)];
  const span = axisMax - axisMin || 1;
  const usable = ERRORBAR.width - 2 * ERRORBAR.margin;
  const x = (v: number) => ERRORBAR.margin + (usable * (Math.min(Math.max(v, axisMin), axisMax) - axisMin)) / span;
  const mid = ERRORBAR.height / 2;
  const svg = svgElement('svg', {
    viewBox: `0 0 ${ERRORBAR.width} ${ERRORBAR.height}`,
    width: ERRORBAR.width,
    height: ERRORBAR.height,
    class: 'koopnb-errorbar',
    role: 'img',
    'aria-label': `error bar from ${low} to ${high}`
  });
  svg.appendChild(
    svgElement('line', { x1: x(axisMin), x2: x(axisMax), y1: mid, y2: mid, class: 'koopnb-errorbar-axis' })
  );
  svg.appendChild(
    svgElement('line', { x1: x(low), x2: x(high), y1: mid, y2: mid, class: 'koopnb-errorbar-whisker' })
  );
  for (const end of [low, high]) {
    svg.appendChild(
      svgElement('line', { x1: x(end), x2: x(end), y1: mid - 4, y2: mid + 4, class: 'koopnb-errorbar-whisker' })
    );
  }
  svg.appendChild(svgElement('circle', { cx: x(value), cy: mid, r: 3, class: 'koopnb-errorbar-point' }));
  return svg;
}
