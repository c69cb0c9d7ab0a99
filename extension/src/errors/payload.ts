/**
 * The payload of `application/vnd.koopnb.model-error+json`, displayed by the
 * `%%pkmodel` magic (koopnb/jupyter/magics.py, `model_error_bundle`) when the
 * cell's model text does not parse: where the mistake is and what it is.
 */
export const MODEL_ERROR_MIME_TYPE = 'application/vnd.koopnb.model-error+json';

export interface ModelErrorPayload {
  /** 1-based line of the cell as the editor shows it (the %%pkmodel line is line 1). */
  line: number;
  /** 1-based column in that line, counted in characters (Unicode code points, as Python counts). */
  column: number;
  /** The sentence saying what is wrong, without its "line L, column C:" prefix. */
  message: string;
}

/** The payload when it is well formed, else null (such an output then marks nothing). */
export function readModelError(data: unknown): ModelErrorPayload | null {
  if (typeof data !== 'object' || data === null) {
    return null;
  }
  const { line, column, message } = data as Record<string, unknown>;
  const isPosition = (value: unknown): value is number => Number.isInteger(value) && (value as number) >= 1;
  if (!isPosition(line) || !isPosition(column) || typeof message !== 'string') {
    return null;
  }
  return { line, column, message };
}
