"""The statements of IPA batches: the batch row (its status, cursor and counters), its stored rows and
their outcomes, and the worker's claim (see `services.order.batches`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg

from chassis.db import Connection

Executor: TypeAlias = "Connection | asyncpg.Pool"
"""A connection, or the pool for a statement of its own."""

_BATCH_COLUMNS = (
    "batch_id, source, mode, status, file_name, created_by, received, validated, valid, accepted, rejected,"
    " failure, created_at, updated_at, finished_at"
)
_AWAITING_APPROVAL = " AND status = 'awaiting_approval'"


async def copy_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Rows as read: (batch_id, row_number, external_ref, cells JSON, errors JSON)."""
    await conn.copy_records_to_table(
        "ipa_batch_rows", records=rows, columns=["batch_id", "row_number", "external_ref", "cells", "errors"]
    )


async def create_batch(
    conn: Connection, batch_id: uuid.UUID, *, source: str, mode: str, created_by: str, file_name: str | None
) -> None:
    await conn.execute(
        "INSERT INTO ipa_batches (batch_id, source, mode, status, created_by, file_name)"
        " VALUES ($1, $2, $3, 'receiving', $4, $5)",
        batch_id,
        source,
        mode,
        created_by,
        file_name,
    )


async def _update_batch(db: Executor, batch_id: uuid.UUID, changes: str, *args: Any, when: str = "") -> str:
    """Change the batch's row (`changes` take `args` from $2 on) and its `updated_at`; `when` narrows
    which row qualifies. The command tag, e.g. `UPDATE 1`."""
    return await db.execute(
        f"UPDATE ipa_batches SET {changes}, updated_at = now() WHERE batch_id = $1{when}",  # noqa: S608 -- SET/WHERE fragments are literals from this module; values are bind parameters
        batch_id,
        *args,
    )


async def queue_batch(conn: Connection, batch_id: uuid.UUID, received: int) -> None:
    await _update_batch(conn, batch_id, "status = 'queued', received = $2", received)


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
    await _update_batch(conn, batch_id, "status = 'awaiting_approval', received = $2", received)


async def release_batch(conn: Connection, batch_id: uuid.UUID) -> bool:
    """Queue a held batch for the worker; False when it is not waiting for approval."""
    done = await _update_batch(conn, batch_id, "status = 'queued'", when=_AWAITING_APPROVAL)
    return done == "UPDATE 1"


async def decline_batch(conn: Connection, batch_id: uuid.UUID) -> None:
    """A rejected batch ends untouched, and its rows (with their contact details) go."""
    await _update_batch(conn, batch_id, "status = 'declined', finished_at = now()", when=_AWAITING_APPROVAL)
    await conn.execute("DELETE FROM ipa_batch_rows WHERE batch_id = $1", batch_id)


async def recent_batches(conn: Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_BATCH_COLUMNS} FROM ipa_batches WHERE status <> 'receiving'"  # noqa: S608 -- columns are a module constant; values are bind parameters
        " ORDER BY created_at DESC LIMIT $1",
        limit,
    )
    return [dict(r) for r in rows]


async def batch(conn: Connection, batch_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_BATCH_COLUMNS} FROM ipa_batches WHERE batch_id = $1", batch_id)  # noqa: S608 -- columns are a module constant; values are bind parameters


async def orders_by_state(conn: Connection, batch_id: uuid.UUID) -> dict[str, int]:
    """How many of the batch's orders are in each state."""
    rows = await conn.fetch(
        "SELECT state, count(*) AS n FROM orders WHERE batch_id = $1 GROUP BY state", batch_id
    )
    return {r["state"]: r["n"] for r in rows}


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


async def claim_batch(pool: asyncpg.Pool, stale_after_s: float) -> asyncpg.Record | None:
    """The oldest batch left to run that no live worker holds, claimed for this one."""
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


async def unclaim(db: Executor, batch_id: uuid.UUID) -> None:
    """Hand the batch to the next worker at once rather than after the stale-claim delay."""
    await db.execute("UPDATE ipa_batches SET claimed_at = NULL WHERE batch_id = $1", batch_id)


async def renew_claim(conn: Connection, batch_id: uuid.UUID) -> None:
    await conn.execute("UPDATE ipa_batches SET claimed_at = now() WHERE batch_id = $1", batch_id)


async def lock_cursor(conn: Connection, batch_id: uuid.UUID) -> asyncpg.Record:
    """The batch's `next_row` and `source`, locked for the chunk."""
    row = await conn.fetchrow(
        "SELECT next_row, source FROM ipa_batches WHERE batch_id = $1 FOR UPDATE", batch_id
    )
    assert row is not None
    return row


async def source(conn: Connection, batch_id: uuid.UUID) -> str:
    return str(await conn.fetchval("SELECT source FROM ipa_batches WHERE batch_id = $1", batch_id))


async def rejected_count(db: Executor, batch_id: uuid.UUID) -> int:
    count: int = await db.fetchval("SELECT rejected FROM ipa_batches WHERE batch_id = $1", batch_id)
    return count


async def rows(
    conn: Connection, batch_id: uuid.UUID, *, after: int, status: str, limit: int
) -> list[asyncpg.Record]:
    """The batch's rows in `status` from row `after` on, each with the first row carrying its reference."""
    return await conn.fetch(
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
        limit,
    )


async def count_validated(
    conn: Connection, batch_id: uuid.UUID, *, validated: int, valid: int, rejected: int, next_row: int
) -> None:
    await _update_batch(
        conn,
        batch_id,
        "validated = validated + $2, valid = valid + $3, rejected = rejected + $4, next_row = $5,"
        " claimed_at = now()",
        validated,
        valid,
        rejected,
        next_row,
    )


async def start_accepting(db: Executor, batch_id: uuid.UUID) -> None:
    await _update_batch(db, batch_id, "status = 'accepting', next_row = 1")


async def count_accepted(
    conn: Connection, batch_id: uuid.UUID, *, accepted: int, turned: int, next_row: int
) -> None:
    """`accepted` more rows; `turned` valid rows were rejected after all."""
    await _update_batch(
        conn,
        batch_id,
        "accepted = accepted + $2, valid = valid - $3, rejected = rejected + $3, next_row = $4,"
        " claimed_at = now()",
        accepted,
        turned,
        next_row,
    )


async def complete_all(conn: Connection, batch_id: uuid.UUID, accepted: int) -> None:
    """All or nothing: every row accepted."""
    await _update_batch(conn, batch_id, "accepted = $2, status = 'completed', finished_at = now()", accepted)


async def count_turned(conn: Connection, batch_id: uuid.UUID, turned: int) -> None:
    """`turned` valid rows were rejected after all."""
    await conn.execute(
        "UPDATE ipa_batches SET rejected = rejected + $2, valid = valid - $2 WHERE batch_id = $1",
        batch_id,
        turned,
    )


async def finish(db: Executor, batch_id: uuid.UUID, status: str) -> None:
    await _update_batch(db, batch_id, "status = $2, finished_at = now()", status)


async def fail(db: Executor, batch_id: uuid.UUID, failure: str) -> None:
    await _update_batch(db, batch_id, "status = 'failed', failure = $2, finished_at = now()", failure)


async def save_outcomes(
    conn: Connection,
    batch_id: uuid.UUID,
    outcomes: Sequence[tuple[int | None, str, str | None, uuid.UUID | None]],
) -> None:
    """Rows' outcomes: (row_number, status, errors JSON, order_id). Accepted rows lose their cells."""
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
        [o[0] for o in outcomes],
        [o[1] for o in outcomes],
        [o[2] for o in outcomes],
        [o[3] for o in outcomes],
    )
