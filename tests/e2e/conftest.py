"""The whole system as `orchard up` runs it — six service processes and both local sinks — on free
ports, against the session's broker and a database of its own, stopped at the end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from chassis.auth import issue_token
from chassis.settings import SERVICE_PORTS
from deploy.demo import service_urls
from deploy.infra.net import free_port
from deploy.infra.postgres import quote_ident
from deploy.runner import StackConfig, down, up
from deploy.sinks.processes import DEFAULT_SINK_PORTS


@dataclass(frozen=True)
class System:
    config: StackConfig
    urls: dict[str, str]
    admin_token: str

    @property
    def mail_dir(self) -> Path:
        return self.config.var_dir / "mail"

    @property
    def messages_dir(self) -> Path:
        return self.config.var_dir / "messages"

    def headers(self, role: str = "admin", sub: str = "e2e-admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(role=role, sub=sub)}"}


async def _drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, pg_admin_dsn: str
) -> Iterator[System]:
    config = StackConfig(
        var_dir=tmp_path_factory.mktemp("system"),
        external_kafka=kafka_bootstrap,
        external_database=pg_admin_dsn,
        database=f"e2e_{uuid.uuid4().hex[:8]}",
        service_ports={name: free_port() for name in SERVICE_PORTS},
        sink_ports={name: free_port() for name in DEFAULT_SINK_PORTS},
        ready_timeout_s=180,
        stop_grace_s=25,
    )
    try:
        up(config)
        yield System(config, service_urls(config.service_ports), issue_token(role="admin", sub="e2e-admin"))
    finally:
        down(config)
        asyncio.run(_drop_database(pg_admin_dsn, config.database))
