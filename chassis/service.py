"""The service runtime: one composition of pool, migrations, consumers, relay, jobs and HTTP.

Start order: settings checks (a service refuses to start, one line per unsafe setting) → logging →
Postgres pool (waits for the database) → migrations → outbox relay → Kafka consumers (once Kafka
answers, and only if the broker keeps dead letters no longer than the inbox remembers handled events)
→ periodic jobs → HTTP. Stop order on SIGTERM (uvicorn turns it into a lifespan shutdown):
HTTP stops accepting → jobs finish their run → consumers stop fetching and finish the batch in hand →
the relay publishes what is pending → the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import asyncpg
import structlog
import uvicorn
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI
from faststream.kafka import KafkaBroker

from .consumer import EventConsumer, Subscription
from .db import apply_migrations, create_pool
from .dlq import dlq_retention_ms, dlq_retention_refusals
from .errors import is_transient
from .http import create_http_app
from .jobs import JobRunner, PeriodicJob
from .kafka_security import KafkaSecurity, client_options
from .logging import configure_logging
from .ops_api import router as ops_router
from .outbox import OutboxRelay
from .settings import Settings
from .tracing import configure_tracing, shutdown_tracing

log = structlog.get_logger(__name__)


class StartupRefused(RuntimeError):
    """The service must not run with these settings; each line of the message names one."""


@dataclass
class ServiceSpec:
    """What a service brings to the runtime; its `__main__` builds one and calls `run_service`."""

    title: str
    migrations_dir: Path | None = None
    subscriptions: Sequence[Subscription] = ()
    routers: Sequence[APIRouter] = ()
    jobs: Sequence[PeriodicJob] = ()
    # Runs after migrations, before consumers start: build repositories, warm caches, …
    on_startup: Sequence[Callable[[ServiceRuntime], Awaitable[None]]] = ()
    # Runs first on shutdown, before consumers and the relay stop: stop the service's own background work.
    on_shutdown: Sequence[Callable[[ServiceRuntime], Awaitable[None]]] = ()
    # Swappable so a service (or a fault test) can wrap batch processing, e.g. with instrumentation.
    consumer_class: type[EventConsumer] = EventConsumer
    # The service's own composition (settings, clock, pool…), for its route dependencies to reach as
    # `request.app.state.runtime.spec.context`.
    context: object = None


_CONSUMER_OPTIONS: Final = (
    "max_attempts",
    "fetch_max_wait_ms",
    "fetch_min_bytes",
    "max_partition_fetch_bytes",
)


class ServiceRuntime:
    """Owns a service's connections and background work for the life of the process."""

    def __init__(self, settings: Settings, spec: ServiceSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.pool: asyncpg.Pool | None = None
        self.relay: OutboxRelay | None = None
        self.broker: KafkaBroker | None = None
        self.consumer: EventConsumer | None = None
        self.jobs: JobRunner | None = None
        self._kafka_probe: AIOKafkaClient | None = None
        self._broker_task: asyncio.Task[None] | None = None
        self.refusal: StartupRefused | None = None
        # Called when a check that needs Kafka refuses to start after start() returned: ends the process.
        self.on_refusal: Callable[[StartupRefused], None] | None = None

    @property
    def dsn(self) -> str:
        if not self.settings.database_url:
            raise RuntimeError("DATABASE_URL is not set: the service has no database to use")
        return self.settings.database_url

    async def start(self) -> None:
        s = self.settings
        if refusals := s.startup_refusals():
            raise StartupRefused("\n".join(refusals))
        self.pool = await _retry_until_up(
            "postgres",
            lambda: create_pool(
                self.dsn,
                schema=s.schema_name,
                min_size=s.db_pool_min,
                max_size=s.db_pool_max,
                idle_in_transaction_timeout_s=s.db_idle_in_transaction_timeout_s,
            ),
        )
        applied = await apply_migrations(self.pool, service_dir=self.spec.migrations_dir)
        log.info("service_migrated", applied=len(applied))
        for hook in self.spec.on_startup:
            await hook(self)
        self.relay = OutboxRelay(
            dsn=self.dsn,
            schema=s.schema_name,
            bootstrap_servers=s.kafka_bootstrap_servers,
            batch_size=s.outbox_batch_size,
            poll_interval_s=s.outbox_poll_interval_s,
            client_id=f"orchard-{s.service_name}-relay",
        )
        await self.relay.start()
        self.broker = KafkaBroker(
            s.kafka_bootstrap_servers,
            client_id=f"orchard-{s.service_name}",
            security=KafkaSecurity.from_env().faststream_security(),
            graceful_timeout=s.shutdown_grace_s,
            logger=structlog.get_logger("faststream"),
            # "Received" and "Processed" for every fetched batch of every subscription: at a steady
            # trickle that was most of the log and a measurable share of CPU. Debug level keeps them.
            log_level=logging.DEBUG,
        )
        # Each `consumer_<option>` setting is the consumer's `<option>`.
        tuning = {option: getattr(s, f"consumer_{option}") for option in _CONSUMER_OPTIONS}
        self.consumer = self.spec.consumer_class(
            broker=self.broker,
            pool=self.pool,
            service=s.service_name,
            bootstrap_servers=s.kafka_bootstrap_servers,
            **tuning,
        )
        for sub in self.spec.subscriptions:
            self.consumer.subscribe(sub)
        # The broker may be down while the service starts: consume as soon as it answers, and stay
        # alive (not ready) until then.
        self._broker_task = asyncio.create_task(self._start_broker(), name="kafka-consumers")
        # Leadership on connections of the runner's own, so jobs waiting to lead hold no pool connection.
        self.jobs = JobRunner(self.pool, [self._inbox_retention_job(), *self.spec.jobs], lock_dsn=self.dsn)
        await self.jobs.start()
        log.info("service_started", subscriptions=[sub.name for sub in self.spec.subscriptions])

    def _inbox_retention_job(self) -> PeriodicJob:
        """Inbox rows outlive any redelivery Kafka can still make (topic retention is days, not weeks)."""
        days = self.settings.inbox_retention_days

        async def purge(pool: asyncpg.Pool) -> None:
            await pool.execute(
                "DELETE FROM inbox WHERE processed_at < now() - make_interval(days => $1)", days
            )

        return PeriodicJob("chassis-inbox-retention", 3600.0, purge)

    async def _start_broker(self) -> None:
        assert self.broker is not None
        if not self.spec.subscriptions:
            return
        try:
            await _retry_until_up("kafka", self._check_dlq_retention, attempts=None)
        except StartupRefused as refusal:
            self.refusal = refusal
            for line in str(refusal).splitlines():
                log.error("startup_refused", reason=line)
            if self.on_refusal is not None:
                self.on_refusal(refusal)
            return
        await _retry_until_up("kafka", self.broker.start, attempts=None)

    async def _check_dlq_retention(self) -> None:
        """The broker's own retention of this service's DLQ topics, which may differ from the registry's."""
        topics = {sub.dlq_topic for sub in self.spec.subscriptions}
        try:
            retention = await dlq_retention_ms(self.settings.kafka_bootstrap_servers, topics)
        except KafkaError as exc:
            if is_transient(exc):
                raise
            # A broker that will not describe topic configs (no DescribeConfigs right) leaves the
            # registry's retention, checked with the settings, as the one check.
            log.warning("dlq_retention_unchecked", error=repr(exc))
            return
        if refusals := dlq_retention_refusals(self.settings.inbox_retention_days, retention):
            raise StartupRefused("\n".join(refusals))

    async def stop(self) -> None:
        log.info("service_stopping")
        for hook in self.spec.on_shutdown:
            await hook(self)
        if self.jobs is not None:
            await self.jobs.stop()
        if self._broker_task is not None:
            self._broker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._broker_task
        if self.consumer is not None:
            await self.consumer.stopping()
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.stop()
        if self.consumer is not None:
            await self.consumer.close()
        if self.relay is not None:
            await self.relay.stop(flush_timeout_s=self.settings.shutdown_grace_s / 2)
        if self._kafka_probe is not None:
            with contextlib.suppress(Exception):
                await self._kafka_probe.close()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), timeout=5)
        log.info("service_stopped")

    async def check_postgres(self) -> None:
        if self.pool is None:
            raise RuntimeError("not started")
        await self.pool.fetchval("SELECT 1")

    async def check_kafka(self) -> None:
        if self._kafka_probe is None:
            probe = AIOKafkaClient(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                client_id=f"orchard-{self.settings.service_name}-health",
                **client_options(),
            )
            try:
                await probe.bootstrap()
            except BaseException:
                await probe.close()
                raise
            self._kafka_probe = probe
        await self._kafka_probe.fetch_all_metadata()
        if self.refusal is not None:
            raise self.refusal
        if self.spec.subscriptions and (self._broker_task is None or not self._broker_task.done()):
            raise RuntimeError("consumers are still connecting")

    def http_app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = create_http_app(
            self.settings,
            title=self.spec.title,
            readiness_checks={"postgres": self.check_postgres, "kafka": self.check_kafka},
            lifespan=lifespan,
        )
        app.state.runtime = self
        # Every service answers for its own consumers, outbox and dead letters the same way.
        for router in (*self.spec.routers, ops_router):
            app.include_router(router)
        return app


