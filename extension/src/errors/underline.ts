/**
 * Underlining a model error in a cell's CodeMirror editor, as a lint diagnostic
 * (wavy underline; hovering shows the message). Diagnostics follow edits to the
 * text until they are replaced, so the mark stays on the mistake while it is fixed.
 */
import { Diagnostic, setDiagnostics } from '@codemirror/lint';
import { Text } from '@codemirror/state';
import { EditorView } from '@codemirror/view';

import { ModelErrorPayload } from './payload';

/** Where the diagnostic goes: the word at the error (or one character), clipped to the document. */
export function errorRange(doc: Text, error: ModelErrorPayload): { from: number; to: number } {
  const line = doc.line(Math.min(error.line, doc.lines));
  // Python counts columns in code points, CodeMirror positions in UTF-16 units.
  const offset = Array.from(line.text).slice(0, error.column - 1).join('').length;
  const from = line.from + Math.min(offset, line.length);
  const word = /^[\p{L}\p{N}_.]+/u.exec(line.text.slice(from - line.from));
  if (word) {
    return { from, to: from + word[0].length };
  }
  if (from < line.to) {
    return { from, to: from + (line.text.codePointAt(from - line.from)! > 0xffff ? 2 : 1) };
  }
  // At the end of the line (an expression that stops short): mark its last character.
  return { from: Math.max(line.from, from - 1), to: from };
}

/** Show ``error`` in ``view`` as its only diagnostic, or clear the diagnostics when ``error`` is null. */
export function showModelError(view: EditorView, error: ModelErrorPayload | null): void {
  const diagnostics: Diagnostic[] = [];
  if (error) {
    const { from, to } = errorRange(view.state.doc, error);
    diagnostics.push({
      from,
      to,
      severity: 'error',
      source: 'koopnb',
      message: `line ${error.line}, column ${error.column}: ${error.message}`,
      markClass: 'cm-koopnb-model-error'
    });
  }
  view.dispatch(setDiagnostics(view.state, diagnostics));
}
