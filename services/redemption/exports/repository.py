"""Export jobs and their content (SQL), and the worker that renders them chunk by chunk."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import structlog

from chassis.db import Connection
from chassis.rows import from_row
from services.redemption.exports.domain import ExportFormat, Purpose, render
from services.redemption.records.api import record_json
from services.redemption.records.domain import Record
from services.redemption.records.repository import RecordFilter

log = structlog.get_logger(__name__)
STALE_RUN_S = 60


@dataclass(frozen=True)
class ExportJob:
    export_id: uuid.UUID
    purpose: Purpose
    format: ExportFormat
    fields: tuple[str, ...]
    filters: dict[str, Any]
    reason: str
    requested_by: str
    status: str
    rows_total: int | None
    rows_done: int
    error: str | None
    created_at: Any
    finished_at: Any

    @classmethod
    def from_row(cls, row: Any) -> ExportJob:
        return from_row(
            cls,
            row,
            purpose=Purpose(row["purpose"]),
            format=ExportFormat(row["format"]),
            fields=tuple(row["fields"]),
            filters=json.loads(row["filters"]),
        )

    def record_filter(self) -> RecordFilter:
        f = self.filters
        return RecordFilter(
            kind=f.get("kind"),
            status=f.get("status"),
            partner_id=f.get("partner_id"),
            offer_id=f.get("offer_id"),
            channel=f.get("channel"),
            date_from=date.fromisoformat(f["from"]) if f.get("from") else None,
            date_to=date.fromisoformat(f["to"]) if f.get("to") else None,
        )


async def insert_export(conn: Connection, job: ExportJob) -> None:
    await conn.execute(
        """
        INSERT INTO exports (export_id, purpose, format, fields, filters, reason, requested_by)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
        """,
        job.export_id,
        str(job.purpose),
        str(job.format),
        list(job.fields),
        json.dumps(job.filters),
        job.reason,
        job.requested_by,
    )


async def list_exports(conn: Connection, requested_by: str | None, limit: int) -> list[ExportJob]:
    """The latest exports, newest first: those `requested_by` asked for, or everyone's when None."""
    rows = await conn.fetch(
        "SELECT * FROM exports WHERE ($1::text IS NULL OR requested_by = $1)"
        " ORDER BY created_at DESC, export_id LIMIT $2",
        requested_by,
        limit,
    )
    return [ExportJob.from_row(row) for row in rows]


async def get_export(conn: Connection, export_id: uuid.UUID) -> ExportJob | None:
    row = await conn.fetchrow("SELECT * FROM exports WHERE export_id = $1", export_id)
    return ExportJob.from_row(row) if row else None


async def chunks(
    pool: asyncpg.Pool, export_id: uuid.UUID, *, statement_timeout_s: float
) -> AsyncIterator[bytes]:
    """The content, one chunk at a time, so a large export never sits in memory whole; each chunk's
    query may take `statement_timeout_s` at most."""
    seq = -1
    while True:
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(
                "SELECT set_config('statement_timeout', $1, true)", f"{int(statement_timeout_s * 1000)}ms"
            )
            row = await conn.fetchrow(
                "SELECT seq, content FROM export_chunks WHERE export_id = $1 AND seq > $2"
                " ORDER BY seq LIMIT 1",
                export_id,
                seq,
            )
        if row is None:
            return
        seq = row["seq"]
        yield row["content"].encode()


async def _claim(pool: asyncpg.Pool) -> ExportJob | None:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT * FROM exports
             WHERE status = 'queued'
                OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => $1))
             ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED
            """,
            STALE_RUN_S,
        )
        if row is None:
            return None
        job = ExportJob.from_row(row)
        where, args = job.record_filter().where(daily=False)
        total = await conn.fetchval(f"SELECT count(*) FROM redemption_records{where}", *args)  # noqa: S608 -- WHERE from RecordFilter's fixed fragments; values are bind parameters
        # A run interrupted by a crash starts over: its chunks so far are dropped.
        await conn.execute("DELETE FROM export_chunks WHERE export_id = $1", job.export_id)
        await conn.execute(
            "UPDATE exports SET status = 'running', rows_total = $2, rows_done = 0, heartbeat_at = now()"
            " WHERE export_id = $1",
            job.export_id,
            total,
        )
        return job


async def run_next_export(pool: asyncpg.Pool, chunk_rows: int) -> uuid.UUID | None:
    """Render the oldest queued export; returns its id, None when nothing waits."""
    job = await _claim(pool)
    if job is None:
        return None
    try:
        await _render(pool, job, chunk_rows)
    except Exception as exc:
        log.exception("export_failed", export_id=str(job.export_id))
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE exports SET status = 'failed', error = $2, finished_at = now() WHERE export_id = $1",
                job.export_id,
                type(exc).__name__,
            )
    return job.export_id


async def _render(pool: asyncpg.Pool, job: ExportJob, chunk_rows: int) -> None:
    where, args = job.record_filter().where(daily=False)
    after: tuple[Any, uuid.UUID] | None = None
    seq, done = 0, 0
    while True:
        page_args = list(args)
        clause = where
        if after is not None:
            page_args.extend(after)
            keyset = f"(redeemed_at, record_id) > (${len(page_args) - 1}, ${len(page_args)})"
            clause = f"{where} AND {keyset}" if where else f" WHERE {keyset}"
        page_args.append(chunk_rows)
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT * FROM redemption_records{clause}"  # noqa: S608 -- WHERE from RecordFilter's fixed fragments; values are bind parameters
                f" ORDER BY redeemed_at, record_id LIMIT ${len(page_args)}",
                *page_args,
            )
            records = [Record.from_row(r) for r in rows]
            if records or seq == 0:
                content = render([record_json(r) for r in records], job.fields, job.format, first=seq == 0)
                await conn.execute(
                    "INSERT INTO export_chunks (export_id, seq, content) VALUES ($1, $2, $3)",
                    job.export_id,
                    seq,
                    content,
                )
                seq += 1
            done += len(records)
            finished = len(records) < chunk_rows
            await conn.execute(
                """
                UPDATE exports SET rows_done = $2, heartbeat_at = now(),
                       status = CASE WHEN $3 THEN 'ready' ELSE status END,
                       finished_at = CASE WHEN $3 THEN now() ELSE finished_at END
                 WHERE export_id = $1
                """,
                job.export_id,
                done,
                finished,
            )
        if finished:
            return
        after = (records[-1].redeemed_at, records[-1].record_id)
