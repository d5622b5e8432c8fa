"""SQL of the member directory (`member_contacts`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from chassis.db import Connection

from .domain import FIELDS

_COLUMNS = ", ".join(FIELDS)


async def locked_entry(conn: Connection, member_id: str) -> asyncpg.Record:
    """The member's row, created empty if missing, locked until the transaction ends."""
    await conn.execute(
        "INSERT INTO member_contacts (member_id) VALUES ($1) ON CONFLICT (member_id) DO NOTHING", member_id
    )
    row = await conn.fetchrow("SELECT * FROM member_contacts WHERE member_id = $1 FOR UPDATE", member_id)
    assert row is not None
    return row


async def entry(conn: Connection, member_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT member_id, {_COLUMNS}, listed, listed_by, hris_changed_at, updated_at"  # noqa: S608 -- columns are the FIELDS constant; values are bind parameters
        " FROM member_contacts WHERE member_id = $1",
        member_id,
    )


async def save_entry(
    conn: Connection,
    member_id: str,
    values: Mapping[str, Any],
    *,
    listed_by: str,
    hris_changed_at: datetime | None,
) -> None:
    """Set `values` (directory fields) on the member's locked row and mark it listed."""
    fields = [f for f in FIELDS if f in values]
    assignments = "".join(f"{field} = ${n}, " for n, field in enumerate(fields, start=4))
    await conn.execute(
        f"""
        UPDATE member_contacts SET {assignments}
               listed = true, listed_by = $2,
               hris_changed_at = greatest(hris_changed_at, $3), updated_at = now()
         WHERE member_id = $1
        """,  # noqa: S608 -- SET columns come from the FIELDS constant; values are bind parameters
        member_id,
        listed_by,
        hris_changed_at,
        *(values[f] for f in fields),
    )


async def voucher_for_notice(conn: Connection, order_id: uuid.UUID) -> asyncpg.Record | None:
    """What a member is told of their voucher: never the code, only its mask, booking and expiry."""
    return await conn.fetchrow(
        "SELECT member_id, booking_id, masked_code, expires_at FROM deliveries"
        " WHERE order_id = $1 AND kind = 'voucher'",
        order_id,
    )


async def note_expiry(conn: Connection, order_id: uuid.UUID, *, later_than: datetime, now: datetime) -> bool:
    """True once per new expiry of the order's code that is later than `later_than` and than any the
    member was told of before."""
    if now <= later_than:
        return False
    told = await conn.fetchval(
        """
        INSERT INTO member_expiry_notices (order_id, expires_at) VALUES ($1, $2)
        ON CONFLICT (order_id) DO UPDATE SET expires_at = EXCLUDED.expires_at, noticed_at = now()
         WHERE member_expiry_notices.expires_at < EXCLUDED.expires_at
        RETURNING true
        """,
        order_id,
        now,
    )
    return bool(told)
