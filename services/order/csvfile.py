"""IPA CSV files in and out, streamed: bytes go in a chunk at a time and rows come out, so a file of any
size needs memory for one chunk only. Pure, no I/O.

A file must be UTF-8 (a BOM is fine), comma-separated, with a header naming `ipa.record_submitted`
fields. The error report (`errors.csv`) has the same columns plus `row` and `errors`, which an upload
ignores, so a fixed report can be uploaded again. Cells a spreadsheet would run as formulas are written
with a leading `'`, and that quote is dropped again on upload.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chassis.spreadsheet import spreadsheet_safe, spreadsheet_unescape

from .validation import RECORD_FIELDS, REQUIRED_FIELDS

REPORT_COLUMNS = ("row", "errors")
_OTHER_DELIMITERS = (";", "\t", "|")


class CsvFileError(Exception):
    """The file as a whole cannot be read; nothing of it is used."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CsvRow:
    row_number: int
    cells: dict[str, str | None]
    problem: str | None = None  # a row-level defect, e.g. the wrong number of fields


class CsvRecordStream:
    """Feed bytes, get rows. Records may span chunks and, inside quotes, lines."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        self._pending = ""
        self._record: list[str] = []
        self._odd_quotes = False
        self._bytes = 0
        self._lines = 0
        self._header: list[str] | None = None
        self._rows = 0

    @property
    def rows(self) -> int:
        return self._rows

    def feed(self, data: bytes, *, final: bool = False) -> list[CsvRow]:
        try:
            text = self._decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            offset = self._bytes + exc.start
            line_number = self._lines + data[: exc.start].count(b"\n") + 1
            raise CsvFileError(
                "bad_encoding",
                f"The file is not UTF-8: invalid byte at offset {offset} (line {line_number}).",
            ) from None
        self._bytes += len(data)
        text = self._pending + text
        lines = text.split("\n")
        self._pending = "" if final else lines.pop()
        complete: list[str] = []
        for line in lines:
            self._lines += 1
            self._record.append(line + "\n")
            if line.count('"') % 2:
                self._odd_quotes = not self._odd_quotes
            if not self._odd_quotes:
                complete.append("".join(self._record))
                self._record = []
        if final and self._record:
            raise CsvFileError(
                "unterminated_quote", f"A quoted field opened near line {self._lines} never closes."
            )
        return self._parse(complete)

    def finish(self) -> list[CsvRow]:
        rows = self.feed(b"", final=True)
        if self._header is None:
            raise CsvFileError("empty_file", "The file is empty: expected a header line and rows.")
        return rows

    def _parse(self, records: list[str]) -> list[CsvRow]:
        if not records:
            return []
        out: list[CsvRow] = []
        reader = csv.reader(records, strict=True)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return out
            except csv.Error as exc:
                raise CsvFileError(
                    "malformed_csv",
                    f"Malformed CSV in data row {self._rows + 1}: {exc} (quote the whole field).",
                ) from None
            if not fields or all(not f.strip() for f in fields):
                continue
            if self._header is None:
                self._header = _check_header(fields)
                continue
            self._rows += 1
            out.append(self._row(fields))

    def _row(self, fields: list[str]) -> CsvRow:
        assert self._header is not None
        problem = None
        if len(fields) != len(self._header):
            problem = f"Expected {len(self._header)} fields as in the header, found {len(fields)}."
        cells = {
            name: _unescape(value)
            for name, value in zip(self._header, fields, strict=False)
            if name in RECORD_FIELDS
        }
        return CsvRow(self._rows, cells, problem)


def _check_header(fields: list[str]) -> list[str]:
    names = [f.strip().lower() for f in fields]
    if len(names) == 1:
        for delimiter in _OTHER_DELIMITERS:
            if delimiter in names[0]:
                shown = "tab" if delimiter == "\t" else repr(delimiter)
                raise CsvFileError(
                    "wrong_delimiter",
                    f"The header is separated by {shown}; fields must be separated by commas.",
                )
    known = set(RECORD_FIELDS) | set(REPORT_COLUMNS)
    if not set(names) & set(REQUIRED_FIELDS):
        raise CsvFileError(
            "missing_header",
            "The first line must be a header naming the columns: " + ", ".join(RECORD_FIELDS) + ".",
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CsvFileError(
            "duplicate_column", "Columns named twice in the header: " + ", ".join(duplicates) + "."
        )
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CsvFileError("unknown_column", "Unknown columns in the header: " + ", ".join(unknown) + ".")
    missing = [n for n in REQUIRED_FIELDS if n not in names]
    if missing:
        raise CsvFileError("missing_column", "The header lacks required columns: " + ", ".join(missing) + ".")
    return names


def _unescape(value: str) -> str | None:
    # A leading quote is how our own report (and spreadsheets) keep a formula-looking cell inert.
    value = spreadsheet_unescape(value)
    return value if value.strip() else None


def _line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([spreadsheet_safe(v) for v in values])
    return buffer.getvalue()


def report_header() -> str:
    """The first line of `errors.csv`: the record's columns, then `row` and `errors`."""
    return _line((*RECORD_FIELDS, *REPORT_COLUMNS))


def report_line(row_number: int, cells: Mapping[str, Any] | None, errors: Iterable[Mapping[str, str]]) -> str:
    """One rejected row of `errors.csv`: its cells as received, its row number, its errors."""
    described = "; ".join(f"{e['field']}: {e['code']}: {e['message']}" for e in errors)
    return _line((*((cells or {}).get(name) for name in RECORD_FIELDS), row_number, described))
