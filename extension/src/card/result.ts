/**
 * The `application/vnd.koopnb.result+json` payload and its checked reading.
 *
 * The Python side writes this payload; every key but `kind` is optional here,
 * and a key of the wrong type is reported in one sentence instead of being
 * drawn wrongly.
 */
export const RESULT_MIME_TYPE = 'application/vnd.koopnb.result+json';

export const RESULT_KINDS = ['expectation', 'probability', 'dose', 'regimen', 'posterior'] as const;
export type ResultKind = (typeof RESULT_KINDS)[number];

/** One row of the ranked table of a `regimen` result. */
export interface IRankedRegimen {
  regimen?: string;
  probability?: number;
  error?: number;
}

/** A koopnb result, as the card draws it. Times in seconds. */
export interface IKoopnbResult {
  kind: ResultKind;
  title?: string;
  /** Expectation value, probability, or the objective at the optimum. */
  value?: number;
  /** Estimated |value - truth|. */
  error?: number;
  n_evals?: number;
  method?: string;
  converged?: boolean;
  elapsed?: number;
  metric?: string;
  /** Target window; null for an open side. */
  window?: [number | null, number | null];
  probability?: number;
  dose?: number;
  unit?: string;
  regimen?: string;
  rows?: IRankedRegimen[];
  warnings?: string[];
  /** The value as koopnb's Python cards write it (e.g. '71.4 %', '438'); drawn instead of formatting `value`. */
  value_text?: string;
  /** Its error with the unit (e.g. '± 0.0012 %', '± 0.008 mg·h/L'). */
  error_text?: string;
  /** What the value is, in plain words (e.g. 'Probability in window'). */
  value_label?: string;
}

/** Raised when a payload cannot be drawn; its message is one sentence for the user. */
export class ResultPayloadError extends Error {}

/** A parsed JSON object whose values are still unchecked. */
type JSONObject = { readonly [key: string]: unknown };

/** Check a payload key by key and return it typed; raises ResultPayloadError. */
export function readResult(data: unknown): IKoopnbResult {
  if (!isObject(data)) {
    throw new ResultPayloadError(`The result payload must be a JSON object, got ${describe(data)}.`);
  }
  const kind = data.kind;
  if (typeof kind !== 'string' || !(RESULT_KINDS as readonly string[]).includes(kind)) {
    throw new ResultPayloadError(
      `The result 'kind' must be one of ${RESULT_KINDS.join(', ')}, got ${describe(kind)}.`
    );
  }
  return {
    kind: kind as ResultKind,
    title: optionalString(data, 'title'),
    value: optionalNumber(data, 'value'),
    error: optionalNumber(data, 'error'),
    n_evals: optionalNumber(data, 'n_evals'),
    method: optionalString(data, 'method'),
    converged: optionalBoolean(data, 'converged'),
    elapsed: optionalNumber(data, 'elapsed'),
    metric: optionalString(data, 'metric'),
    window: optionalWindow(data),
    probability: optionalNumber(data, 'probability'),
    dose: optionalNumber(data, 'dose'),
    unit: optionalString(data, 'unit'),
    regimen: optionalString(data, 'regimen'),
    rows: optionalRows(data),
    warnings: optionalStrings(data, 'warnings'),
    value_text: optionalString(data, 'value_text'),
    error_text: optionalString(data, 'error_text'),
    value_label: optionalString(data, 'value_label')
  };
}

function optionalNumber(data: JSONObject, key: string, where = ''): number | undefined {
  const value = data[key];
  if (value === undefined || value === null) {
    return undefined;
  }
  if (typeof value !== 'number') {
    throw new ResultPayloadError(`The result key '${where}${key}' must be a number, got ${describe(value)}.`);
  }
  return value;
}

function optionalString(data: JSONObject, key: string, where = ''): string | undefined {
  const value = data[key];
  if (value === undefined || value === null) {
    return undefined;
  }
  if (typeof value !== 'string') {
    throw new ResultPayloadError(`The result key '${where}${key}' must be a string, got ${describe(value)}.`);
  }
  return value;
}

function optionalBoolean(data: JSONObject, key: string): boolean | undefined {
  const value = data[key];
  if (value === undefined || value === null) {
    return undefined;
  }
  if (typeof value !== 'boolean') {
    throw new ResultPayloadError(`The result key '${key}' must be true or false, got ${describe(value)}.`);
  }
  return value;
}

function optionalStrings(data: JSONObject, key: string): string[] | undefined {
  const value = data[key];
  if (value === undefined || value === null) {
    return undefined;
  }
  if (!Array.isArray(value) || !value.every(item => typeof item === 'string')) {
    throw new ResultPayloadError(`The result key '${key}' must be a list of strings, got ${describe(value)}.`);
  }
  return value as string[];
}

function optionalWindow(data: JSONObject): [number | null, number | null] | undefined {
  const value = data.window;
  if (value === undefined || value === null) {
    return undefined;
  }
  const isBound = (bound: unknown) => bound === null || typeof bound === 'number';
  if (!Array.isArray(value) || value.length !== 2 || !value.every(isBound)) {
    throw new ResultPayloadError(
      `The result key 'window' must be [low, high] with numbers or null, got ${describe(value)}.`
    );
  }
  return [value[0] as number | null, value[1] as number | null];
}

function optionalRows(data: JSONObject): IRankedRegimen[] | undefined {
  const value = data.rows;
  if (value === undefined || value === null) {
    return undefined;
  }
  if (!Array.isArray(value)) {
    throw new ResultPayloadError(`The result key 'rows' must be a list of objects, got ${describe(value)}.`);
  }
  return value.map((row, index) => {
    if (!isObject(row)) {
      throw new ResultPayloadError(`The result key 'rows[${index}]' must be an object, got ${describe(row)}.`);
    }
    const where = `rows[${index}].`;
    return {
      regimen: optionalString(row, 'regimen', where),
      probability: optionalNumber(row, 'probability', where),
      error: optionalNumber(row, 'error', where)
    };
  });
}

function isObject(value: unknown): value is JSONObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return 'a list';
  }
  if (typeof value === 'string') {
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  }
  if (typeof value === 'object') {
    return 'an object';
  }
  return `${typeof value} ${String(value)}`;
}
