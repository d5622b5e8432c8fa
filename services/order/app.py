"""The order service's composition root: settings, routes, subscriptions and the batch worker."""

from __future__ import annotations

from pathlib import Path

from chassis.approvals import approvals_router
from chassis.audit_api import audit_router
from chassis.service import ServiceRuntime, ServiceSpec

from . import api, api_stats, bulk_cancel, handlers, ipa_api
from .approvals import order_approvals
from .batches import BatchWorker
from .context import OrderContext
from .settings import OrderSettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
TITLE = "Orchard order service: IPA intake and the voucher order lifecycle"


def build_spec(settings: OrderSettings) -> tuple[ServiceSpec, OrderContext]:
    ctx = OrderContext(settings)
    approvals = order_approvals(ctx, bulk_cancel.bulk_cancel_approval(ctx))

    async def start_worker(runtime: ServiceRuntime) -> None:
        assert runtime.pool is not None
        ctx.pool = runtime.pool
        ctx.worker = BatchWorker(
            runtime.pool,
            chunk_rows=settings.ipa_chunk_rows,
            poll_s=settings.ipa_poll_s,
            stale_after_s=settings.ipa_stale_claim_s,
        )
        ctx.worker.start()

    async def stop_worker(runtime: ServiceRuntime) -> None:
        if ctx.worker is not None:
            await ctx.worker.stop()

    spec = ServiceSpec(
        title=TITLE,
        migrations_dir=MIGRATIONS,
        subscriptions=handlers.subscriptions(),
        routers=[
            ipa_api.build_router(ctx, approvals),
            bulk_cancel.build_router(ctx, approvals),
            api.build_router(ctx),
            api_stats.build_router(ctx),
            audit_router(),
            approvals_router(approvals),
        ],
        on_startup=[start_worker],
        on_shutdown=[stop_worker],
    )
    return spec, ctx
