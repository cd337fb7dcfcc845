"""Reading a member file, CSV or JSONL, line by line: each row's number, its raw content
(or why the line is unusable) and the text its digest is made of."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from loyalty.errors import FatalError
from loyalty.member_rows import unusable_text

__all__ = ["MAX_LINE", "Line", "Raw", "UnusableFileError", "reader_for"]

#: Characters one JSONL line or one CSV cell may hold; past it the whole line is
#: rejected. Cells have their own, lower limit (`loyalty.member_rows.MAX_CELL`).
MAX_LINE = 64 * 1024 * 1024
#: A row as read: a JSON object, or the cells of a CSV line, which the header names.
Raw = dict[str, Any] | list[str]
#: A line read: its number, the raw row (or why the line is unusable), the raw text.
Line = tuple[int, Raw | str, str]


class UnusableFileError(FatalError):
    """The file as a whole cannot be read as members."""


def _read_csv(stream: IO[str], header: list[str]) -> Iterator[Line]:
    """The file's rows as cells; the header's names go to `header`."""
    # Our own per-cell checks name the field; the reader's limit only bounds memory.
    # The limit is process-wide, so it is put back when the file is done.
    previous = csv.field_size_limit(MAX_LINE)
    try:
        yield from _read_csv_rows(stream, header)
    finally:
        csv.field_size_limit(previous)


def _read_csv_rows(stream: IO[str], header: list[str]) -> Iterator[Line]:
    # The parsing processes name the cells (`loyalty.member_rows.named_cells`), as
    # csv.DictReader would.
    reader = csv.reader(stream)
    try:
        fieldnames = next(reader, None) or []
    except csv.Error as exc:
        raise UnusableFileError(f"the header line is not readable CSV ({exc})") from None
    problem = unusable_text(",".join(fieldnames), MAX_LINE)
    if problem is not None:
        raise UnusableFileError(f"the header line {problem}")
    names = [f.strip() for f in fieldnames]
    if "external_id" not in names:
        raise UnusableFileError(
            "the first line must be a header that names an external_id column "
            f"(found: {', '.join(fieldnames) or 'nothing'})"
        )
    header[:] = names
    width = len(names)
    prefix = "\x1f".join(names)
    done = reader.line_num  # the last line of the last record read
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader starts afresh on the next line: only this one is lost.
            yield done + 1, f"is not readable CSV ({exc})", ""
            done = reader.line_num
            continue
        done = reader.line_num
        if not cells:
            continue
        if len(cells) > width:
            yield reader.line_num, f"has {len(cells) - width} more cells than the header", ""
            continue
        text = "\x1f".join(cells)
        yield reader.line_num, cells, f"{prefix}\x1e{text}"


def _read_jsonl(stream: IO[str], _: list[str]) -> Iterator[Line]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            yield number, f"is longer than {MAX_LINE} characters", ""
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"is not valid JSON ({exc.msg} at column {exc.colno})", ""
            continue
        except (ValueError, RecursionError) as exc:
            # Numbers too long to convert, or nesting too deep to parse.
            yield number, f"is not usable JSON ({type(exc).__name__})", ""
            continue
        if not isinstance(value, dict):
            yield number, "is not a JSON object", ""
            continue
        yield number, value, line


def reader_for(path: Path, fmt: str | None) -> Callable[[IO[str], list[str]], Iterator[Line]]:
    fmt = fmt or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(path.suffix.lower())
    if fmt == "csv":
        return _read_csv
    if fmt == "jsonl":
        return _read_jsonl
    raise UnusableFileError(f"{path.name}: cannot tell the format; name it .csv or .jsonl")
