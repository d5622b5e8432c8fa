"""SQL of the member directory (`member_contacts`)."""

from __future__ import annotations

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
        f"SELECT member_id, {_COLUMNS}, listed, listed_by, hris_changed_at, updated_at"
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
        """,
        member_id,
        listed_by,
        hris_changed_at,
        *(values[f] for f in fields),
    )
