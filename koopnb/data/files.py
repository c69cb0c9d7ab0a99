"""Data files as NONMEM writes them: comment lines, a header (perhaps commented), $INPUT-style names."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from koopnb.data.columns import _CENSORING, _MISSING, _STANDARD
from koopnb.errors import DataError

_COMMENT = re.compile(r"^[ \t]*[#@]")


class Raw(NamedTuple):
    """A table as read, before any check."""

    table: pd.DataFrame
    """Numbers parsed where a whole column is numbers, text elsewhere; rows commented out are gone."""
    text: Callable[[int, Any], str] | None
    """For a file: the text of a cell (0-based data row, column label) as the file has it, for messages."""
    rows: np.ndarray
    """The 1-based data row number of each row of ``table`` (rows commented out are counted)."""


def _load_raw(source, columns: list[str] | None) -> Raw:
    names = _input_names(columns) if columns is not None else None
    text = None
    if isinstance(source, pd.DataFrame):
        table = source.reset_index(drop=True)
        if names is not None:
            if len(names) != table.shape[1]:
                raise DataError(f"columns= names {len(names)} columns but the DataFrame has {table.shape[1]}")
            table = _named(table, names)
    elif isinstance(source, (str, os.PathLike)):
        table, text = _read_file(os.fspath(source), names)
    else:
        raise DataError(f"data must be a file path or a pandas DataFrame, not {type(source).__name__}")
    rows = np.arange(1, len(table) + 1)
    if table.shape[1] and str(table.columns[0]).strip().upper() == "C":
        flag = table.iloc[:, 0]
        marks = flag.astype(str).str.strip().str.upper()
        commented = marks.eq("C").fillna(False).to_numpy(dtype=bool)
        if (commented | flag.isna().to_numpy() | marks.isin(("", ".")).fillna(False).to_numpy(dtype=bool)).all():
            # NONMEM's IGNORE=C column: C or nothing on every row
            rows = rows[~commented]
            table = table.loc[~commented].iloc[:, 1:].reset_index(drop=True)
    if table.empty:
        raise DataError("the table has no rows")
    return Raw(table, text, rows)


def _input_names(columns) -> list[str | None]:
    """Column names from NONMEM $INPUT-style entries; None for a dropped column."""
    if isinstance(columns, str) or not all(isinstance(name, str) for name in columns):
        raise DataError("columns= must be a list of column names (text), as in NONMEM's $INPUT")
    names: list[str | None] = []
    for entry in columns:
        parts = [part.strip() for part in entry.split("=")]
        if len(parts) == 1 and parts[0].upper() in ("DROP", "SKIP"):
            names.append(None)
            continue
        if len(parts) == 2 and parts[1].upper() in ("DROP", "SKIP"):
            names.append(None)
            continue
        standard = [part for part in parts if part.upper() in (*_STANDARD, *_CENSORING)]
        if len(parts) > 2 or not all(parts) or (len(parts) == 2 and len(standard) != 1):
            raise DataError(f"columns= entry {entry!r} is not a column name, NAME=DROP, or LABEL=STANDARD "
                            "such as CP=DV")
        names.append(standard[0] if standard else parts[0])
    return names


def _read_file(path: str, names: list[str | None] | None) -> tuple[pd.DataFrame, Callable[[int, Any], str] | None]:
    if os.path.isdir(path):
        raise DataError(f"{path!r} is a directory, not a data file")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise DataError(f"there is no data file {path!r}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path!r} is not UTF-8 text") from None
    except OSError as error:
        raise DataError(f"{path!r} cannot be read ({error.strerror})") from None
    lines = text.splitlines()
    commented = _COMMENT.search(text) is not None and any(_COMMENT.match(line) for line in lines)
    first = next((i for i, line in enumerate(lines) if line.strip() and not _COMMENT.match(line)), None)
    if first is None:
        raise DataError(f"{path!r} is not a readable table (it has no data lines)")
    comma = path.lower().endswith(".csv") or "," in lines[first]

    def fields(line: str) -> list[str]:
        return [cell.strip() for cell in line.split(",")] if comma else line.split()

    def names_time(cells: list[str]) -> bool:
        return any(cell.upper() == "TIME" for cell in cells)

    header = None
    if names_time(fields(lines[first])):
        if names is not None:
            raise DataError(f"line {first + 1} of {path!r} is a header naming the columns and columns= names "
                            "them too; give the names in one place")
        header, body = fields(lines[first]), lines[first + 1:]
    else:
        body = lines[first:]
        if names is None:
            before = [line for line in lines[:first] if line.strip()]
            if before and names_time(fields(_COMMENT.sub("", before[-1], count=1))):
                header = fields(_COMMENT.sub("", before[-1], count=1))
            else:
                raise DataError("the table needs a TIME column (hours), and no header line names one; a file "
                                "without a header needs columns=[...] (NONMEM's $INPUT names)", column="TIME")
    if commented:
        body = [line for line in body if not _COMMENT.match(line)]
    labels = header if header is not None else names
    body = [line for line in body if line.strip()]
    text = "\n".join(body)
    try:
        table = pd.read_csv(io.StringIO(text), sep="," if comma else r"\s+", header=None,
                            names=list(range(len(labels))), index_col=False, na_values=list(_MISSING),
                            keep_default_na=False, skipinitialspace=True)
    except pd.errors.ParserError as error:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if found:
            expected, row, saw = found.groups()
            raise DataError(f"the row has {saw} fields but the header names {expected} columns", row=int(row)) from None
        raise DataError(f"{path!r} is not a readable table ({error})") from None
    except pd.errors.EmptyDataError:
        raise DataError("the table has no rows") from None
    if len(body) != len(table):  # a quoted field spanning lines: pandas read it whole, the line view is off
        cell = None
    else:
        def cell(row: int, column: Any) -> str:
            cells = fields(body[row])
            return cells[position[column]] if position[column] < len(cells) else ""

        position = {label: k for k, label in enumerate(labels) if label is not None}
        found = text.count(",") + len(body) if comma else len(text.split())
        if found < len(body) * len(labels):  # more fields than columns already stopped pandas
            count = (lambda line: line.count(",") + 1) if comma else (lambda line: len(line.split()))
            row = next(k for k, line in enumerate(body) if count(line) < len(labels))
            raise DataError(f"the row has {count(body[row])} fields but the header names {len(labels)} columns",
                            row=row + 1)
    if header is not None:
        table.columns = header  # names may repeat: the reader reports it
        return table, cell
    return _named(table, names), cell


def _named(table: pd.DataFrame, names: list[str | None]) -> pd.DataFrame:
    """The columns named by position; a column named None (DROP) is left out."""
    kept = [k for k, name in enumerate(names) if name is not None]
    return table.iloc[:, kept].set_axis([names[k] for k in kept], axis=1)
