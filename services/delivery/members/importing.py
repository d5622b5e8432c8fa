"""A directory CSV, read row by row from a spooled upload, each row checked against the
`member.upserted` contract. Pure: no database, no HTTP.

Columns are the `member.upserted` field names; `member_id` is required, the others optional (an empty
cell keeps the directory's value). `opted_out` lists notification kinds separated by `;`."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

from pydantic import ValidationError

from chassis.inputs import NUL
from chassis.spreadsheet import spreadsheet_unescape
from contracts.members import MemberUpserted

from .domain import FIELDS

COLUMNS: Final = ("member_id", *FIELDS)
OPT_OUT_SEPARATOR: Final = ";"


class ImportFileError(Exception):
    """The file as a whole cannot be read; nothing of it is used."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    code: str
    message: str


@dataclass(frozen=True)
class ImportRow:
    """A data row (numbered from 1, the header is not a row): its entry, or why it is refused."""

    row: int
    member: MemberUpserted | None
    errors: list[RowError] = field(default_factory=list)


def rows(spooled: IO[bytes]) -> Iterator[ImportRow]:
    """Each data row of the file in turn; ImportFileError for an unreadable file."""
    text = codecs.getreader("utf-8-sig")(spooled, "strict")
    reader = csv.reader(text, strict=True)
    try:
        header = _header(next(reader, None))
        number = 0
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue
            number += 1
            yield _row(number, header, cells)
    except UnicodeDecodeError:
        raise ImportFileError("bad_encoding", "The file is not UTF-8.") from None
    except csv.Error as exc:
        raise ImportFileError("malformed_csv", f"Malformed CSV near line {reader.line_num}: {exc}.") from None


def _header(cells: list[str] | None) -> list[str]:
    if cells is None:
        raise ImportFileError("empty_file", "The file is empty: expected a header line and rows.")
    names = [c.strip().lower() for c in cells]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ImportFileError(
            "unknown_column",
            "Unknown columns in the header: " + ", ".join(unknown) + ". Known: " + ", ".join(COLUMNS) + ".",
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ImportFileError(
            "duplicate_column", "Columns named twice in the header: " + ", ".join(repeated) + "."
        )
    if "member_id" not in names:
        raise ImportFileError("missing_column", "The header lacks the required column member_id.")
    return names


def _row(number: int, header: list[str], cells: list[str]) -> ImportRow:
    if len(cells) != len(header):
        message = f"Expected {len(header)} fields as in the header, found {len(cells)}."
        return ImportRow(number, None, [RowError(number, "row", "wrong_field_count", message)])
    values: dict[str, Any] = {}
    errors: list[RowError] = []
    for name, raw in zip(header, cells, strict=True):
        cell = spreadsheet_unescape(raw).strip()
        if NUL in cell:
            errors.append(RowError(number, name, "nul_byte", "holds a NUL byte, which cannot be stored"))
        elif cell:
            values[name] = _split(cell) if name == "opted_out" else cell
    if errors:
        return ImportRow(number, None, errors)
    try:
        return ImportRow(number, MemberUpserted.model_validate(values))
    except ValidationError as exc:
        return ImportRow(
            number,
            None,
            [
                RowError(number, str(e["loc"][0]) if e["loc"] else "row", e["type"], e["msg"])
                for e in exc.errors(include_url=False, include_input=False)
            ],
        )


def _split(cell: str) -> list[str]:
    return [kind.strip() for kind in cell.split(OPT_OUT_SEPARATOR) if kind.strip()]
