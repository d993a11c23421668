"""Readers for labelled text files: JSON lines, JSON arrays of objects, TSV and CSV.

Every reader returns ``list[Example]`` and raises :class:`DataError` naming the file, the line
and the problem for anything it cannot read. Real files are messy, so the readers tolerate
CRLF line ends, a UTF-8 byte-order mark, blank lines, spaces around separators, trailing
whitespace in labels, quoted fields and very long lines.
"""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Union

Column = Union[str, int]
DEFAULT_TEXT_COLUMNS = ("sentence", "text")
DEFAULT_LABEL_COLUMN = "label"
FORMATS = ("jsonl", "json", "tsv", "csv")
_INT = re.compile(r"[+-]?\d+")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long lines are legal


class DataError(ValueError):
    """A data file cannot be read; ``str()`` is ``FILE:LINE: problem``."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Example:
    """One labelled text."""

    text: str
    label: int


def read_examples(
    path: str | Path,
    text_column: Column | None = None,
    label_column: Column | None = None,
    num_labels: int | None = None,
    fmt: str | None = None,
) -> list[Example]:
    """Read ``path`` into examples.

    Args:
        text_column: column name (files with a header / JSON) or 0-based index (headerless
            files). Default: ``sentence``, else ``text``; the first column when headerless.
        label_column: as ``text_column``. Default: ``label``; the last column when headerless
            (the first if only it holds an integer).
        num_labels: if given, labels must lie in ``[0, num_labels)``.
        fmt: one of ``FORMATS``; default from the extension, else sniffed from the content.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "no such file")
    content = _decode(path)
    fmt = fmt or _detect_format(path, content)
    if fmt not in FORMATS:
        raise DataError(path, None, f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt in ("jsonl", "json"):
        records = _jsonl_records(path, content) if fmt == "jsonl" else _json_records(path, content)
        examples = [_from_mapping(path, line, obj, text_column, label_column, num_labels)
                    for line, obj in records]
    else:
        examples = _read_table(path, content, "\t" if fmt == "tsv" else ",",
                               text_column, label_column, num_labels)
    if not examples:
        raise DataError(path, None, "empty file: no data rows")
    return examples


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(path, line, f"undecodable bytes (not UTF-8) at byte {err.start}") from None


def _detect_format(path: Path, content: str) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in ("tsv", "csv"):
        return suffix
    head = content.lstrip()[:1]
    if head == "[":
        return "json"
    if head == "{":
        return "jsonl"
    first_line = content.split("\n", 1)[0]
    return "tsv" if "\t" in first_line else "csv"


# --- JSON ---------------------------------------------------------------------------------

def _jsonl_records(path: Path, content: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, number, f"invalid JSON: {err.msg}") from None


def _json_records(path: Path, content: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, item)`` for each item of a top-level JSON array, with its line."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(content, 0).end()
    if not content.startswith("[", pos):
        raise DataError(path, content.count("\n", 0, pos) + 1, "expected a JSON array of objects")
    pos = ws.match(content, pos + 1).end()
    expect_item = not content.startswith("]", pos)
    while expect_item:
        line = content.count("\n", 0, pos) + 1
        try:
            item, pos = decoder.raw_decode(content, pos)
        except json.JSONDecodeError as err:
            raise DataError(path, err.lineno, f"invalid JSON: {err.msg}") from None
        yield line, item
        pos = ws.match(content, pos).end()
        if content.startswith(",", pos):
            pos = ws.match(content, pos + 1).end()
        elif content.startswith("]", pos):
            expect_item = False
        else:
            raise DataError(path, content.count("\n", 0, pos) + 1, "invalid JSON: expected ',' or ']'")
    if content[pos + 1:].strip():
        raise DataError(path, content.count("\n", 0, pos + 1) + 1, "invalid JSON: extra data after the array")


def _from_mapping(path, line, obj, text_column, label_column, num_labels) -> Example:
    if not isinstance(obj, dict):
        raise DataError(path, line, f"expected a JSON object, found {type(obj).__name__}")
    text_key = _pick_name(path, line, list(obj), text_column, DEFAULT_TEXT_COLUMNS, "text")
    label_key = _pick_name(path, line, list(obj), label_column, (DEFAULT_LABEL_COLUMN,), "label")
    text = obj[text_key]
    if not isinstance(text, str):
        raise DataError(path, line, f"text column {text_key!r} is not a string")
    return _example(path, line, text, obj[label_key], num_labels)


def _pick_name(path, line, keys: list[str], column, defaults: tuple[str, ...], role: str) -> str:
    candidates = (str(column),) if column is not None else defaults
    for name in candidates:
        if name in keys:
            return name
    wanted = " or ".join(repr(c) for c in candidates)
    raise DataError(path, line, f"missing {role} column {wanted} (found: {', '.join(map(repr, keys)) or 'none'})")


# --- TSV / CSV ----------------------------------------------------------------------------

def _table_rows(path: Path, content: str, sep: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, fields)`` with fields stripped and unquoted; blank lines skipped."""
    if sep == "\t":  # one row per line; a quote inside a sentence stays a literal quote
        for number, line in enumerate(content.splitlines(), start=1):
            if line.strip():
                yield number, [_unquote(field.strip()) for field in line.split("\t")]
        return
    reader = csv.reader(io.StringIO(content, newline=""), skipinitialspace=True, strict=True)
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                yield reader.line_num, [f.strip() for f in fields]
    except csv.Error as err:
        raise DataError(path, reader.line_num, f"malformed CSV: {err}") from None


def _unquote(field: str) -> str:
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"').strip()
    return field


def _read_table(path, content, sep, text_column, label_column, num_labels) -> list[Example]:
    rows = _table_rows(path, content, sep)
    first = next(rows, None)
    if first is None:
        raise DataError(path, None, "empty file: no data rows")
    first_line, first_fields = first
    header = _header(first_fields, text_column, label_column)
    width = len(first_fields)
    if header:
        text_idx = _header_index(path, first_line, header, text_column, DEFAULT_TEXT_COLUMNS, "text")
        label_idx = _header_index(path, first_line, header, label_column, (DEFAULT_LABEL_COLUMN,), "label")
        body: Iterator[tuple[int, list[str]]] = rows
    else:
        text_idx, label_idx = _headerless_indices(path, first_line, first_fields, text_column, label_column)
        body = _chain(first, rows)
    examples = []
    for line, fields in body:
        if len(fields) != width:
            raise DataError(path, line, f"ragged row: expected {width} fields, found {len(fields)}")
        examples.append(_example(path, line, fields[text_idx], fields[label_idx], num_labels))
    return examples


def _chain(first, rest):
    yield first
    yield from rest


def _header(fields: list[str], text_column, label_column) -> list[str] | None:
    names = {str(c).lower() for c in (text_column, label_column) if isinstance(c, str) and not c.isdigit()}
    names |= set(DEFAULT_TEXT_COLUMNS) | {DEFAULT_LABEL_COLUMN}
    lowered = [f.lower() for f in fields]
    return lowered if names & set(lowered) else None


def _header_index(path, line, header, column, defaults, role) -> int:
    if isinstance(column, int) or (isinstance(column, str) and column.isdigit()):
        return _check_index(path, line, int(column), len(header), role)
    return header.index(_pick_name(path, line, header, column.lower() if column else None, defaults, role))


def _headerless_indices(path, line, fields, text_column, label_column) -> tuple[int, int]:
    for column, role in ((text_column, "text"), (label_column, "label")):
        if column is not None and not (isinstance(column, int) or str(column).isdigit()):
            raise DataError(path, line, f"no header row, so the {role} column must be an index, not {column!r}")
    if len(fields) < 2:
        raise DataError(path, line, "expected at least 2 fields (text and label)")
    label_first = _INT.fullmatch(fields[0]) is not None and _INT.fullmatch(fields[-1]) is None
    text_idx = int(text_column) if text_column is not None else (len(fields) - 1 if label_first else 0)
    label_idx = int(label_column) if label_column is not None else (0 if label_first else len(fields) - 1)
    return (_check_index(path, line, text_idx, len(fields), "text"),
            _check_index(path, line, label_idx, len(fields), "label"))


def _check_index(path, line, index: int, width: int, role: str) -> int:
    if not 0 <= index < width:
        raise DataError(path, line, f"{role} column index {index} out of range: the row has {width} fields")
    return index


# --- validation ---------------------------------------------------------------------------

def _example(path, line, text: str, raw_label: Any, num_labels: int | None) -> Example:
    text = text.strip()
    if not text:
        raise DataError(path, line, "empty text")
    label = parse_label(raw_label)
    if label is None:
        raise DataError(path, line, f"label {raw_label!r} is not an integer")
    if label < 0 or (num_labels is not None and label >= num_labels):
        bound = f"[0, {num_labels})" if num_labels is not None else "[0, ...)"
        raise DataError(path, line, f"label {label} out of range {bound}")
    return Example(text, label)


def parse_label(value: Any) -> int | None:
    """Integer label from an int, an integral float or a string like ``' 1 '``; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip())
    return None
