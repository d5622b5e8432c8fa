"""The support service process: tickets, SLAs and the agent portal (wiring only)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from chassis.audit_api import audit_router
from chassis.clock import Clock, SystemClock
from chassis.jobs import PeriodicJob
from chassis.service import ServiceSpec, run_service
from services.support import handlers, sla_monitor
from services.support.api import portal as portal_api
from services.support.api import sla as sla_api
from services.support.api import tickets as tickets_api
from services.support.context import SupportContext
from services.support.settings import SupportSettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def build_spec(settings: SupportSettings, clock: Clock | None = None) -> tuple[ServiceSpec, SupportContext]:
    """The support service's composition; the clock is injectable so tests can move time."""
    ctx = SupportContext(settings=settings, clock=clock or SystemClock())

    async def check_sla(pool: asyncpg.Pool) -> None:
        await sla_monitor.check_sla(pool, ctx)

    spec = ServiceSpec(
        title="Orchard support service: tickets, SLAs and the agent portal",
        migrations_dir=MIGRATIONS,
        subscriptions=handlers.subscriptions(ctx),
        routers=[
            tickets_api.router,
            sla_api.router,
            portal_api.router,
            audit_router(),
        ],
        jobs=[PeriodicJob("support-sla-monitor", settings.sla_check_interval_s, check_sla)],
        context=ctx,
    )
    return spec, ctx


def main() -> None:
    settings = SupportSettings()
    spec, _ = build_spec(settings)
    run_service(spec, settings)


if __name__ == "__main__":
    main()
