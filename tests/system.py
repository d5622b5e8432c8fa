"""The whole system as `orchard up` runs it — its own Kafka broker and PostgreSQL, the six service
processes (optionally several replicas each) and both local sinks — on free ports in a temp dir, with
the controls end-to-end and fault tests need: signal one process, restart what is missing, stop and
start the broker or the database. It shares nothing with the test session's broker and database."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from chassis.auth import issue_token
from chassis.settings import SERVICE_PORTS
from deploy.demo import service_urls
from deploy.runner import StackConfig, UpReport, is_ready, managed_processes, running_pid, up
from deploy.testing import isolated_stack

SERVICES = tuple(SERVICE_PORTS)


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

    @property
    def admin_dsn(self) -> str:
        """The superuser DSN of the system's own database (for reading the truth in the tables)."""
        return self.config.postgres().dsn(self.config.database)

    def headers(self, role: str = "admin", sub: str = "e2e-admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(role=role, sub=sub)}"}

    def replica_urls(self, service: str) -> list[str]:
        """Every replica's base URL, the first being the service's own."""
        ports = [self.config.service_ports[service], *self.config.replica_ports.get(service, ())]
        return [f"http://127.0.0.1:{port}" for port in ports]

    # --- processes --------------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        """The pid of a managed process by name (`order`, `order-2`, `smtp-sink`…), None if not running."""
        for spec in managed_processes(self.config):
            if spec.name == name:
                return running_pid(self.config, spec)
        raise KeyError(f"no managed process named {name!r}")

    def pids(self) -> dict[str, int | None]:
        return {spec.name: running_pid(self.config, spec) for spec in managed_processes(self.config)}

    def signal(self, name: str, sig: int) -> int:
        pid = self.pid(name)
        if pid is None:
            raise AssertionError(f"{name} is not running")
        os.kill(pid, sig)
        return pid

    def kill(self, name: str) -> None:
        """SIGKILL a process and wait until it is gone (its pid file stays; `restart` replaces it)."""
        pid = self.signal(name, signal.SIGKILL)
        wait_gone(pid, timeout=10)

    def restart(self) -> UpReport:
        """Start whatever of the system is not running and wait until it is ready (as `orchard up`)."""
        return up(self.config)

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until every managed process answers ready (after a broker or database outage the
        services `restart` reused must reconnect on their own before they are ready again)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            pending = list(managed_processes(self.config))
            while pending:
                pending = [spec for spec in pending if not is_ready(spec, client)]
                if pending and time.monotonic() > deadline:
                    raise AssertionError(f"not ready within {timeout}s: {[spec.name for spec in pending]}")
                if pending:
                    time.sleep(0.2)

    def terminate(self, name: str, timeout: float) -> tuple[int | None, float]:
        """SIGTERM a process and wait for it to exit: (its exit code, seconds it took); the code is None
        when it did not exit within `timeout` seconds (it is then left running)."""
        pid = self.signal(name, signal.SIGTERM)
        began = time.monotonic()
        try:
            code = psutil.Process(pid).wait(timeout)  # our child: the real exit status
        except psutil.TimeoutExpired:
            return None, time.monotonic() - began
        except psutil.NoSuchProcess:  # reaped by someone else: the status is gone
            code = None
        return code, time.monotonic() - began

    def kafka_kill(self) -> None:
        self.config.kafka().kill()

    def kafka_start(self, timeout: float = 60) -> None:
        """Start the broker (if it is not running) and wait up to `timeout` s until it answers."""
        kafka = self.config.kafka()
        if not kafka.is_running():
            kafka.launch()
        kafka.wait_ready(timeout)

    def postgres_stop(self) -> None:
        self.config.postgres().stop()


def wait_gone(pid: int, timeout: float) -> bool:
    """True when the process exited within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@contextmanager
def running_system(replicas: int = 1, env: Mapping[str, str] | None = None) -> Iterator[System]:
    """Run the whole system on free ports in a temp dir; stop it and remove its files at the end.

    `replicas` processes per service share each consumer group; `env` is added to every process's
    environment (e.g. a shorter delivery lease for a fault test).
    """
    with isolated_stack("orchard-e2e-", replicas=replicas, env=env) as config:
        yield System(config, service_urls(config.service_ports), issue_token(role="admin", sub="e2e-admin"))
