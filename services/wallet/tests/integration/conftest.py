"""A real wallet runtime (consumers, relay, jobs, HTTP) on the session's broker and a fresh schema."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chassis.auth import issue_token
from chassis.db import apply_migrations, create_pool
from chassis.service import ServiceRuntime
from chassis.testing import FakeClock, private_group_consumer
from contracts.registry import consumed_by, produced_by
from deploy.infra.topics import ensure_topics
from services.wallet.domain import ExpiryPolicy
from services.wallet.ledger import Ledger
from services.wallet.service import MIGRATIONS, build_spec
from services.wallet.settings import WalletSettings
from services.wallet.tests.support import START


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def pool(service_db):
    pool = await create_pool(service_db.dsn, schema=service_db.schema, min_size=1, max_size=20)
    await apply_migrations(pool, service_dir=MIGRATIONS)
    yield pool
    await pool.close()


@pytest.fixture
def ledger(clock) -> Ledger:
    return Ledger(ExpiryPolicy(months=12), clock.now)


def wallet_settings(service_db, kafka_bootstrap: str, **extra: Any) -> WalletSettings:
    values = {
        "ORCHARD_SERVICE": "wallet",
        "DATABASE_URL": service_db.dsn,
        "ORCHARD_DB_SCHEMA": service_db.schema,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ORCHARD_OUTBOX_POLL_INTERVAL": 0.1,
        "ORCHARD_SHUTDOWN_GRACE": 5,
        "ORCHARD_WALLET_EXPIRY_JOB_INTERVAL": 0.2,
        **extra,
    }
    return WalletSettings(**values)


@dataclass
class RunningWallet:
    runtime: ServiceRuntime
    http: httpx.AsyncClient
    clock: FakeClock
    bootstrap: str

    def auth(self, role: str, sub: str = "tester") -> dict[str, str]:
        token = issue_token(role=role, sub=sub, settings=self.runtime.settings)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
async def wallet_topics(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, {*consumed_by("wallet"), *produced_by("wallet")})


@contextlib.asynccontextmanager
async def running_wallet(service_db, bootstrap: str, clock: FakeClock, group_prefix: str, **extra: Any):
    """One wallet replica: its runtime (consumers, relay, jobs) and an HTTP client to its app."""
    settings = wallet_settings(service_db, bootstrap, **extra)
    spec = build_spec(settings, clock=clock, consumer_class=private_group_consumer(group_prefix))
    runtime = ServiceRuntime(settings, spec)
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=runtime.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://wallet") as http:
            yield RunningWallet(runtime, http, clock, bootstrap)
    finally:
        await runtime.stop()


@pytest.fixture
async def wallet(service_db, kafka_bootstrap, wallet_topics, clock) -> AsyncIterator[RunningWallet]:
    async with running_wallet(service_db, kafka_bootstrap, clock, f"t{uuid.uuid4().hex[:10]}") as replica:
        yield replica


@pytest.fixture
async def two_replicas(service_db, kafka_bootstrap, wallet_topics, clock):
    """Two replicas of the wallet on one database and in one set of consumer groups."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    async with (
        running_wallet(service_db, kafka_bootstrap, clock, prefix) as first,
        running_wallet(service_db, kafka_bootstrap, clock, prefix) as second,
    ):
        yield first, second
