"""A campaign's codes, listed a page at a time or exported whole: masked, test codes flagged.

No listing or export holds a clear code, except an admin's export asked for with `clear=true` and a
reason: that export is audited (`codes.exported_clear`: who, why, which codes, how many) before its
first line is sent, as each single reveal is. Everyone else reveals one code at a time through the
audited `POST /v1/codes/{code_id}/reveal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from chassis.audit import append_audit
from chassis.db import Connection
from chassis.money import with_money_text
from contracts.vouchers import CodeStatus

from .crypto import CodeVault

COLUMNS: tuple[str, ...] = (
    "code_id",
    "campaign_id",
    "masked_code",
    "status",
    "test",
    "source",
    "value",
    "remaining_value",
    "currency",
    "expires_at",
    "order_id",
    "member_id",
    "issued_at",
    "delivered",
    "delivery_failed",
    "flag_reason",
    "created_at",
)
_SELECT = """SELECT seq, code_id, campaign_id, '****-' || last4 AS masked_code, status, test, source, value,
       remaining_value, (SELECT currency FROM campaigns c WHERE c.campaign_id = codes.campaign_id)
       AS currency, expires_at, order_id, member_id, issued_at, delivered, delivery_failed, flag_reason,
       created_at"""


@dataclass(frozen=True)
class CodeListFilter:
    campaign_id: str
    status: CodeStatus | None = None
    test: bool | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["campaign_id = $1"]
        args: list[Any] = [self.campaign_id]
        if self.status is not None:
            args.append(str(self.status))
            clauses.append(f"status = ${len(args)}")
        if self.test is not None:
            args.append(self.test)
            clauses.append(f"test = ${len(args)}")
        return " AND ".join(clauses), args

    def described(self) -> dict[str, Any]:
        return {"status": None if self.status is None else str(self.status), "test": self.test}


async def page(conn: Connection, flt: CodeListFilter, *, after: int, limit: int) -> list[dict[str, Any]]:
    """Codes after pool position `after`, in pool order (keyset on the campaign's `seq`)."""
    where, args = flt.where()
    rows = await conn.fetch(
        f"{_SELECT} FROM codes WHERE {where} AND seq > ${len(args) + 1} ORDER BY seq LIMIT ${len(args) + 2}",
        *args,
        after,
        limit,
    )
    return [code_json(r) for r in rows]


def export_query(flt: CodeListFilter, *, clear: bool) -> tuple[str, list[Any]]:
    where, args = flt.where()
    secret = ", lookup_hash, secret, key_id" if clear else ""
    return f"{_SELECT}{secret} FROM codes WHERE {where} ORDER BY seq", args


async def audit_clear_export(
    conn: Connection, flt: CodeListFilter, *, actor: str, reason: str, format: str
) -> int:
    """The audit entry every clear export leaves before it starts; answers how many codes it holds."""
    where, args = flt.where()
    count: int = await conn.fetchval(f"SELECT count(*) FROM codes WHERE {where}", *args)
    await append_audit(
        conn,
        actor=actor,
        action="codes.exported_clear",
        subject_type="campaign",
        subject_id=flt.campaign_id,
        details={"reason": reason, "codes": count, "format": format, **flt.described()},
    )
    return count


def code_json(row: asyncpg.Record) -> dict[str, Any]:
    """A listed code as answered: its values in its campaign currency's minor units."""
    return with_money_text(row, "value", "remaining_value")


def clear_values(vault: CodeVault) -> Any:
    """Row → cells with the clear `code`, opened from the row's ciphertext."""

    def values(row: asyncpg.Record) -> Mapping[str, object]:
        cells = code_json(row)
        cells["code"] = vault.open(row["key_id"], bytes(row["secret"]), bytes(row["lookup_hash"]))
        return cells

    return values
