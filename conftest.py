"""Fixtures every test in the repository can use; integration tests always get a real broker and a
real database. Nothing starts unless a test asks for it, so unit tests stay instant.

- `infra` (session): `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` when set, else a Kafka broker and a
  PostgreSQL server of its own on free ports in a temp dir, started once and always stopped.
- `kafka_bootstrap`, `pg_admin_dsn` (session): its bootstrap servers and a superuser DSN of `orchard_test`.
- `service_db`: a fresh schema + login role (`.dsn`, `.schema`, `.role`, `.admin_dsn`), dropped after.
- `new_topic`: `await new_topic(prefix="t", partitions=3)` creates a unique topic and its `.dlq` twin.
- `private_kafka`, `private_postgres`: factories for fault tests that kill or restart their own
  instance; each call starts a fresh one, all are killed when the test ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from deploy.infra.kafka import KafkaBroker
from deploy.infra.postgres import PostgresServer
from deploy.testing import (
    Infra,
    InfraSession,
    ServiceDb,
    create_topic,
    drop_service_db,
    new_service_db,
    start_kafka,
    start_postgres,
    stop_all,
)

# Property tests judge what the code does, never how fast: on a shared, loaded machine an example that
# takes longer than Hypothesis's default 200 ms deadline is not a failure.
settings.register_profile("orchard", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("orchard")

# The services the tests start are in development mode (DESIGN.md §5): elsewhere they refuse to start
# with the development keys. Tests of that refusal clear it for their own process.
os.environ.setdefault("ORCHARD_ENV", "dev")


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    session = InfraSession()
    try:
        yield session.open()
    finally:
        session.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(infra: Infra) -> str:
    return infra.kafka_bootstrap


@pytest.fixture(scope="session")
def pg_admin_dsn(infra: Infra) -> str:
    return infra.admin_dsn


@pytest.fixture
async def service_db(pg_admin_dsn: str) -> AsyncIterator[ServiceDb]:
    db = await new_service_db(pg_admin_dsn)
    try:
        yield db
    finally:
        await drop_service_db(db)


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., Awaitable[str]]:
    async def make(prefix: str = "t", partitions: int = 3) -> str:
        return await create_topic(kafka_bootstrap, prefix, partitions)

    return make


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A temp dir outside pytest's own: another pytest session re-chmods that one to 0700, which would
    lock out the unprivileged postgres user the embedded server runs as."""
    base = Path(tempfile.mkdtemp(prefix="orchard-private-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def private_kafka(private_dir: Path) -> Iterator[Callable[[], KafkaBroker]]:
    brokers: list[KafkaBroker | PostgresServer] = []

    def start() -> KafkaBroker:
        broker = start_kafka(private_dir / f"kafka-{len(brokers)}", heap_mb=256)
        brokers.append(broker)
        return broker

    try:
        yield start
    finally:
        stop_all(brokers)


@pytest.fixture
def private_postgres(private_dir: Path) -> Iterator[Callable[[], PostgresServer]]:
    servers: list[KafkaBroker | PostgresServer] = []

    def start() -> PostgresServer:
        server = start_postgres(private_dir / f"postgres-{len(servers)}")
        servers.append(server)
        return server

    try:
        yield start
    finally:
        stop_all(servers)
