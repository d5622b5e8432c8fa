"""Parsing a partner's code file: pure, row by row, every problem reported with its row number.

Columns: `code` (required), `expires_at` (optional, ISO date or date-time), `value` (optional decimal).
The clear code never appears in the report: rows are named by their line number.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation

MAX_CODE_LENGTH = 64
KNOWN_COLUMNS = ("code", "expires_at", "value")


@dataclass(frozen=True)
class ImportedCode:
    row: int
    code: str
    expires_at: datetime | None
    value: Decimal | None


@dataclass(frozen=True)
class RowProblem:
    row: int
    code: str
    message: str


@dataclass
class ParsedFile:
    codes: list[ImportedCode] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    rows: int = 0


class UnreadableFile(ValueError):
    """The file as a whole cannot be read (no header, no `code` column)."""


def _parse_expiry(text: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time.max, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("expires_at is not an ISO date or date-time") from exc
    if moment.tzinfo is None:
        raise ValueError("expires_at needs a time zone (e.g. Z)")
    return moment.astimezone(UTC)


def _parse_value(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError("value is not a decimal number") from exc
    if not value.is_finite() or value <= 0:
        raise ValueError("value must be a positive amount")
    if value.as_tuple().exponent < -4:  # type: ignore[operator]
        raise ValueError("value has more than 4 decimal places")
    return value


def parse_codes(raw: bytes, *, now: datetime) -> ParsedFile:
    """Each line is decoded on its own, so one badly encoded row does not sink the file."""
    lines = raw.removeprefix(b"\xef\xbb\xbf").splitlines()
    if not lines:
        raise UnreadableFile("the file is empty")
    try:
        header = next(csv.reader([lines[0].decode("utf-8")]))
    except (UnicodeDecodeError, StopIteration) as exc:
        raise UnreadableFile("the header row is not UTF-8 CSV") from exc
    columns = [name.strip().lower() for name in header]
    if "code" not in columns:
        raise UnreadableFile("the header has no `code` column")
    parsed = ParsedFile()
    seen: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parsed.rows += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            parsed.problems.append(RowProblem(number, "bad_encoding", "the row is not valid UTF-8"))
            continue
        values = next(csv.reader([text]), [])
        if len(values) > len(columns):
            parsed.problems.append(RowProblem(number, "invalid_row", "more fields than header columns"))
            continue
        record = dict(zip(columns, (v.strip() for v in values), strict=False))
        code = record.get("code", "")
        if not code:
            parsed.problems.append(RowProblem(number, "invalid_row", "code is empty"))
            continue
        if len(code) > MAX_CODE_LENGTH or not code.isprintable() or any(c.isspace() for c in code):
            parsed.problems.append(
                RowProblem(number, "invalid_row", f"code must be 1-{MAX_CODE_LENGTH} printable characters")
            )
            continue
        try:
            expires_at = _parse_expiry(record["expires_at"]) if record.get("expires_at") else None
            value = _parse_value(record["value"]) if record.get("value") else None
        except ValueError as exc:
            parsed.problems.append(RowProblem(number, "invalid_row", str(exc)))
            continue
        if expires_at is not None and expires_at <= now:
            parsed.problems.append(RowProblem(number, "already_expired", "expires_at is in the past"))
            continue
        if code in seen:
            parsed.problems.append(
                RowProblem(number, "duplicate_in_file", f"the same code is on row {seen[code]}")
            )
            continue
        seen[code] = number
        parsed.codes.append(ImportedCode(number, code, expires_at, value))
    return parsed
