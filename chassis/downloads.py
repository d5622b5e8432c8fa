"""Streamed CSV and JSON-lines downloads of query results, however many rows they hold.

Rows come from a server-side cursor inside one read-only, repeatable-read transaction, so memory
stays flat and the file is one consistent snapshot; each fetch is bounded by `statement_timeout`, and
the whole response by `BoundedStreamingResponse`'s time limit. CSV cells go through
`spreadsheet_safe`, so no cell runs as a formula.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any, Final, Literal

import asyncpg

from chassis.http import BoundedStreamingResponse
from chassis.spreadsheet import spreadsheet_safe

DownloadFormat = Literal["csv", "jsonl"]
MEDIA_TYPES: Final[Mapping[str, str]] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
DEFAULT_PREFETCH: Final = 500
DOWNLOAD_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "Every matching row, streamed as CSV (header first) or JSON lines",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


def cell_text(value: object) -> str:
    """A database value as CSV text: RFC 3339 times, `true`/`false`, nothing for NULL."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _json_value(value: object) -> object:
    return value.isoformat() if isinstance(value, date | time) else str(value)


def csv_line(values: Sequence[object]) -> str:
    """One CSV record (CRLF-terminated) with every cell spreadsheet-safe."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([spreadsheet_safe(cell_text(v)) for v in values])
    return buffer.getvalue()


def jsonl_line(values: Mapping[str, object]) -> str:
    """One JSON object and a newline; ids and decimals as text, times in RFC 3339."""
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False, default=_json_value) + "\n"


async def cursor_rows(
    pool: asyncpg.Pool,
    query: str,
    *args: Any,
    statement_timeout_s: float,
    prefetch: int = DEFAULT_PREFETCH,
) -> AsyncIterator[asyncpg.Record]:
    """The query's rows, `prefetch` at a time, from one read-only repeatable-read snapshot."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        await conn.execute(
            "SELECT set_config('statement_timeout', $1, true)", f"{int(statement_timeout_s * 1000)}ms"
        )
        async for row in conn.cursor(query, *args, prefetch=prefetch):
            yield row


async def download_lines(
    rows: AsyncIterator[asyncpg.Record],
    columns: Sequence[str],
    format: DownloadFormat,
    values: Callable[[asyncpg.Record], Mapping[str, object]] = dict,
) -> AsyncIterator[str]:
    """CSV (a header of `columns`, then one record per row) or one JSON object per line, each with the
    `columns` of `values(row)` (by default the row's own columns)."""
    if format == "csv":
        yield csv_line(columns)
    async for row in rows:
        cells = values(row)
        if format == "csv":
            yield csv_line([cells[c] for c in columns])
        else:
            yield jsonl_line({c: cells[c] for c in columns})


def download_response(
    lines: AsyncIterator[str], *, name: str, format: DownloadFormat, timeout_s: float
) -> BoundedStreamingResponse:
    """The streamed file, named `<name>-<UTC timestamp>.<format>` for the browser."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return BoundedStreamingResponse(
        lines,
        timeout_s=timeout_s,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{_safe_name(name)}-{stamp}.{format}"'},
    )


def _safe_name(name: str) -> str:
    """A file name any header carries: ids may hold any character, a header only plain ASCII."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120]
