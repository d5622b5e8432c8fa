"""The redemption service as a real OS process (`python -m services.redemption`) that tests SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from deploy.infra.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[4]


class ServiceProcess:
    def __init__(
        self, *, name: str, dsn: str, schema: str, bootstrap: str, log_dir: Path, **env: str
    ) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "ORCHARD_SERVICE": name,
            "ORCHARD_HTTP_PORT": str(self.port),
            "ORCHARD_DB_SCHEMA": schema,
            "DATABASE_URL": dsn,
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
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.redemption"],
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
