"""Lexing of %%pkmodel text: logical statements with positions, and expression tokens.

Two jobs, both with exact positions into the original text:

* :func:`split_statements` cuts the text into statements — one per line, ``#`` comments removed,
  a line continued while a ``(`` or ``[`` is open — and remembers the (line, column) of every character.
* :func:`expression_source` checks that a stretch of a statement is a well-formed expression of the
  language (numbers, names, ``+ - * / ^ **``, comparisons, parentheses, calls) and rewrites it as a
  Python source string for ``ast.parse`` in which every name is a neutral placeholder, ``^`` is ``**``
  and every number is a plain literal.  The parser then walks that tree node by node; nothing is
  ever evaluated.

Lines are separated by ``\\n``, ``\\r\\n`` or ``\\r``; lines and columns are 1-based and a column
counts characters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from koopnb.errors import ModelError

_CLOSING = {"(": ")", "[": "]"}
MAX_NESTING = 50
"""Deepest nesting of one expression (parentheses, and operators or calls inside one another, such as a
power tower ``a^a^a``); far beyond any model, well within Python's parser and sympy's recursion."""
MAX_TOKENS = 2000
"""Most numbers, names and operators in one expression (a 1,000-term sum); longer ones are split into
named parts.  Python's own parser fails on a few thousand."""
MAX_TEXT = 200_000
"""Most characters in a model text."""
MAX_STATEMENTS = 2000
"""Most statements in a model text."""
_MAX_NUMBER_LENGTH = 100

_TOKEN = re.compile(
    r"(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|<=|>=|==|!=|[-+*/^<>(),])"
    r"|(?P<space>[ \t]+)"
)
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]+")
_BINARY = frozenset({"+", "-", "*", "/", "^", "**", "<", "<=", ">", ">="})
_MISPLACED = {
    "'": "quotes and strings are not part of the model language",
    '"': "quotes and strings are not part of the model language",
    "[": "a unit in square brackets can only follow a number, as in 'V = 31.5 [L]'",
    "]": "a unit in square brackets can only follow a number, as in 'V = 31.5 [L]'",
    "~": "'~' can only follow a number (IIV, as in 'CL = 2.8 ~ 0.3') or an output name (residual error)",
    "%": "'%' can only give a CV after '~', as in 'CL = 2.8 ~ 27%'",
    "=": "'=' cannot appear inside an expression (the comparisons are <, <=, > and >=)",
    ".": "'.' is only allowed inside a number; attributes such as 'a.b' are not part of the language",
}


@dataclass(frozen=True)
class Statement:
    """One logical statement: its text without comments, and where each character came from.

    ``text`` has line breaks inside open brackets replaced by spaces and no trailing blanks;
    ``where[i]`` is the (line, column) of ``text[i]`` in the original model text.
    """

    text: str
    where: tuple[tuple[int, int], ...]

    @property
    def line(self) -> int:
        """The line the statement starts on."""
        return self.where[0][0]

    def at(self, index: int) -> tuple[int, int]:
        """(line, column) of ``text[index]``; past the end, the column just after the last character."""
        if index < len(self.text):
            return self.where[index]
        line, column = self.where[-1]
        return line, column + 1

    def error(self, message: str, index: int) -> ModelError:
        """A :class:`ModelError` located at ``text[index]``."""
        return ModelError(message, *self.at(index))


def split_statements(text: str) -> list[Statement]:
    """The non-blank statements of a model text, in order, with brackets checked for balance.

    A text longer than :data:`MAX_TEXT` characters or with more than :data:`MAX_STATEMENTS` statements
    is an error located where the limit is passed.
    """
    if len(text) > MAX_TEXT:
        lines = re.split(r"\r\n|\r|\n", text[:MAX_TEXT + 1])
        raise ModelError(f"the model text is longer than the limit of {MAX_TEXT:,} characters",
                         len(lines), len(lines[-1]))
    statements: list[Statement] = []
    chars: list[str] = []
    where: list[tuple[int, int]] = []
    open_brackets: list[tuple[str, int, int]] = []
    line, column, i = 1, 1, 0
    while i < len(text):
        char = text[i]
        if char in "\r\n":
            if open_brackets:
                chars.append(" ")
                where.append((line, column))
            else:
                _flush(chars, where, statements)
            i += 2 if text.startswith("\r\n", i) else 1
            line, column = line + 1, 1
            continue
        if char == "#":
            end = i
            while end < len(text) and text[end] not in "\r\n":
                end += 1
            column += end - i
            i = end
            continue
        if char in _CLOSING:
            open_brackets.append((char, line, column))
        elif char in ")]":
            if not open_brackets:
                raise ModelError(f"'{char}' closes a bracket that was never opened", line, column)
            opener, opened_line, opened_column = open_brackets.pop()
            if _CLOSING[opener] != char:
                raise ModelError(
                    f"'{char}' does not match the '{opener}' opened at line {opened_line}, "
                    f"column {opened_column}", line, column)
        chars.append(char)
        where.append((line, column))
        column += 1
        i += 1
    if open_brackets:
        opener, opened_line, opened_column = open_brackets[-1]
        raise ModelError(f"this '{opener}' is never closed", opened_line, opened_column)
    _flush(chars, where, statements)
    if len(statements) > MAX_STATEMENTS:
        raise statements[MAX_STATEMENTS].error(
            f"the model has more than the limit of {MAX_STATEMENTS:,} statements", 0)
    return statements


def _flush(chars: list[str], where: list[tuple[int, int]], statements: list[Statement]) -> None:
    """Close the statement being collected (if it is not blank) and start a new one."""
    text = "".join(chars).rstrip(" \t")
    if text.strip(" \t"):
        statements.append(Statement(text, tuple(where[: len(text)])))
    chars.clear()
    where.clear()


