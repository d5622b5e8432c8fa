"""For tests: a service as a real OS process (`python -m services.<name>`) that a test can SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]


class Database(Protocol):
    """Where a service keeps its tables: a test's database and its own schema in it."""

    @property
    def dsn(self) -> str: ...

    @property
    def schema(self) -> str: ...


class ServiceProcess:
    """`module` run on `port` against `db` and the broker at `bootstrap`, its output appended to
    `log_path`; `env` adds to (or overrides) the environment it is given."""

    def __init__(
        self, module: str, db: Database, bootstrap: str, port: int, log_path: Path, **env: str
    ) -> None:
        self.module = module
        self.port = port
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "ORCHARD_HTTP_PORT": str(port),
            "ORCHARD_DB_SCHEMA": db.schema,
            "DATABASE_URL": db.dsn,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ORCHARD_OUTBOX_POLL_INTERVAL": "0.2",
            "ORCHARD_SHUTDOWN_GRACE": "5",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> ServiceProcess:
        """Start the process and wait until it answers ready; fail when it exits or takes too long."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"service not ready within {timeout}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, exactly like a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def request(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method, f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10, **kwargs
        )
