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
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import asyncpg
import structlog

from chassis.db import Connection
from chassis.errors import is_transient

from . import intake
from .intake import Candidate
from .orders import Cause
from .repository import batches as batch_repository
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
            await batch_repository.copy_rows(self._conn, self._pending)
            self._pending = []


async def batch_progress(conn: Connection, batch_id: uuid.UUID) -> dict[str, Any] | None:
    batch = await batch_repository.batch(conn, batch_id)
    if batch is None or batch["status"] == "receiving":
        return None
    counts = await batch_repository.orders_by_state(conn, batch_id)
    orders = {state: counts.get(state, 0) for state in ("pending", "completed", "cancelled")}
    body = dict(batch)
    body["orders"] = orders
    body["points_accepted"] = batch["accepted"] - sum(orders.values())
    return body


# The worker


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
            rejected = await batch_repository.rejected_count(self._pool, batch_id)
            if mode is Mode.ALL_OR_NOTHING and rejected:
                await self._reject_all(batch_id, cause)
                return
            await batch_repository.start_accepting(self._pool, batch_id)
        if mode is Mode.ALL_OR_NOTHING:
            await self._accept_all(batch_id, cause)
            return
        while await self._accept_chunk(batch_id, cause):
            pass
        await self._finish(batch_id, BatchStatus.COMPLETED)

    async def _rows(self, conn: Connection, batch_id: uuid.UUID, after: int, status: str) -> list[Candidate]:
        rows = await batch_repository.rows(conn, batch_id, after=after, status=status, limit=self._chunk)
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
            batch = await batch_repository.lock_cursor(conn, batch_id)
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
            await batch_repository.count_validated(
                conn,
                batch_id,
                validated=len(candidates),
                valid=sum(1 for c in candidates if c.record is not None),
                rejected=sum(1 for c in candidates if c.errors),
                next_row=candidates[-1].row_number + 1,
            )
            return True

    async def _accept_chunk(self, batch_id: uuid.UUID, cause: Cause) -> bool:
        """accept_valid: accept the next chunk of valid rows, judged again as they are accepted (a
        campaign paused or a reference accepted elsewhere meanwhile makes a row rejected after all)."""
        async with self._pool.acquire() as conn, conn.transaction():
            batch = await batch_repository.lock_cursor(conn, batch_id)
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
            await batch_repository.count_accepted(
                conn,
                batch_id,
                accepted=len(candidates) - turned,
                turned=turned,
                next_row=candidates[-1].row_number + 1,
            )
            return True

    async def _accept_all(self, batch_id: uuid.UUID, cause: Cause) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                source = await batch_repository.source(conn, batch_id)
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
                    await batch_repository.renew_claim(conn, batch_id)
                await batch_repository.complete_all(conn, batch_id, accepted)
            log.info("ipa_batch_finished", batch_id=str(batch_id), status="completed")
        except AllOrNothingBroken as exc:
            async with self._pool.acquire() as conn, conn.transaction():
                await _save_outcomes(conn, batch_id, exc.candidates, settled=True)
                await batch_repository.count_turned(conn, batch_id, len(exc.candidates))
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
                    conn,
                    candidates,
                    source=await batch_repository.source(conn, batch_id),
                    cause=cause,
                    batch_id=batch_id,
                )
                assert candidates[-1].row_number is not None
                next_row = candidates[-1].row_number + 1
        await self._finish(batch_id, BatchStatus.REJECTED)

    async def _finish(self, batch_id: uuid.UUID, status: BatchStatus) -> None:
        await batch_repository.finish(self._pool, batch_id, str(status))
        log.info("ipa_batch_finished", batch_id=str(batch_id), status=str(status))


async def _save_outcomes(
    conn: Connection, batch_id: uuid.UUID, candidates: Sequence[Candidate], *, settled: bool
) -> None:
    """Rows' outcomes. Accepted rows lose their cells: contact details were handed to delivery."""

    def status(c: Candidate) -> str:
        if c.errors:
            return "rejected"
        return "accepted" if c.accepted else ("valid" if not settled else "rejected")

    await batch_repository.save_outcomes(
        conn,
        batch_id,
        [
            (
                c.row_number,
                status(c),
                json.dumps([e.as_dict() for e in c.errors]) if c.errors else None,
                c.order_id if c.accepted else None,
            )
            for c in candidates
        ],
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
                await batch_repository.unclaim(self._pool, self._current)

    async def _loop(self) -> None:
        while True:
            try:
                batch = await batch_repository.claim_batch(self._pool, self._stale_after_s)
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
                await batch_repository.unclaim(self._pool, batch_id)
            return
        log.exception("ipa_batch_failed", batch_id=str(batch_id))
        await batch_repository.fail(
            self._pool,
            batch_id,
            f"internal error ({type(exc).__name__}); the rows stay stored and can be re-run",
        )
