"""Applying retention: purge or anonymise what is past its period (or only count it, in a dry run), and
audit every purge. Dashboards read the daily aggregates, which are left alone, so they stay exact."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.redemption.audit import audit
from services.redemption.records.repository import rollup_daily
from services.redemption.retention import repository as repo
from services.redemption.retention.domain import RetentionAction, RetentionRule
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
                affected = await repo.count_due(conn, rule, cutoff)
            else:
                affected = await repo.apply_rule(conn, rule, cutoff)
                if affected:
                    details = {"days": rule.days, "cutoff": cutoff.isoformat(), "affected": affected}
                    await audit(conn, actor, "retention", rule.record_type, rule.action, details)
        outcomes.append(RetentionOutcome(rule.record_type, rule.action, rule.days, cutoff, affected))
    if not dry_run:
        async with pool.acquire() as conn, conn.transaction():
            await rollup_daily(conn)
    return outcomes
