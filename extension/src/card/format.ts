/**
 * Number formatting for result cards: a value is shown to the precision its
 * error estimate supports, never to more digits than it has.
 */

/** Magnitudes shown in fixed notation; others use exponential notation. */
const FIXED_MIN = 1e-3;
const FIXED_MAX = 1e6;

/** Leading digit and decimal exponent of |x| rounded to one significant digit, e.g. 0.0296 → [3, -2]. */
function leadingDigit(x: number): [number, number] {
  const [mantissa, exponent] = Math.abs(x).toExponential(0).split('e').map(Number);
  return [mantissa, exponent];
}

/** Decimal exponent of the last digit worth showing of an error: 2 digits when it starts with 1 or 2. */
function errorDigitExponent(error: number): number {
  const [leading, exponent] = leadingDigit(error);
  return leading <= 2 ? exponent - 1 : exponent;
}

/** A number alone, to four significant digits. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) {
    return String(value);
  }
  const magnitude = Math.abs(value);
  if (magnitude === 0 || (magnitude >= FIXED_MIN && magnitude < FIXED_MAX)) {
    return String(Number(value.toPrecision(4)));
  }
  return value.toExponential(3);
}

/**
 * `value` and `error` as two strings rounded to the error's leading digits,
 * e.g. (0.73123, 0.00041) → ['0.7312', '0.0004'].
 */
export function formatValueAndError(value: number, error: number): [string, string] {
  if (!Number.isFinite(value) || !Number.isFinite(error) || error <= 0) {
    return [formatNumber(value), Number.isFinite(error) ? String(Math.abs(error)) : String(error)];
  }
  const last = errorDigitExponent(error);
  const magnitude = Math.max(Math.abs(value), error);
  if (magnitude >= FIXED_MIN && magnitude < FIXED_MAX) {
    const decimals = Math.min(Math.max(-last, 0), 12);
    return [roundTo(value, last).toFixed(decimals), roundTo(error, last).toFixed(decimals)];
  }
  // Exponential notation: the value keeps as many digits as reach down to the error's last digit.
  const valueExponent = value === 0 ? leadingDigit(error)[1] : Number(value.toExponential().split('e')[1]);
  const errorDigits = leadingDigit(error)[0] <= 2 ? 1 : 0;
  return [
    value.toExponential(Math.min(Math.max(valueExponent - last, 0), 15)),
    error.toExponential(errorDigits)
  ];
}

function roundTo(value: number, exponent: number): number {
  const scale = Math.pow(10, exponent);
  return Math.round(value / scale) * scale;
}

/** A probability in [0, 1] as a percentage, e.g. 0.7312 → '73.1%'. */
export function formatPercent(probability: number): string {
  return `${(probability * 100).toFixed(1)}%`;
}

/** A duration in seconds in the unit that reads best, e.g. 0.012 → '12 ms'. */
export function formatElapsed(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return `${seconds} s`;
  }
  if (seconds < 1e-3) {
    return `${Number((seconds * 1e6).toPrecision(3))} µs`;
  }
  if (seconds < 1) {
    return `${Number((seconds * 1e3).toPrecision(3))} ms`;
  }
  if (seconds < 60) {
    return `${Number(seconds.toPrecision(3))} s`;
  }
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - 60 * minutes)} s`;
}

/** A count of model evaluations, e.g. 1234 → '1,234 evaluations'. */
export function formatEvaluations(count: number): string {
  const noun = count === 1 ? 'evaluation' : 'evaluations';
  return `${count.toLocaleString('en-US')} ${noun}`;
}

/** A target window in the metric language, e.g. [400, null] → '400..'. */
export function formatWindow(window: [number | null, number | null]): string {
  const [low, high] = window;
  return `${low === null ? '' : formatNumber(low)}..${high === null ? '' : formatNumber(high)}`;
}
