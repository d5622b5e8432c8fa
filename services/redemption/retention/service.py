"""Applying retention: purge or anonymise what is past its period (or only count it, in a dry run), and
audit every purge. Dashboards read the daily aggregates, which are left alone, so they stay exact."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from chassis.audit import append_audit
from chassis.db import Connection
from services.redemption.records.repository import rollup_daily
from services.redemption.retention.domain import RECORD_KINDS, RetentionAction, RetentionRule
from services.redemption.settings import RedemptionSettings

JOB_ACTOR = "service:redemption-retention"


def rules_from(settings: RedemptionSettings) -> list[RetentionRule]:
    return [
        RetentionRule("offer", settings.retention_offer_days, settings.retention_offer_action),
        RetentionRule("voucher", settings.retention_voucher_days, settings.retention_voucher_action),
        RetentionRule(
            "storefront",
            settings.retention_storefront_days,
            settings.retention_storefront_action,
        ),
        RetentionRule("otp_challenge", settings.retention_otp_days, RetentionAction.PURGE),
        RetentionRule("export", settings.export_retention_days, RetentionAction.PURGE),
    ]


@dataclass(frozen=True)
class RetentionOutcome:
    record_type: str
    action: RetentionAction
    days: int
    cutoff: datetime
    affected: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_type": self.record_type,
            "action": str(self.action),
            "days": self.days,
            "cutoff": self.cutoff.isoformat(),
            "affected": self.affected,
        }


_ANONYMISE_WHERE = "kind = $1 AND redeemed_at < $2 AND anonymised_at IS NULL AND status <> 'pending'"
_PURGE_WHERE = "kind = $1 AND redeemed_at < $2 AND status <> 'pending'"


async def _count(conn: Connection, rule: RetentionRule, cutoff: datetime) -> int:
    if rule.record_type in RECORD_KINDS:
        where = _ANONYMISE_WHERE if rule.action is RetentionAction.ANONYMISE else _PURGE_WHERE
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM redemption_records WHERE {where}", rule.record_type, cutoff
            )
        )
    if rule.record_type == "otp_challenge":
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM offer_otp_challenges WHERE status <> 'open' AND created_at < $1", cutoff
            )
        )
    return int(await conn.fetchval("SELECT count(*) FROM exports WHERE created_at < $1", cutoff))


async def _apply(conn: Connection, rule: RetentionRule, cutoff: datetime) -> int:
    kind = rule.record_type
    if kind in RECORD_KINDS and rule.action is RetentionAction.ANONYMISE:
        ids = [
            r["record_id"]
            for r in await conn.fetch(
                f"UPDATE redemption_records SET member_id = NULL, segment_token = NULL, location = NULL,"
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
                f"DELETE FROM redemption_records WHERE {_PURGE_WHERE} RETURNING record_id", kind, cutoff
            )
        ]
        if kind == "storefront":
            for table in ("storefront_transitions", "storefront_wallet_entries", "storefront_redemptions"):
                await conn.execute(f"DELETE FROM {table} WHERE redemption_id = ANY($1::uuid[])", ids)
        return len(ids)
    if kind == "otp_challenge":
        status = await conn.execute(
            "DELETE FROM offer_otp_challenges WHERE status <> 'open' AND created_at < $1", cutoff
        )
    else:
        status = await conn.execute("DELETE FROM exports WHERE created_at < $1", cutoff)
    return int(status.split()[-1])


async def run_retention(
    pool: asyncpg.Pool, rules: list[RetentionRule], *, actor: str, dry_run: bool, now: datetime | None = None
) -> list[RetentionOutcome]:
    """What is (or, in a dry run, would be) purged or anonymised per record type. Each applied rule is
    one transaction with its audit entry."""
    at = now or datetime.now(UTC)
    outcomes = []
    for rule in rules:
        cutoff = rule.cutoff(at)
        async with pool.acquire() as conn, conn.transaction():
            if dry_run:
                affected = await _count(conn, rule, cutoff)
            else:
                affected = await _apply(conn, rule, cutoff)
                if affected:
                    await append_audit(
                        conn,
                        actor=actor,
                        action=f"retention.{rule.action}",
                        subject_type="retention",
                        subject_id=rule.record_type,
                        details={"days": rule.days, "cutoff": cutoff.isoformat(), "affected": affected},
                    )
        outcomes.append(RetentionOutcome(rule.record_type, rule.action, rule.days, cutoff, affected))
    if not dry_run:
        async with pool.acquire() as conn, conn.transaction():
            await rollup_daily(conn)
    return outcomes
