/**
 * A tokenizer for the %%pkmodel language (shared/MODEL_LANGUAGE.md), used only
 * for highlighting: it never judges whether the model is valid, it only names
 * what each piece of text looks like, line by line.
 */

/** What a highlighted piece of model text is; each kind has a `cm-koopnb-KIND` class. */
export type TokenKind =
  | 'magic'
  | 'comment'
  | 'number'
  | 'unit'
  | 'operator'
  | 'keyword'
  | 'errormodel'
  | 'function'
  | 'derivative';

/** A highlighted range of one line: `from` and `to` are offsets into that line. */
export interface IToken {
  from: number;
  to: number;
  kind: TokenKind;
}

const KEYWORDS = new Set(['dose', 'covariate', 'fixed', 'bioavailability', 'lag']);
const ERROR_MODELS = new Set(['additive', 'proportional', 'combined', 'exponential']);
const FUNCTIONS = new Set(['exp', 'log', 'sqrt', 'abs', 'min', 'max', 'where']);

/** The cell magic line: `%%pkmodel` as the first thing in the cell. */
const MAGIC = /^(\s*)(%%pkmodel)(?=\s|$)/;

// Sticky patterns, tried in this order at each position of a line.
const DERIVATIVE = /d\s*\/\s*dt\s*\(\s*[A-Za-z_]\w*\s*\)/y;
const NUMBER = /(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?%?/y;
const UNIT = /\[[^\]]*\]/y;
const NAME = /[A-Za-z_]\w*/y;
const OPERATOR = /\*\*|<=|>=|[~=+\-*/^<>]/y;

/** Whether a line is the `%%pkmodel NAME` line that makes a cell a model cell. */
export function isMagicLine(line: string): boolean {
  return MAGIC.test(line);
}

/**
 * Tokens of one line of a %%pkmodel cell.
 *
 * @param line - the line's text, without its line break.
 * @param isMagicLine - whether this is the `%%pkmodel NAME` line; only the
 *   magic itself is highlighted there, its arguments are left as they are.
 */
export function tokenizeLine(line: string, isMagicLine: boolean): IToken[] {
  if (isMagicLine) {
    const magic = MAGIC.exec(line);
    if (!magic) {
      return [];
    }
    const from = magic[1].length;
    return [{ from, to: from + magic[2].length, kind: 'magic' }];
  }
  const tokens: IToken[] = [];
  let pos = 0;
  while (pos < line.length) {
    const char = line[pos];
    if (char === '#') {
      tokens.push({ from: pos, to: line.length, kind: 'comment' });
      break;
    }
    const token = tokenAt(line, pos);
    if (token) {
      tokens.push(token);
      pos = token.to;
    } else {
      // Names that are not special, brackets, commas and spaces stay plain;
      // a plain name is skipped whole so that `x2` never yields a number `2`.
      NAME.lastIndex = pos;
      pos = NAME.test(line) ? NAME.lastIndex : pos + 1;
    }
  }
  return tokens;
}

/** The highlighted token starting at `pos`, or null when the text there is plain. */
function tokenAt(line: string, pos: number): IToken | null {
  const derivative = matchAt(DERIVATIVE, line, pos);
  if (derivative !== null) {
    return { from: pos, to: derivative, kind: 'derivative' };
  }
  const number = matchAt(NUMBER, line, pos);
  if (number !== null) {
    return { from: pos, to: number, kind: 'number' };
  }
  const unit = matchAt(UNIT, line, pos);
  if (unit !== null) {
    return { from: pos, to: unit, kind: 'unit' };
  }
  const nameEnd = matchAt(NAME, line, pos);
  if (nameEnd !== null) {
    if (line[nameEnd] === "'") {
      return { from: pos, to: nameEnd + 1, kind: 'derivative' };
    }
    const kind = nameKind(line.slice(pos, nameEnd));
    return kind ? { from: pos, to: nameEnd, kind } : null;
  }
  const operator = matchAt(OPERATOR, line, pos);
  if (operator !== null) {
    return { from: pos, to: operator, kind: 'operator' };
  }
  return null;
}

function nameKind(name: string): TokenKind | null {
  if (KEYWORDS.has(name)) {
    return 'keyword';
  }
  if (ERROR_MODELS.has(name)) {
    return 'errormodel';
  }
  if (FUNCTIONS.has(name)) {
    return 'function';
  }
  return null;
}

/** End of the sticky `pattern`'s match at `pos`, or null when it does not match there. */
function matchAt(pattern: RegExp, line: string, pos: number): number | null {
  pattern.lastIndex = pos;
  return pattern.test(line) ? pattern.lastIndex : null;
}
