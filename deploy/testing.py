"""Real Kafka and real Postgres for tests: what the root conftest.py's fixtures are made of.

Everything started here runs on free ports in a temp dir (never the `orchard up` defaults, so tests
run beside a running local system), is tied to the test process (the kernel kills it if pytest dies),
and is stopped at the end even when a test fails or the run is interrupted.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from deploy.infra.errors import InfraError
from deploy.infra.kafka import BrokerSecurity, KafkaBroker
from deploy.infra.net import free_port
from deploy.infra.postgres import (
    PostgresServer,
    drop_service,
    provision_database,
    provision_service,
    quote_ident,
)
from deploy.infra.process import pid_alive, read_pid_file, write_pid_file
from deploy.infra.tls import issue_server_tls
from deploy.infra.topics import TopicDef, ensure_topics

if TYPE_CHECKING:
    from deploy.runner import StackConfig

TEST_DATABASE = "orchard_test"
_SESSION_DIR_PREFIX = "orchard-test-"
_PORT_RETRIES = 3

_Instance = TypeVar("_Instance", KafkaBroker, PostgresServer)
_started: list[KafkaBroker | PostgresServer] = []


@atexit.register
def _kill_leftovers() -> None:
    # Fixture teardown normally stops everything; this covers exits that skip it.
    for instance in _started:
        with contextlib.suppress(Exception):
            instance.kill()


@dataclass(frozen=True)
class Infra:
    """The session's broker and database; `kafka`/`postgres` are None when the environment provided them."""

    kafka_bootstrap: str
    admin_dsn: str
    kafka: KafkaBroker | None
    postgres: PostgresServer | None


@dataclass(frozen=True)
class ServiceDb:
    """A fresh schema owned by a fresh login role, as a service gets it from `orchard up`."""

    dsn: str
    schema: str
    role: str
    admin_dsn: str

    def service_env(self, kafka_bootstrap: str) -> dict[str, str]:
        """The settings placing a service on this schema and that broker: `Settings(**db.service_env(…))`."""
        return {
            "DATABASE_URL": self.dsn,
            "ORCHARD_DB_SCHEMA": self.schema,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        }


def _start_on_free_ports(make: Callable[[], _Instance], *, wait: bool = True) -> _Instance:
    # A port found free may be taken before the server binds it; pick new ones and try again.
    for attempt in range(_PORT_RETRIES):
        instance = make()
        try:
            instance.launch()
        except InfraError:
            if attempt == _PORT_RETRIES - 1:
                raise
            continue
        _started.append(instance)
        if wait:
            instance.wait_ready()
        return instance
    raise AssertionError("unreachable")


def start_kafka(base_dir: Path, *, wait: bool = True, heap_mb: int = 512) -> KafkaBroker:
    """A broker on free ports in `base_dir`, dying with this process. Call from the main thread."""

    def make() -> KafkaBroker:
        return KafkaBroker(base_dir, free_port(), free_port(), heap_mb=heap_mb, tie_to_parent=True)

    return _start_on_free_ports(make, wait=wait)


def start_secure_kafka(base_dir: Path, users: Mapping[str, str], *, heap_mb: int = 512) -> KafkaBroker:
    """A broker like `start_kafka`'s plus a SASL_SSL listener (SCRAM-SHA-512 `users`, a fresh CA in
    `base_dir/tls`) that enforces ACLs; `admin` is a super user. See `BrokerSecurity`."""
    tls = issue_server_tls(base_dir / "tls")

    def make() -> KafkaBroker:
        security = BrokerSecurity(sasl_port=free_port(), tls=tls, users=users)
        port, controller_port = free_port(), free_port()
        broker_dir = base_dir / "broker"
        return KafkaBroker(
            broker_dir,
            port,
            controller_port,
            heap_mb=heap_mb,
            tie_to_parent=True,
            security=security,
        )

    return _start_on_free_ports(make, wait=True)


def start_postgres(base_dir: Path, *, wait: bool = True) -> PostgresServer:
    """A throwaway (non-durable) server on a free port with its data in `base_dir`."""
    return _start_on_free_ports(
        lambda: PostgresServer(base_dir / "data", free_port(), durable=False, tie_to_parent=True), wait=wait
    )


def stop_all(instances: list[KafkaBroker | PostgresServer]) -> None:
    for instance in instances:
        with contextlib.suppress(Exception):
            instance.kill()
        with contextlib.suppress(ValueError):
            _started.remove(instance)


class InfraSession:
    """Starts what the environment does not provide; `close()` stops it and removes its files."""

    def __init__(self) -> None:
        _remove_abandoned_session_dirs()
        self.base_dir = Path(tempfile.mkdtemp(prefix=_SESSION_DIR_PREFIX))
        write_pid_file(self.base_dir / "owner.pid", os.getpid())
        self._owned: list[KafkaBroker | PostgresServer] = []

    def open(self) -> Infra:
        kafka_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        database_env = os.environ.get("DATABASE_URL")
        # Launch both before waiting for either: Postgres is ready while the JVM still boots.
        kafka = None if kafka_env else self._own(start_kafka(self.base_dir / "kafka", wait=False))
        postgres = None if database_env else self._own(start_postgres(self.base_dir / "postgres", wait=False))
        if postgres is not None:
            postgres.wait_ready()
        server_dsn = database_env or (postgres.admin_dsn if postgres else "")
        admin_dsn = asyncio.run(provision_database(server_dsn, TEST_DATABASE))
        if kafka is not None:
            kafka.wait_ready()
        bootstrap = kafka_env or (kafka.bootstrap_servers if kafka else "")
        return Infra(kafka_bootstrap=bootstrap, admin_dsn=admin_dsn, kafka=kafka, postgres=postgres)

    def close(self) -> None:
        stop_all(self._owned)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _own(self, instance: _Instance) -> _Instance:
        self._owned.append(instance)
        return instance


