"""The whole system as `orchard up` runs it — its own Kafka broker and PostgreSQL, six service processes
and both local sinks — on free ports in a temp dir, stopped at the end. It shares nothing with the
session's broker, so other tests' events on the same topic names cannot reach it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chassis.auth import issue_token
from chassis.settings import SERVICE_PORTS
from deploy.demo import service_urls
from deploy.infra.net import free_port
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


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    var_dir = Path(tempfile.mkdtemp(prefix="orchard-e2e-"))
    var_dir.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user
    config = StackConfig(
        var_dir=var_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        postgres_port=free_port(),
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
        shutil.rmtree(var_dir, ignore_errors=True)
