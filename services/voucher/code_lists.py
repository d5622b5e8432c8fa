"""A campaign's codes, listed a page at a time or exported whole: masked, test codes flagged.

No listing or export holds a clear code, except an admin's export asked for with `clear=true` and a
reason: that export is audited (`codes.exported_clear`: who, why, which codes, how many) before its
first line is sent, as each single reveal is. Everyone else reveals one code at a time through the
audited `POST /v1/codes/{code_id}/reveal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from chassis.db import Connection
from chassis.money import with_money_text

from . import campaigns
from .crypto import CodeVault
from .repository import code_lists as repository
from .repository.code_lists import CodeListFilter as CodeListFilter

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


async def page(conn: Connection, flt: CodeListFilter, *, after: int, limit: int) -> list[dict[str, Any]]:
    """Codes after pool position `after`, in pool order (keyset on the campaign's `seq`)."""
    return [code_json(r) for r in await repository.page(conn, flt, after=after, limit=limit)]


async def audit_clear_export(
    conn: Connection, flt: CodeListFilter, *, actor: str, reason: str, format: str
) -> int:
    """The audit entry every clear export leaves before it starts; answers how many codes it holds."""
    count = await repository.count(conn, flt)
    details = {"reason": reason, "codes": count, "format": format, **flt.described()}
    await campaigns.audit(conn, flt.campaign_id, actor=actor, action="codes.exported_clear", details=details)
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
