"""IPA batches: rows stored as they stream in, then judged chunk by chunk by a background worker.

Every chunk is one transaction that also moves the batch's cursor (`next_row`) and counters, so a
worker that dies mid-batch leaves it resumable where it stopped, by itself after a restart or by
another replica once the claim is stale. Every mode first validates every row (so the counts and the
error report are complete early), then:
- `accept_valid`: accepts the valid rows chunk by chunk (each judged again as it is accepted: a row
  whose reference was accepted elsewhere meanwhile, or whose campaign stopped, is rejected after all).
- `dry_run`: stops there; nothing is accepted or announced.
- `all_or_nothing`: only if no row failed are all rows accepted, in one transaction, so either every
  record of the batch is accepted or none is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg
import structlog

from chassis.db import Connection
from chassis.errors import is_transient

from . import intake
from .intake import Candidate
from .orders import Cause
from .validation import RecordError

log = structlog.get_logger(__name__)


class Mode(StrEnum):
    DRY_RUN = "dry_run"
    ALL_OR_NOTHING = "all_or_nothing"
    ACCEPT_VALID = "accept_valid"


class BatchStatus(StrEnum):
    QUEUED = "queued"
    VALIDATING = "validating"
    ACCEPTING = "accepting"
    COMPLETED = "completed"
    REJECTED = "rejected"  # all_or_nothing with at least one invalid row: nothing accepted
    FAILED = "failed"
    AWAITING_APPROVAL = "awaiting_approval"  # above the approval threshold: stored, not yet queued
    DECLINED = "declined"  # its approval was rejected: nothing was validated or accepted


ACTIVE = (BatchStatus.QUEUED, BatchStatus.VALIDATING, BatchStatus.ACCEPTING)


class RowWriter:
    """Stores a batch's rows as they are read, a chunk at a time with COPY, inside the upload's
    transaction: an upload that fails half-way leaves nothing behind."""

    def __init__(self, conn: Connection, batch_id: uuid.UUID, chunk: int = 2000) -> None:
        self._conn = conn
        self._batch_id = batch_id
        self._chunk = chunk
        self._pending: list[tuple[Any, ...]] = []
        self.count = 0

    async def add(self, row_number: int, cells: dict[str, Any], problems: Sequence[RecordError] = ()) -> None:
        ref = cells.get("external_ref")
        ref = ref.strip() if isinstance(ref, str) and ref.strip() else None
        errors = json.dumps([p.as_dict() for p in problems]) if problems else None
        self._pending.append((self._batch_id, row_number, ref, json.dumps(cells), errors))
        self.count += 1
        if len(self._pending) >= self._chunk:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            await self._conn.copy_records_to_table(
                "ipa_batch_rows",
                records=self._pending,
                columns=["batch_id", "row_number", "external_ref", "cells", "errors"],
            )
            self._pending = []


async def create_batch(
    conn: Connection, batch_id: uuid.UUID, *, source: str, mode: Mode, created_by: str, file_name: str | None
) -> None:
    await conn.execute(
        "INSERT INTO ipa_batches (batch_id, source, mode, status, created_by, file_name)"
        " VALUES ($1, $2, $3, 'receiving', $4, $5)",
        batch_id,
        source,
        str(mode),
        created_by,
        file_name,
    )


async def queue_batch(conn: Connection, batch_id: uuid.UUID, received: int) -> None:
    await conn.execute(
        "UPDATE ipa_batches SET status = 'queued', received = $2, updated_at = now() WHERE batch_id = $1",
        batch_id,
        received,
    )


async def batch_total(conn: Connection, batch_id: uuid.UUID) -> Decimal:
    """The sum of the batch's amounts that read as plain numbers (money and points alike): what the
    approval threshold weighs. An amount that is not a number counts nothing (validation rejects it)."""
    total = await conn.fetchval(
        r"""
        SELECT coalesce(sum(btrim(cells->>'amount')::numeric), 0) FROM ipa_batch_rows
         WHERE batch_id = $1 AND btrim(cells->>'amount') ~ '^[0-9]{1,15}(\.[0-9]{1,6})?$'
        """,
        batch_id,
    )
    return Decimal(total)


async def hold_batch(conn: Connection, batch_id: uuid.UUID, received: int) -> None:
    """Stored in full but left for the worker only once its approval is approved."""
    await conn.execute(
        "UPDATE ipa_batches SET status = 'awaiting_approval', received = $2, updated_at = now()"
        " WHERE batch_id = $1",
        batch_id,
        received,
    )


async def release_batch(conn: Connection, batch_id: uuid.UUID) -> bool:
    """Queue a held batch for the worker; False when it is not waiting for approval."""
    done = await conn.execute(
        "UPDATE ipa_batches SET status = 'queued', updated_at = now()"
        " WHERE batch_id = $1 AND status = 'awaiting_approval'",
        batch_id,
    )
    return done == "UPDATE 1"


async def decline_batch(conn: Connection, batch_id: uuid.UUID) -> None:
    """A rejected batch ends untouched, and its rows (with their contact details) go."""
    await conn.execute(
        "UPDATE ipa_batches SET status = 'declined', finished_at = now(), updated_at = now()"
        " WHERE batch_id = $1 AND status = 'awaiting_approval'",
        batch_id,
    )
    await conn.execute("DELETE FROM ipa_batch_rows WHERE batch_id = $1", batch_id)


_BATCH_COLUMNS = (
    "batch_id, source, mode, status, file_name, created_by, received, validated, valid, accepted, rejected,"
    " failure, created_at, updated_at, finished_at"
)


async def recent_batches(conn: Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_BATCH_COLUMNS} FROM ipa_batches WHERE status <> 'receiving'"
        " ORDER BY created_at DESC LIMIT $1",
        limit,
    )
    return [dict(r) for r in rows]


async def batch_progress(conn: Connection, batch_id: uuid.UUID) -> dict[str, Any] | None:
    batch = await conn.fetchrow(f"SELECT {_BATCH_COLUMNS} FROM ipa_batches WHERE batch_id = $1", batch_id)
    if batch is None or batch["status"] == "receiving":
        return None
    counts = {
        r["state"]: r["n"]
        for r in await conn.fetch(
            "SELECT state, count(*) AS n FROM orders WHERE batch_id = $1 GROUP BY state", batch_id
        )
    }
    orders = {state: counts.get(state, 0) for state in ("pending", "completed", "cancelled")}
    body = dict(batch)
    body["orders"] = orders
    body["points_accepted"] = batch["accepted"] - sum(orders.values())
    return body


async def rejected_rows(
    pool: asyncpg.Pool, batch_id: uuid.UUID, *, statement_timeout_s: float
) -> AsyncIterator[tuple[int, Any, Any]]:
    """The batch's rejected rows in order, read with a server-side cursor (memory stays flat); each
    fetch may take `statement_timeout_s` at most."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT set_config('statement_timeout', $1, true)", f"{int(statement_timeout_s * 1000)}ms"
        )
        cursor = conn.cursor(
            "SELECT row_number, cells, errors FROM ipa_batch_rows WHERE batch_id = $1 AND status = 'rejected'"
            " ORDER BY row_number",
            batch_id,
            prefetch=1000,
        )
        async for r in cursor:
            yield r["row_number"], json.loads(r["cells"]), json.loads(r["errors"])


