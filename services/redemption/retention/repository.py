"""Retention in SQL: counting, purging and anonymising each record type past its cutoff."""

from __future__ import annotations

from datetime import datetime

from chassis.db import Connection
from services.redemption.retention.domain import RECORD_KINDS, RetentionAction, RetentionRule

_ANONYMISE_WHERE = "kind = $1 AND redeemed_at < $2 AND anonymised_at IS NULL AND status <> 'pending'"
_PURGE_WHERE = "kind = $1 AND redeemed_at < $2 AND status <> 'pending'"


async def count_due(conn: Connection, rule: RetentionRule, cutoff: datetime) -> int:
    """What `apply_rule` would purge or anonymise now."""
    if rule.record_type in RECORD_KINDS:
        where = _ANONYMISE_WHERE if rule.action is RetentionAction.ANONYMISE else _PURGE_WHERE
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM redemption_records WHERE {where}",  # noqa: S608 -- WHERE is a module constant; values are bind parameters
                rule.record_type,
                cutoff,
            )
        )
    if rule.record_type == "otp_challenge":
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM offer_otp_challenges WHERE status <> 'open' AND created_at < $1", cutoff
            )
        )
    return int(await conn.fetchval("SELECT count(*) FROM exports WHERE created_at < $1", cutoff))


async def apply_rule(conn: Connection, rule: RetentionRule, cutoff: datetime) -> int:
    """Purge or anonymise what the rule's record type holds from before `cutoff`; answers how many.
    Pending records are never touched, nor an OTP challenge still open."""
    kind = rule.record_type
    if kind in RECORD_KINDS and rule.action is RetentionAction.ANONYMISE:
        ids = [
            r["record_id"]
            for r in await conn.fetch(
                f"UPDATE redemption_records SET member_id = NULL, segment_token = NULL, location = NULL,"  # noqa: S608 -- WHERE is a module constant; values are bind parameters
                f" anonymised_at = now() WHERE {_ANONYMISE_WHERE} RETURNING record_id",
                kind,
                cutoff,
            )
        ]
        await conn.execute(
            "UPDATE offer_redemptions SET member_id = NULL WHERE record_id = ANY($1::uuid[])", ids
        )
        if kind == "storefront":
            await conn.execute(
                "UPDATE storefront_redemptions SET member_id = 'anonymised:' || redemption_id,"
                " contact = NULL, client_key = NULL WHERE redemption_id = ANY($1::uuid[])",
                ids,
            )
        return len(ids)
    if kind in RECORD_KINDS:
        ids = [
            r["record_id"]
            for r in await conn.fetch(
                f"DELETE FROM redemption_records WHERE {_PURGE_WHERE} RETURNING record_id",  # noqa: S608 -- WHERE is a module constant; values are bind parameters
                kind,
                cutoff,
            )
        ]
        if kind == "storefront":
            for table in ("storefront_transitions", "storefront_wallet_entries", "storefront_redemptions"):
                await conn.execute(f"DELETE FROM {table} WHERE redemption_id = ANY($1::uuid[])", ids)  # noqa: S608 -- table name from a literal tuple; ids are a bind parameter
        return len(ids)
    if kind == "otp_challenge":
        status = await conn.execute(
            "DELETE FROM offer_otp_challenges WHERE status <> 'open' AND created_at < $1", cutoff
        )
    else:
        status = await conn.execute("DELETE FROM exports WHERE created_at < $1", cutoff)
    return int(status.split()[-1])
