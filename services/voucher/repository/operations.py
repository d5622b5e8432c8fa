"""The statements of the operations on codes: the codes a selection names, recovery's voiding, expiry
extension, flagging, the expiry job and the history entries they write (see
`services.voucher.operations`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from chassis.db import Connection
from contracts.vouchers import CodeStatus

from ..domain import CodeOperationRefused

# What a code changed by these operations is published with.
_CHANGED = (
    "c.code_id, c.campaign_id, c.order_id, c.status, t.old_status, c.remaining_value, c.expires_at, c.test"
)
_RESTORED = """CASE WHEN remaining_value < value THEN 'partially_redeemed'
                    WHEN order_id IS NULL THEN 'available' ELSE 'issued' END"""


@dataclass(frozen=True)
class Selection:
    """Codes by id, or by filter (campaign, status, failed delivery, issue date range)."""

    code_ids: tuple[uuid.UUID, ...] = ()
    campaign_id: str | None = None
    status: CodeStatus | None = None
    delivery_failed: bool | None = None
    issued_from: datetime | None = None
    issued_to: datetime | None = None

    def where(self, first_param: int = 1) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []

        def add(sql: str, value: Any) -> None:
            params.append(value)
            clauses.append(sql.replace("?", f"${first_param + len(params) - 1}"))

        if self.code_ids:
            add("code_id = ANY(?::uuid[])", list(self.code_ids))
        if self.campaign_id is not None:
            add("campaign_id = ?", self.campaign_id)
        if self.status is not None:
            add("status = ?", str(self.status))
        if self.delivery_failed is not None:
            add("delivery_failed = ?", self.delivery_failed)
        if self.issued_from is not None:
            add("issued_at >= ?", self.issued_from)
        if self.issued_to is not None:
            add("issued_at < ?", self.issued_to)
        if not clauses:
            raise CodeOperationRefused("name the codes: code_ids or at least one filter")
        return " AND ".join(clauses), params


async def lock_recoverable(conn: Connection, selection: Selection, limit: int) -> list[asyncpg.Record]:
    """The selected real codes still held by an order with their whole value, locked, in pool order."""
    where, params = selection.where()
    return await conn.fetch(
        f"""
        SELECT code_id, campaign_id, status, value, remaining_value, own_expires_at, order_id, member_id,
               delivered
          FROM codes
         WHERE {where} AND status IN ('issued', 'expired') AND order_id IS NOT NULL
           AND remaining_value = value AND NOT test
         ORDER BY seq LIMIT {int(limit)} FOR UPDATE
        """,  # noqa: S608 -- WHERE from Selection's fixed fragments, LIMIT is int(); values are bind parameters
        *params,
    )


async def void_code(conn: Connection, code_id: uuid.UUID) -> None:
    """Retire the code for good; it keeps its order for the record."""
    await conn.execute(
        "UPDATE codes SET status = 'void', prior_status = status, updated_at = now() WHERE code_id = $1",
        code_id,
    )


def _extendable(selection: Selection) -> tuple[str, list[Any]]:
    """The selected codes expiring before $1 whose expiry may move."""
    where, params = selection.where(2)
    return (
        f"""{where} AND expires_at IS NOT NULL AND expires_at < $1
        AND status IN ('available', 'recovered', 'issued', 'partially_redeemed', 'expired')""",
        params,
    )


async def count_extendable(conn: Connection, selection: Selection, expires_at: datetime) -> int:
    eligible, params = _extendable(selection)
    count: int = await conn.fetchval(f"SELECT count(*) FROM codes WHERE {eligible}", expires_at, *params)  # noqa: S608 -- WHERE from Selection's fixed fragments; values are bind parameters
    return count


async def extend_expiry(conn: Connection, selection: Selection, expires_at: datetime) -> list[asyncpg.Record]:
    """Move the codes' expiry to `expires_at`; expired ones take back the status they would have."""
    eligible, params = _extendable(selection)
    return await conn.fetch(
        f"""
        WITH target AS (SELECT code_id, status AS old_status FROM codes WHERE {eligible} FOR UPDATE)
        UPDATE codes c SET expires_at = $1,
               own_expires_at = CASE WHEN own_expires_at IS NULL THEN NULL
                                   ELSE greatest(own_expires_at, $1) END,
               status = CASE WHEN c.status = 'expired' THEN {_RESTORED} ELSE c.status END,
               prior_status = CASE WHEN c.status = 'expired' THEN NULL ELSE prior_status END,
               updated_at = now()
          FROM target t WHERE c.code_id = t.code_id
        RETURNING {_CHANGED}
        """,  # noqa: S608 -- WHERE from Selection's fixed fragments, CASE/RETURNING module constants; values are bind parameters
        expires_at,
        *params,
    )


