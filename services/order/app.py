"""The order service's composition root: settings, routes, subscriptions and the batch worker."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends

from chassis.approvals import approvals_router
from chassis.audit_api import audit_router
from chassis.http import body_limit
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
    ctx.approvals = order_approvals(ctx, bulk_cancel.bulk_cancel_approval(ctx))

    async def start_worker(runtime: ServiceRuntime) -> None:
        assert runtime.pool is not None
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

    # Uploads are refused over the configured size before they are read.
    upload = APIRouter()
    upload.include_router(
        ipa_api.upload_router, dependencies=[Depends(body_limit(settings.max_upload_bytes))]
    )
    spec = ServiceSpec(
        title=TITLE,
        migrations_dir=MIGRATIONS,
        subscriptions=handlers.subscriptions(),
        routers=[
            upload,
            ipa_api.router,
            bulk_cancel.router,
            api.router,
            api_stats.router,
            audit_router(),
            approvals_router(ctx.approvals),
        ],
        on_startup=[start_worker],
        on_shutdown=[stop_worker],
        context=ctx,
    )
    return spec, ctx
