/**
 * CodeMirror 6 extension that marks up %%pkmodel cells with `cm-koopnb-*` classes.
 *
 * Decorations are derived from the document alone, so a state field computes
 * them when the editor is created (first render) and again on every change.
 * Any other cell gets an empty decoration set and is left exactly as it was.
 */
import { Extension, RangeSetBuilder, StateField, Text } from '@codemirror/state';
import { Decoration, DecorationSet, EditorView } from '@codemirror/view';

import { TokenKind, isMagicLine, tokenizeLine } from './tokenize';

const MARKS: Record<TokenKind, Decoration> = {
  magic: mark('magic'),
  comment: mark('comment'),
  number: mark('number'),
  unit: mark('unit'),
  operator: mark('operator'),
  keyword: mark('keyword'),
  errormodel: mark('errormodel'),
  function: mark('function'),
  derivative: mark('derivative')
};

function mark(kind: TokenKind): Decoration {
  return Decoration.mark({ class: `cm-koopnb-${kind}` });
}

/**
 * Decorations for a whole document: empty unless its first non-blank line is
 * the `%%pkmodel` magic (IPython drops leading blank lines before looking).
 */
export function pkmodelDecorations(doc: Text): DecorationSet {
  let magicLine = 1;
  while (magicLine <= doc.lines && doc.line(magicLine).text.trim() === '') {
    magicLine++;
  }
  if (magicLine > doc.lines || !isMagicLine(doc.line(magicLine).text)) {
    return Decoration.none;
  }
  const builder = new RangeSetBuilder<Decoration>();
  for (let number = magicLine; number <= doc.lines; number++) {
    const line = doc.line(number);
    for (const token of tokenizeLine(line.text, number === magicLine)) {
      builder.add(line.from + token.from, line.from + token.to, MARKS[token.kind]);
    }
  }
  return builder.finish();
}

const pkmodelField = StateField.define<DecorationSet>({
  create: state => pkmodelDecorations(state.doc),
  update: (decorations, transaction) =>
    transaction.docChanged ? pkmodelDecorations(transaction.state.doc) : decorations,
  provide: field => EditorView.decorations.from(field)
});

/**
 * The highlighting extension, at default precedence: the Python highlighter
 * (Prec.high) then nests its spans inside ours, so each model token stays one
 * element; style/base.css colours those inner spans with ours.
 */
export const pkmodelHighlighting: Extension = pkmodelField;