# The worker


async def claim_batch(pool: asyncpg.Pool, stale_after_s: float) -> asyncpg.Record | None:
    return await pool.fetchrow(
        """
        UPDATE ipa_batches SET claimed_at = now(),
               status = CASE WHEN status = 'queued' THEN 'validating' ELSE status END
         WHERE batch_id = (
               SELECT batch_id FROM ipa_batches
                WHERE status IN ('queued', 'validating', 'accepting')
                  AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $1))
                ORDER BY created_at
                  FOR UPDATE SKIP LOCKED
                LIMIT 1)
        RETURNING batch_id, mode, status, created_by
        """,
        stale_after_s,
    )


class AllOrNothingBroken(Exception):
    """A row became invalid between validation and acceptance (a reference accepted meanwhile)."""

    def __init__(self, candidates: list[Candidate]) -> None:
        super().__init__(f"{len(candidates)} row(s) became invalid")
        self.candidates = candidates


class BatchProcessor:
    def __init__(self, pool: asyncpg.Pool, *, chunk_rows: int) -> None:
        self._pool = pool
        self._chunk = chunk_rows

    async def run(self, batch: asyncpg.Record) -> None:
        batch_id: uuid.UUID = batch["batch_id"]
        mode = Mode(batch["mode"])
        cause = Cause(actor=batch["created_by"], correlation_id=f"ipa-batch-{batch_id}")
        log.info("ipa_batch_started", batch_id=str(batch_id), mode=str(mode))
        if batch["status"] == BatchStatus.VALIDATING:
            while await self._chunk_pass(batch_id, mode, cause):
                pass
            if mode is Mode.DRY_RUN:
                await self._finish(batch_id, BatchStatus.COMPLETED)
                return
            rejected = await self._pool.fetchval(
                "SELECT rejected FROM ipa_batches WHERE batch_id = $1", batch_id
            )
            if mode is Mode.ALL_OR_NOTHING and rejected:
                await self._reject_all(batch_id, cause)
                return
            await self._pool.execute(
                "UPDATE ipa_batches SET status = 'accepting', next_row = 1, updated_at = now()"
                " WHERE batch_id = $1",
                batch_id,
            )
        if mode is Mode.ALL_OR_NOTHING:
            await self._accept_all(batch_id, cause)
            return
        while await self._accept_chunk(batch_id, cause):
            pass
        await self._finish(batch_id, BatchStatus.COMPLETED)

    async def _rows(self, conn: Connection, batch_id: uuid.UUID, after: int, status: str) -> list[Candidate]:
        rows = await conn.fetch(
            """
            SELECT row_number, cells, errors,
                   (SELECT min(f.row_number) FROM ipa_batch_rows f
                     WHERE f.batch_id = r.batch_id AND f.external_ref = r.external_ref) AS first_row
              FROM ipa_batch_rows r
             WHERE batch_id = $1 AND row_number >= $2 AND status = $3
             ORDER BY row_number LIMIT $4
            """,
            batch_id,
            after,
            status,
            self._chunk,
        )
        return [
            Candidate(
                cells=json.loads(r["cells"]),
                row_number=r["row_number"],
                errors=[RecordError(**e) for e in json.loads(r["errors"])] if r["errors"] else [],
                first_row=r["first_row"],
            )
            for r in rows
        ]

    async def _chunk_pass(self, batch_id: uuid.UUID, mode: Mode, cause: Cause) -> bool:
        """Validate the next chunk (rejections announced in accept_valid mode); False when none is left.
        Every row is judged before any is accepted: the error report is complete early."""
        async with self._pool.acquire() as conn, conn.transaction():
            batch = await conn.fetchrow(
                "SELECT next_row, source FROM ipa_batches WHERE batch_id = $1 FOR UPDATE", batch_id
            )
            assert batch is not None
            candidates = await self._rows(conn, batch_id, batch["next_row"], "received")
            if not candidates:
                return False
            await intake.validate(conn, candidates, batch_id=batch_id)
            if mode is Mode.ACCEPT_VALID:
                await intake.announce_rejections(
                    conn, candidates, source=batch["source"], cause=cause, batch_id=batch_id
                )
            await _save_outcomes(conn, batch_id, candidates, settled=False)
            assert candidates[-1].row_number is not None
            await conn.execute(
                """
                UPDATE ipa_batches SET validated = validated + $2, valid = valid + $3,
                       rejected = rejected + $4, next_row = $5, claimed_at = now(), updated_at = now()
                 WHERE batch_id = $1
                """,
                batch_id,
                len(candidates),
                sum(1 for c in candidates if c.record is not None),
                sum(1 for c in candidates if c.errors),
                candidates[-1].row_number + 1,
            )
            return True

    async def _accept_chunk(self, batch_id: uuid.UUID, cause: Cause) -> bool:
        """accept_valid: accept the next chunk of valid rows, judged again as they are accepted (a
        campaign paused or a reference accepted elsewhere meanwhile makes a row rejected after all)."""
        async with self._pool.acquire() as conn, conn.transaction():
            batch = await conn.fetchrow(
                "SELECT next_row, source FROM ipa_batches WHERE batch_id = $1 FOR UPDATE", batch_id
            )
            assert batch is not None
            candidates = await self._rows(conn, batch_id, batch["next_row"], "valid")
            if not candidates:
                return False
            source = batch["source"]
            await intake.validate(conn, candidates, batch_id=batch_id)
            await intake.accept(conn, candidates, source=source, cause=cause, batch_id=batch_id)
            await intake.announce_rejections(conn, candidates, source=source, cause=cause, batch_id=batch_id)
            await _save_outcomes(conn, batch_id, candidates, settled=True)
            assert candidates[-1].row_number is not None
            turned = sum(1 for c in candidates if not c.accepted)
            await conn.execute(
                """
                UPDATE ipa_batches SET accepted = accepted + $2, valid = valid - $3, rejected = rejected + $3,
                       next_row = $4, claimed_at = now(), updated_at = now()
                 WHERE batch_id = $1
                """,
                batch_id,
                len(candidates) - turned,
                turned,
                candidates[-1].row_number + 1,
            )
            return True

    async def _accept_all(self, batch_id: uuid.UUID, cause: Cause) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                source = await _source(conn, batch_id)
                next_row, accepted = 1, 0
                while candidates := await self._rows(conn, batch_id, next_row, "valid"):
                    await intake.validate(conn, candidates, batch_id=batch_id)
                    await intake.accept(conn, candidates, source=source, cause=cause, batch_id=batch_id)
                    broken = [c for c in candidates if not c.accepted]
                    if broken:
                        raise AllOrNothingBroken(broken)
                    await _save_outcomes(conn, batch_id, candidates, settled=True)
                    accepted += len(candidates)
                    assert candidates[-1].row_number is not None
                    next_row = candidates[-1].row_number + 1
                    await conn.execute(
                        "UPDATE ipa_batches SET claimed_at = now() WHERE batch_id = $1", batch_id
                    )
                await conn.execute(
                    "UPDATE ipa_batches SET accepted = $2, status = 'completed', finished_at = now(),"
                    " updated_at = now() WHERE batch_id = $1",
                    batch_id,
                    accepted,
                )
            log.info("ipa_batch_finished", batch_id=str(batch_id), status="completed")
        except AllOrNothingBroken as exc:
            async with self._pool.acquire() as conn, conn.transaction():
                await _save_outcomes(conn, batch_id, exc.candidates, settled=True)
                await conn.execute(
                    "UPDATE ipa_batches SET rejected = rejected + $2, valid = valid - $2 WHERE batch_id = $1",
                    batch_id,
                    len(exc.candidates),
                )
            await self._reject_all(batch_id, cause)

    async def _reject_all(self, batch_id: uuid.UUID, cause: Cause) -> None:
        """All or nothing, and something failed: announce the invalid rows, accept none."""
        next_row = 1
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                candidates = await self._rows(conn, batch_id, next_row, "rejected")
                if not candidates:
                    break
                await intake.announce_rejections(
                    conn, candidates, source=await _source(conn, batch_id), cause=cause, batch_id=batch_id
                )
                assert candidates[-1].row_number is not None
                next_row = candidates[-1].row_number + 1
        await self._finish(batch_id, BatchStatus.REJECTED)

    async def _finish(self, batch_id: uuid.UUID, status: BatchStatus) -> None:
        await self._pool.execute(
            "UPDATE ipa_batches SET status = $2, finished_at = now(), updated_at = now() WHERE batch_id = $1",
            batch_id,
            str(status),
        )
        log.info("ipa_batch_finished", batch_id=str(batch_id), status=str(status))


