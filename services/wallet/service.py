"""The wallet's composition: ledger, handlers, routers and the expiry job in one `ServiceSpec`.

Nothing connects here; `run_service` (or a test's `ServiceRuntime`) does. The clock is a parameter so
tests decide what time it is for the ledger, the dashboard and the expiry job alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from chassis.approvals import Approvals, approvals_router
from chassis.audit_api import audit_router
from chassis.clock import SYSTEM_CLOCK, Clock
from chassis.jobs import PeriodicJob
from chassis.service import ServiceSpec

from .api import WalletContext, adjustment_approval
from .api import router as wallet_router
from .domain import ExpiryPolicy
from .expiry_warnings import warn_expiring
from .handlers import WalletHandlers
from .ledger import Ledger
from .reconciliation import send_reconciliation
from .reports import router as reports_router
from .settings import WalletSettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
EXPIRY_JOB = "wallet-points-expiry"
EXPIRY_WARNING_JOB = "wallet-expiry-warnings"
RECONCILIATION_JOB = "wallet-monthly-reconciliation"


def build_spec(settings: WalletSettings, *, clock: Clock = SYSTEM_CLOCK, **overrides: Any) -> ServiceSpec:
    ledger = Ledger(ExpiryPolicy(settings.points_expiry_months), clock.now)

    async def expire(pool: asyncpg.Pool) -> None:
        await ledger.expire_due(pool, batch_members=settings.expiry_batch_members)

    async def warn(pool: asyncpg.Pool) -> None:
        await warn_expiring(pool, clock, within_days=settings.expiry_warning_days)

    async def reconcile(pool: asyncpg.Pool) -> None:
        await send_reconciliation(pool, clock, settings.finance_recipients)

    approvals = Approvals("wallet", [adjustment_approval(ledger)])
    jobs = [
        PeriodicJob(EXPIRY_JOB, settings.expiry_job_interval_s, expire),
        PeriodicJob(EXPIRY_WARNING_JOB, settings.expiry_warning_interval_s, warn),
        PeriodicJob(RECONCILIATION_JOB, settings.reconciliation_interval_s, reconcile),
    ]
    return ServiceSpec(
        title="Orchard wallet service: points ledger, member dashboard and member audit log",
        migrations_dir=MIGRATIONS,
        subscriptions=WalletHandlers(ledger).subscriptions(),
        routers=[
            wallet_router,
            approvals_router(approvals),
            reports_router,
            audit_router(),
        ],
        jobs=jobs,
        context=WalletContext(
            ledger,
            approvals,
            expiring_soon_days=settings.expiring_soon_days,
            adjustment_approval_above=settings.adjustment_approval_above,
        ),
        **overrides,
    )