async def record_expiry_extended(
    conn: Connection, rows: Sequence[asyncpg.Record], *, actor: str, reason: str, expires_at: datetime
) -> None:
    await conn.executemany(
        "INSERT INTO code_events (code_id, action, status, previous_status, actor, reason, details)"
        " VALUES ($1, 'expiry_extended', $2, $3, $4, $5, jsonb_build_object('expires_at', $6::text))",
        [(r["code_id"], r["status"], r["old_status"], actor, reason, expires_at.isoformat()) for r in rows],
    )


async def move_fixed_expiry_later(conn: Connection, campaign_id: str, expires_at: datetime) -> None:
    """A campaign whose codes expire on a fixed date before `expires_at` now expires then."""
    await conn.execute(
        "UPDATE campaigns SET expiry_at = $2 WHERE campaign_id = $1 AND expiry_kind = 'fixed_date'"
        " AND expiry_at < $2",
        campaign_id,
        expires_at,
    )


async def flag_codes(conn: Connection, code_ids: list[uuid.UUID], reason: str) -> list[asyncpg.Record]:
    """Flag the codes that are neither flagged nor redeemed, remembering their status."""
    return await conn.fetch(
        f"""
        WITH target AS (SELECT code_id, status AS old_status FROM codes
                         WHERE code_id = ANY($1::uuid[]) AND status NOT IN ('flagged', 'redeemed')
                           FOR UPDATE)
        UPDATE codes c SET prior_status = c.status, status = 'flagged', flag_reason = $2,
               updated_at = now()
          FROM target t WHERE c.code_id = t.code_id
        RETURNING {_CHANGED}
        """,  # noqa: S608 -- RETURNING list is a module constant; values are bind parameters
        code_ids,
        reason,
    )


async def unflag_codes(conn: Connection, code_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """Give the flagged codes back the status they had."""
    return await conn.fetch(
        f"""
        WITH target AS (SELECT code_id, status AS old_status FROM codes
                         WHERE code_id = ANY($1::uuid[]) AND status = 'flagged' FOR UPDATE)
        UPDATE codes c SET status = coalesce(c.prior_status, 'available'), prior_status = NULL,
               flag_reason = NULL, updated_at = now()
          FROM target t WHERE c.code_id = t.code_id
        RETURNING {_CHANGED}
        """,  # noqa: S608 -- RETURNING list is a module constant; values are bind parameters
        code_ids,
    )


async def expire_due(conn: Connection, limit: int) -> list[asyncpg.Record]:
    """Expire up to `limit` codes whose time has come, oldest expiry first, skipping locked ones."""
    return await conn.fetch(
        f"""
        WITH target AS (SELECT code_id, status AS old_status FROM codes
                         WHERE status IN ('available', 'recovered', 'issued', 'partially_redeemed')
                           AND expires_at <= now()
                         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        UPDATE codes c SET prior_status = c.status, status = 'expired', updated_at = now()
          FROM target t WHERE c.code_id = t.code_id
        RETURNING {_CHANGED}
        """,  # noqa: S608 -- RETURNING list is a module constant; values are bind parameters
        limit,
    )


async def record_changes(
    conn: Connection, rows: Sequence[asyncpg.Record], *, action: str, actor: str, reason: str | None
) -> None:
    """One history entry per changed code (rows as the statements above return them)."""
    await conn.executemany(
        "INSERT INTO code_events (code_id, action, status, previous_status, actor, reason, order_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(r["code_id"], action, r["status"], r["old_status"], actor, reason, r["order_id"]) for r in rows],
    )


async def campaigns_of_codes(conn: Connection, code_ids: Sequence[str]) -> list[str]:
    """The campaigns these codes (ids as text) belong to, each once, in order."""
    rows = await conn.fetch(
        "SELECT DISTINCT campaign_id FROM codes WHERE code_id = ANY($1::uuid[]) ORDER BY campaign_id",
        [uuid.UUID(i) for i in code_ids],
    )
    return [r["campaign_id"] for r in rows]