async def _source(conn: Connection, batch_id: uuid.UUID) -> str:
    return str(await conn.fetchval("SELECT source FROM ipa_batches WHERE batch_id = $1", batch_id))


async def _save_outcomes(
    conn: Connection, batch_id: uuid.UUID, candidates: Sequence[Candidate], *, settled: bool
) -> None:
    """Rows' outcomes. Accepted rows lose their cells: contact details were handed to delivery."""

    def status(c: Candidate) -> str:
        if c.errors:
            return "rejected"
        return "accepted" if c.accepted else ("valid" if not settled else "rejected")

    await conn.execute(
        """
        UPDATE ipa_batch_rows AS r
           SET status = u.status, errors = u.errors::jsonb, order_id = u.order_id,
               cells = CASE WHEN u.status = 'accepted' THEN NULL ELSE r.cells END
          FROM unnest($2::int[], $3::text[], $4::text[], $5::uuid[])
               AS u(row_number, status, errors, order_id)
         WHERE r.batch_id = $1 AND r.row_number = u.row_number
        """,
        batch_id,
        [c.row_number for c in candidates],
        [status(c) for c in candidates],
        [json.dumps([e.as_dict() for e in c.errors]) if c.errors else None for c in candidates],
        [c.order_id if c.accepted else None for c in candidates],
    )


