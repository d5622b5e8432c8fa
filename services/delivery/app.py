"""The delivery service's composition root: settings → handlers, workers, notifier, jobs, routes."""

from __future__ import annotations

from pathlib import Path

from chassis.jobs import PeriodicJob
from chassis.service import ServiceRuntime, ServiceSpec
from contracts.values import Channel

from . import api, repository
from .channels import ChannelSender
from .channels.email import SmtpEmailSender
from .channels.twilio import TwilioSender
from .handlers import DeliveryHandlers
from .notifications import Notifier
from .sending import DeliveryEngine
from .settings import DeliverySettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def default_senders(settings: DeliverySettings) -> dict[Channel, ChannelSender]:
    return {
        Channel.EMAIL: SmtpEmailSender(settings),
        Channel.SMS: TwilioSender(
            channel=Channel.SMS,
            base_url=settings.sms_base_url,
            account_sid=settings.sms_account_sid,
            auth_token=settings.sms_auth_token,
            from_number=settings.sms_from,
            timeout_s=settings.provider_timeout_s,
            max_connections=max(settings.sms_workers, 1),
        ),
        Channel.WHATSAPP: TwilioSender(
            channel=Channel.WHATSAPP,
            base_url=settings.whatsapp_base_url,
            account_sid=settings.whatsapp_account_sid,
            auth_token=settings.whatsapp_auth_token,
            from_number=settings.whatsapp_from,
            timeout_s=settings.provider_timeout_s,
            max_connections=max(settings.whatsapp_workers, 1),
        ),
    }


def build_spec(settings: DeliverySettings, engine: DeliveryEngine | None = None) -> ServiceSpec:
    """Wiring only: nothing connects until the runtime starts."""
    engine = engine or DeliveryEngine(settings, default_senders(settings))
    notifier = Notifier(settings)

    async def start(runtime: ServiceRuntime) -> None:
        assert runtime.pool is not None
        await engine.start(runtime.pool, runtime.dsn, runtime.settings.schema_name)

    async def stop(runtime: ServiceRuntime) -> None:
        await engine.stop()
        await notifier.close()

    async def recover() -> None:
        async with engine.pool.acquire() as conn, conn.transaction():
            await repository.flag_unknown_outcomes(conn)

    async def purge() -> None:
        async with engine.pool.acquire() as conn:
            await repository.purge_held_codes(conn, settings.code_retention_days)

    async def notify() -> None:
        await notifier.post_pending(engine.pool)

    return ServiceSpec(
        title="Orchard delivery service: email, SMS and WhatsApp delivery with retries and notifications",
        migrations_dir=MIGRATIONS,
        subscriptions=DeliveryHandlers(settings).subscriptions(),
        routers=[api.router],
        jobs=[
            PeriodicJob("delivery-unknown-outcomes", settings.recovery_interval_s, recover),
            PeriodicJob("delivery-code-retention", 3600.0, purge),
            PeriodicJob("delivery-notifier", settings.notify_interval_s, notify),
        ],
        on_startup=[start],
        on_shutdown=[stop],
    )