@dataclass(frozen=True)
class Token:
    """One expression token: ``kind`` is ``number``, ``name`` or ``op``; ``index`` is into the statement."""

    kind: str
    text: str
    index: int


@dataclass(frozen=True)
class ExpressionSource:
    """Python source for ``ast.parse`` standing for a stretch of a statement.

    ``origin[k]`` is the statement index that character ``k`` of ``source`` stands for;
    ``names`` maps the source offset of each placeholder to the model name it replaces and
    ``numbers`` the source offset of each literal to the number as written.
    """

    source: str
    origin: tuple[int, ...]
    names: dict[int, str]
    numbers: dict[int, str]


def tokenize(statement: Statement, start: int, end: int) -> list[Token]:
    """The tokens of ``statement.text[start:end]``; any character outside the language is an error."""
    text = statement.text
    tokens: list[Token] = []
    i = start
    while i < end:
        match = _TOKEN.match(text, i, end)
        if match is None:
            raise statement.error(_unexpected(text, i, end), i)
        kind = match.lastgroup
        if kind == "number":
            tail = _NUMBER_TAIL.match(text, match.end(), end)
            if tail is not None:
                raise statement.error(f"malformed number '{text[i:tail.end()]}'", i)
            check_number(statement, match.group(), i)
        elif kind == "op" and match.group() in ("==", "!="):
            raise statement.error(
                f"'{match.group()}' is not a comparison of the language; use <, <=, > or >=", i)
        if kind != "space":
            tokens.append(Token(kind, match.group(), i))
            if len(tokens) > MAX_TOKENS:
                raise statement.error(f"the expression is longer than the limit of {MAX_TOKENS:,} numbers, "
                                      "names and operators; split it into named parts", i)
        i = match.end()
    return tokens


def _unexpected(text: str, i: int, end: int) -> str:
    """The message for a character that cannot start a token."""
    char = text[i]
    if text.startswith("=", i) and i + 1 < end and text[i + 1] == "=":
        return "'==' is not a comparison of the language; use <, <=, > or >="
    if char in _MISPLACED:
        return _MISPLACED[char]
    return f"unexpected character {char!r}"


def check_number(statement: Statement, text: str, index: int) -> float:
    """The value of the number literal ``text`` at ``index``; literals no float64 holds are errors."""
    if len(text) > _MAX_NUMBER_LENGTH:
        raise statement.error(f"the number starting '{text[:12]}...' is too long", index)
    value = float(text)
    if not math.isfinite(value):
        raise statement.error(f"the number '{text}' is too large", index)
    return value


def expression_source(statement: Statement, start: int, end: int, after: str) -> ExpressionSource:
    """Check ``statement.text[start:end]`` is a well-formed expression and rewrite it for ``ast.parse``.

    ``after`` names what the expression follows (e.g. ``"'='"``), for the message when it is missing.
    """
    tokens = tokenize(statement, start, end)
    _check_grammar(statement, tokens, start, after)
    pieces: list[str] = []
    origin: list[int] = []
    names: dict[int, str] = {}
    numbers: dict[int, str] = {}
    for token in tokens:
        offset = len(origin)
        if token.kind == "name":
            piece = f"n{len(names)}"
            names[offset] = token.text
        elif token.kind == "number":
            # Python rejects leading zeros in integer literals ('007'); the value is read from the text.
            piece = str(int(token.text)) if token.text.isdigit() else token.text
            numbers[offset] = token.text
        else:
            piece = "**" if token.text == "^" else token.text
        pieces.append(piece + " ")
        origin.extend([token.index] * (len(piece) + 1))
    return ExpressionSource("".join(pieces), tuple(origin), names, numbers)


def _check_grammar(statement: Statement, tokens: list[Token], start: int, after: str) -> None:
    """Operands and operators alternate, calls and parentheses nest, commas only separate arguments.

    The brackets of ``tokens`` are balanced: statements are split only where no bracket is open.
    """
    expect_operand = True
    calls: list[bool] = []  # one entry per open parenthesis: is it a function call's?
    previous: Token | None = None
    for token in tokens:
        text = token.text
        if expect_operand:
            if token.kind in ("number", "name"):
                expect_operand = False
            elif text == "(":
                calls.append(False)
            elif text == ")" and previous is not None and previous.text == "(" and calls and calls[-1]:
                calls.pop()
                expect_operand = False
            elif text in ("+", "-"):
                pass  # a sign may start an operand (unary) or join two (binary): both are fine here
            elif previous is not None and previous.text in _BINARY:
                raise statement.error(f"'{text}' cannot follow '{previous.text}'", token.index)
            elif text == ")" and previous is not None and previous.text == "(":
                raise statement.error("empty parentheses '()'", previous.index)
            else:
                raise statement.error(f"a value is missing before '{text}'", token.index)
        elif text == "(" and previous is not None and previous.kind == "name":
            calls.append(True)
            expect_operand = True
        elif text in _BINARY:
            expect_operand = True
        elif text == ")":
            calls.pop()
        elif text == "," and calls[-1:] == [True]:
            expect_operand = True
        elif text == ",":
            raise statement.error("',' can only separate the arguments of a function", token.index)
        else:
            assert previous is not None
            raise statement.error(
                f"an operator is missing between '{previous.text}' and '{text}'", token.index)
        if len(calls) > MAX_NESTING:
            raise statement.error(f"the expression is nested more than {MAX_NESTING} levels deep", token.index)
        previous = token
    if previous is None:
        raise statement.error(f"an expression is missing after {after}", start)
    if expect_operand:
        raise statement.error(f"'{previous.text}' has nothing after it", previous.index)
