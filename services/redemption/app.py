"""The composition root: what the redemption service subscribes to, serves and runs (wiring only)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from chassis.audit_api import audit_router
from chassis.jobs import PeriodicJob
from chassis.service import ServiceSpec
from services.redemption.exports.api import router as exports_router
from services.redemption.exports.repository import run_next_export
from services.redemption.offers.api import expire_open_challenges
from services.redemption.offers.api import router as offers_router
from services.redemption.offers.manage import router as offer_management_router
from services.redemption.records.api import router as records_router
from services.redemption.records.handlers import record_subscriptions
from services.redemption.retention.api import router as retention_router
from services.redemption.retention.service import JOB_ACTOR, rules_from, run_retention
from services.redemption.settings import RedemptionSettings
from services.redemption.storefront.api import policy_of
from services.redemption.storefront.api import router as storefront_router
from services.redemption.storefront.handlers import redrive_job, storefront_subscriptions
from services.redemption.storefront.manage import router as reward_management_router

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
TITLE = "Orchard redemption service: storefront saga, offer redemptions and exports"


def build_spec(settings: RedemptionSettings) -> ServiceSpec:
    policy = policy_of(settings)
    return ServiceSpec(
        title=TITLE,
        migrations_dir=MIGRATIONS,
        subscriptions=[*storefront_subscriptions(policy), *record_subscriptions()],
        routers=[
            storefront_router,
            reward_management_router,
            offers_router,
            offer_management_router,
            records_router,
            exports_router,
            retention_router,
            audit_router(),
        ],
        jobs=[
            redrive_job(policy, settings.saga_redrive_interval_s),
            PeriodicJob("redemption-offer-code-expiry", 15.0, _expire),
            PeriodicJob(
                "redemption-exports",
                settings.export_interval_s,
                lambda pool: _exports(pool, settings.export_chunk_rows),
            ),
            PeriodicJob(
                "redemption-retention", settings.retention_interval_s, lambda pool: _retention(pool, settings)
            ),
        ],
    )


async def _expire(pool: asyncpg.Pool) -> None:
    await expire_open_challenges(pool)


async def _exports(pool: asyncpg.Pool, chunk_rows: int) -> None:
    while await run_next_export(pool, chunk_rows) is not None:
        pass


async def _retention(pool: asyncpg.Pool, settings: RedemptionSettings) -> None:
    await run_retention(pool, rules_from(settings), actor=JOB_ACTOR, dry_run=False)
