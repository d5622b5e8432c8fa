"""The statements of a campaign's code lists: a page of masked codes, the export's query (with the
ciphertext when clear codes are asked for) and the count a clear export audits (see
`services.voucher.code_lists`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from chassis.db import Connection
from contracts.vouchers import CodeStatus

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


async def page(conn: Connection, flt: CodeListFilter, *, after: int, limit: int) -> list[asyncpg.Record]:
    """Codes after pool position `after`, in pool order (keyset on the campaign's `seq`)."""
    where, args = flt.where()
    return await conn.fetch(
        f"{_SELECT} FROM codes WHERE {where} AND seq > ${len(args) + 1} ORDER BY seq LIMIT ${len(args) + 2}",
        *args,
        after,
        limit,
    )


def export_query(flt: CodeListFilter, *, clear: bool) -> tuple[str, list[Any]]:
    """Every code the filter names, in pool order, with what opens it (`lookup_hash`, `secret`,
    `key_id`) when `clear`: the statement and its arguments, for a server-side cursor."""
    where, args = flt.where()
    secret = ", lookup_hash, secret, key_id" if clear else ""
    return f"{_SELECT}{secret} FROM codes WHERE {where} ORDER BY seq", args


async def count(conn: Connection, flt: CodeListFilter) -> int:
    where, args = flt.where()
    found: int = await conn.fetchval(f"SELECT count(*) FROM codes WHERE {where}", *args)  # noqa: S608 -- WHERE from CodeListFilter's fixed fragments; values are bind parameters
    return found