class BatchWorker:
    """Runs batches in the background, one at a time per replica, woken by uploads or every poll."""

    def __init__(self, pool: asyncpg.Pool, *, chunk_rows: int, poll_s: float, stale_after_s: float) -> None:
        self._pool = pool
        self._processor = BatchProcessor(pool, chunk_rows=chunk_rows)
        self._poll_s = poll_s
        self._stale_after_s = stale_after_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: uuid.UUID | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="ipa-batch-worker")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._current is not None:
            # Hand the batch over at once rather than after the stale-claim delay.
            with contextlib.suppress(Exception):
                await self._pool.execute(
                    "UPDATE ipa_batches SET claimed_at = NULL WHERE batch_id = $1", self._current
                )

    async def _loop(self) -> None:
        while True:
            try:
                batch = await claim_batch(self._pool, self._stale_after_s)
                if batch is not None:
                    self._current = batch["batch_id"]
                    try:
                        await self._processor.run(batch)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        await self._failed(batch["batch_id"], exc)
                    self._current = None
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ipa_batch_worker_error")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)

    async def _failed(self, batch_id: uuid.UUID, exc: Exception) -> None:
        if is_transient(exc):
            log.warning("ipa_batch_interrupted", batch_id=str(batch_id), error=repr(exc))
            await asyncio.sleep(self._poll_s)
            with contextlib.suppress(Exception):
                await self._pool.execute(
                    "UPDATE ipa_batches SET claimed_at = NULL WHERE batch_id = $1", batch_id
                )
            return
        log.exception("ipa_batch_failed", batch_id=str(batch_id))
        await self._pool.execute(
            "UPDATE ipa_batches SET status = 'failed', failure = $2, finished_at = now(), updated_at = now()"
            " WHERE batch_id = $1",
            batch_id,
            f"internal error ({type(exc).__name__}); the rows stay stored and can be re-run",
        )