async def _retry_until_up(
    what: str, connect: Callable[[], Awaitable[Any]], *, attempts: int | None = 60
) -> Any:
    delay = 0.25
    attempt = 0
    while True:
        attempt += 1
        try:
            return await connect()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempts is not None and attempt >= attempts:
                raise
            log.warning("dependency_unavailable", dependency=what, error=repr(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def run_service(spec: ServiceSpec, settings: Settings | None = None) -> None:
    """Entry point of `python -m services.<name>`: serve until SIGTERM/SIGINT, then drain."""
    settings = settings or Settings()
    if refusals := settings.startup_refusals():
        _refuse_to_start(settings, refusals)
    configure_logging(settings)
    configure_tracing(settings)
    runtime = ServiceRuntime(settings, spec)
    config = uvicorn.Config(
        runtime.http_app(),
        host=settings.http_host,
        port=settings.default_port(),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        lifespan="on",
    )
    server = _Server(config)
    runtime.on_refusal = server.refuse
    try:
        server.run()
    finally:
        shutdown_tracing()
    if runtime.refusal is not None:
        _refuse_to_start(settings, str(runtime.refusal).splitlines())


def _refuse_to_start(settings: Settings, refusals: Sequence[str]) -> NoReturn:
    for line in refusals:
        print(f"orchard {settings.service_name}: refusing to start: {line}", file=sys.stderr)
    raise SystemExit(1)


class _Server(uvicorn.Server):
    """uvicorn re-raises the signal after its graceful shutdown, so the process would end "killed by
    SIGTERM"; a drained service exits 0 instead, which is what supervisors read as a clean stop."""

    def refuse(self, _: StartupRefused) -> None:
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
