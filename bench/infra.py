"""Kafka and Postgres for one run: the environment's when given, else our own on free ports.

Our own Postgres is durable (fsync on), as `orchard up` runs it: a commit costs what it costs in
production, and baselines and our layer pay the same price, so the ratios stay fair.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from chassis.db import create_pool
from deploy.infra.kafka import KafkaBroker
from deploy.infra.net import free_port
from deploy.infra.postgres import PostgresServer, provision_database
from deploy.testing import ServiceDb, create_topic, drop_service_db, new_service_db, start_kafka, stop_all


@dataclass
class Infra:
    bootstrap: str
    admin_dsn: str
    sources: dict[str, str]
    topics: list[str] = field(default_factory=list)

    async def new_topic(self, partitions: int) -> str:
        name = await create_topic(self.bootstrap, "bench", partitions)
        self.topics += [name, f"{name}.dlq"]
        return name

    async def drop_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(self.topics)
        finally:
            await admin.close()


@contextlib.contextmanager
def open_infra() -> Iterator[Infra]:
    """Start what the environment does not provide; stop it and remove its files on the way out."""
    kafka_env, database_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
    base_dir = Path(tempfile.mkdtemp(prefix="orchard-bench-"))
    owned: list[KafkaBroker | PostgresServer] = []
    try:
        # Launch the JVM first: Postgres is ready long before Kafka has booted.
        kafka = None if kafka_env else start_kafka(base_dir / "kafka", wait=False)
        postgres = None if database_env else PostgresServer(base_dir / "pg", free_port(), tie_to_parent=True)
        owned += [server for server in (kafka, postgres) if server is not None]
        bootstrap, server_dsn = kafka_env or "", database_env or ""
        if postgres is not None:
            postgres.start()
            server_dsn = postgres.admin_dsn
        admin_dsn = asyncio.run(provision_database(server_dsn, "orchard_bench"))
        if kafka is not None:
            kafka.wait_ready()
            bootstrap = kafka.bootstrap_servers
        infra = Infra(
            bootstrap=bootstrap,
            admin_dsn=admin_dsn,
            sources={
                "kafka": "KAFKA_BOOTSTRAP_SERVERS" if kafka_env else "own single-node broker",
                "postgres": "DATABASE_URL" if database_env else "own server, fsync on",
            },
        )
        yield infra
        # Our own broker's topics vanish with its directory; a shared one keeps them unless dropped.
        if kafka is None and infra.topics:
            asyncio.run(infra.drop_topics())
    finally:
        stop_all(owned)
        shutil.rmtree(base_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def scratch_pool(admin_dsn: str, *, size: int) -> AsyncIterator[tuple[ServiceDb, asyncpg.Pool]]:
    """A fresh schema and role per scenario, so no scenario reads tables another one grew."""
    db = await new_service_db(admin_dsn, prefix="bench")
    pool = await create_pool(db.dsn, schema=db.schema, min_size=size, max_size=size)
    try:
        yield db, pool
    finally:
        await pool.close()
        await drop_service_db(db)
