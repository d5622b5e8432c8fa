"""Running the fault probe service as real OS processes that tests can SIGKILL and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from deploy.infra.net import free_port

PROBE_APP = Path(__file__).resolve().parent / "probe_app.py"
REPO_ROOT = Path(__file__).resolve().parents[2]


class ProbeProcess:
    """One probe process (`produce` or `consume`) with its own HTTP port and log file."""

    def __init__(
        self,
        mode: str,
        *,
        service: str,
        dsn: str,
        schema: str,
        bootstrap: str,
        topic: str,
        log_dir: Path,
        **probe_env: str,
    ) -> None:
        self.mode = mode
        self.port = free_port()
        self.log_path = log_dir / f"{service}-{mode}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "PROBE_MODE": mode,
            "PROBE_TOPIC": topic,
            "ORCHARD_SERVICE": service,
            "ORCHARD_HTTP_PORT": str(self.port),
            "ORCHARD_DB_SCHEMA": schema,
            "DATABASE_URL": dsn,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ORCHARD_OUTBOX_POLL_INTERVAL": "0.2",
            "ORCHARD_SHUTDOWN_GRACE": "10",
            **probe_env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, **extra_env: str) -> ProbeProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(PROBE_APP)],
            env={**self.env, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self.starts += 1
        return self

    def ready_status(self) -> int | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health/ready", timeout=3).status_code
        except httpx.HTTPError:
            return None

    def wait_status(self, status: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_status() == status:
                return
            if self.process is not None and self.process.poll() is not None and status == 200:
                raise AssertionError(
                    f"probe {self.mode} exited with {self.process.returncode}; see {self.log_path}"
                )
            time.sleep(0.2)
        raise AssertionError(
            f"probe {self.mode} did not report {status} within {timeout}s; see {self.log_path}"
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush, exactly like a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout)