def _remove_abandoned_session_dirs() -> None:
    # A run killed with -9 (or by a CI timeout) cannot clean up; its servers died with it (tie_to_parent)
    # but their files stay. The next session removes them.
    for leftover in Path(tempfile.gettempdir()).glob(f"{_SESSION_DIR_PREFIX}*"):
        owner = read_pid_file(leftover / "owner.pid")
        if owner is not None and not pid_alive(owner):
            shutil.rmtree(leftover, ignore_errors=True)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def new_service_db(admin_dsn: str, prefix: str = "t") -> ServiceDb:
    schema = unique_name(prefix)
    role = f"{schema}_role"
    dsn = await provision_service(
        admin_dsn, service="test", schema=schema, role=role, password=secrets.token_urlsafe(16)
    )
    return ServiceDb(dsn=dsn, schema=schema, role=role, admin_dsn=admin_dsn)


async def drop_service_db(db: ServiceDb) -> None:
    await drop_service(db.admin_dsn, schema=db.schema, role=db.role)


async def create_topic(bootstrap: str, prefix: str = "t", partitions: int = 3) -> str:
    """A topic with a unique name (and its `.dlq` twin), ready to produce to and consume from."""
    name = f"{prefix}.{uuid.uuid4().hex[:12]}"
    await ensure_topics(bootstrap, [TopicDef(name, partitions)])
    return name


@contextlib.contextmanager
def runner_on_shared_infra(
    var_dir: Path, kafka_bootstrap: str, admin_dsn: str, prefix: str, **config: Any
) -> Iterator[StackConfig]:
    """A runner configuration on the session's broker and database server, with a database of its
    own (dropped afterwards, with whatever the runner left running stopped first)."""
    from deploy.runner import StackConfig, down

    stack = StackConfig(
        var_dir=var_dir,
        external_kafka=kafka_bootstrap,
        external_database=admin_dsn,
        database=f"{prefix}_{uuid.uuid4().hex[:8]}",
        ready_timeout_s=30,
        stop_grace_s=5,
        **config,
    )
    try:
        yield stack
    finally:
        down(stack)
        asyncio.run(_drop_database(admin_dsn, stack.database))


async def _drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


@contextlib.contextmanager
def isolated_stack(
    prefix: str,
    *,
    replicas: int = 1,
    env: Mapping[str, str] | None = None,
    on_step: Callable[[str], None] = lambda _: None,
    console: bool = False,
) -> Iterator[StackConfig]:
    """The whole system as `orchard up` runs it, but on free ports in a new temp dir: its own broker,
    database, six services (`replicas` processes each, sharing the consumer groups) and local sinks;
    with `console`, also the local identity provider and the console.

    `env` is added to every process's environment for as long as the stack runs (restarts included).
    Everything is stopped and the dir removed on the way out, also on errors and Ctrl-C.
    """
    from chassis.settings import SERVICE_PORTS
    from deploy.runner import StackConfig, down, up
    from deploy.sinks.processes import DEFAULT_SINK_PORTS

    var_dir = Path(tempfile.mkdtemp(prefix=prefix))
    var_dir.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user
    config = StackConfig(
        var_dir=var_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        postgres_port=free_port(),
        service_ports={name: free_port() for name in SERVICE_PORTS},
        replica_ports={name: [free_port() for _ in range(replicas - 1)] for name in SERVICE_PORTS},
        sink_ports={name: free_port() for name in DEFAULT_SINK_PORTS},
        identity_port=free_port() if console else None,
        console_port=free_port() if console else None,
        ready_timeout_s=180,
        stop_grace_s=25,
    )
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})  # the runner starts each process with os.environ plus its own settings
    try:
        up(config, on_step=on_step)
        yield config
    finally:
        try:
            on_step("stopping")
            down(config)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(var_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def twin_service_pools(
    first: ServiceDb, admin_dsn: str, migrations: Path
) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two databases of one service, migrated alike: `first` and a fresh one, dropped at the end. For tests
    that feed the same events to both in two ways (one by one, a batch at a time) and compare the rows."""
    from chassis.db import apply_migrations, create_pool

    other = await new_service_db(admin_dsn)
    pools: list[asyncpg.Pool] = []
    try:
        for db in (first, other):
            pool = await create_pool(db.dsn, schema=db.schema, min_size=1, max_size=2)
            pools.append(pool)
            await apply_migrations(pool, service_dir=migrations)
        yield pools[0], pools[1]
    finally:
        for pool in pools:
            await pool.close()
        await drop_service_db(other)
