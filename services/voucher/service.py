"""The composition root: settings → vault → subscriptions, routes and jobs. Nothing connects here."""

from __future__ import annotations

import base64
from pathlib import Path

import asyncpg

from chassis.approvals import approvals_router
from chassis.audit_api import audit_router
from chassis.jobs import PeriodicJob
from chassis.sealed_codes import CodeSealer
from chassis.service import ServiceSpec
from contracts.topics import Topics

from . import (
    api_campaigns,
    api_code_lists,
    api_codes,
    api_redemptions,
    budget_alerts,
    issuance,
    operations,
    reveal_limits,
)
from .approvals import voucher_approvals
from .context import VoucherContext
from .crypto import CodeVault, parse_keys
from .handlers import order_subscription
from .settings import VoucherSettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def build_vault(settings: VoucherSettings) -> CodeVault:
    return CodeVault(
        parse_keys(settings.encryption_keys.get_secret_value()),
        settings.active_key_id,
        base64.b64decode(settings.lookup_key.get_secret_value()),
        delivery_sealer=CodeSealer(settings.seal_public_key),
    )


def build_spec(settings: VoucherSettings, *, order_topic: str = Topics.ORDER_STATE_CHANGED) -> ServiceSpec:
    vault = build_vault(settings)
    approvals = voucher_approvals(
        vault, update_campaign=api_campaigns.update_changes, selection_of=api_codes.recovery_selection
    )
    ctx = VoucherContext(vault=vault, approvals=approvals, settings=settings)

    async def expire_codes(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await reveal_limits.purge_windows(conn)
        while True:
            async with pool.acquire() as conn, conn.transaction():
                if await operations.expire_due(conn) < 1000:
                    return

    async def serve_held_orders(pool: asyncpg.Pool) -> None:
        while True:
            async with pool.acquire() as conn, conn.transaction():
                if await issuance.serve_holds(conn, vault) == 0:
                    return

    async def alert_budgets(pool: asyncpg.Pool) -> None:
        await budget_alerts.alert_nearly_spent(pool, settings.budget_alert_ratio)

    return ServiceSpec(
        title="Orchard voucher service: campaigns, code pools, issuance and partner redemption",
        migrations_dir=MIGRATIONS,
        subscriptions=[order_subscription(vault, topic=order_topic)],
        routers=[
            api_campaigns.router,
            api_codes.router,
            api_code_lists.router,
            approvals_router(approvals),
            api_redemptions.router,
            audit_router(),
        ],
        jobs=[
            PeriodicJob("voucher-expiry", settings.expiry_interval_s, expire_codes),
            PeriodicJob("voucher-held-orders", settings.hold_interval_s, serve_held_orders),
            PeriodicJob("voucher-budget-alerts", settings.budget_alert_interval_s, alert_budgets),
        ],
        context=ctx,
    )
