"""`python -m services.order` as a real process: it serves, processes a batch, and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx

from chassis.auth import issue_token
from chassis.settings import Settings
from chassis.testing import wait_until
from deploy.infra.net import free_port
from deploy.testing import ServiceDb

from .conftest import voucher_record

REPO = Path(__file__).resolve().parents[4]


def _start(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.order"], cwd=REPO, env=env, stdout=log, stderr=log
    )


async def test_the_service_process_serves_intake_and_exits_cleanly_on_sigterm(
    registry_topics: None, kafka_bootstrap: str, service_db: ServiceDb, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": service_db.dsn,
        "ORCHARD_DB_SCHEMA": service_db.schema,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ORCHARD_HTTP_PORT": str(port),
        "ORCHARD_ORDER_MAX_UPLOAD_BYTES": "1000000",
    }
    env.pop("ORCHARD_SERVICE", None)
    log = (tmp_path / "order.log").open("wb")
    process = _start(env, log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

            async def ready() -> bool:
                assert process.poll() is None, (tmp_path / "order.log").read_text()[-2000:]
                try:
                    return (await http.get("/health/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_until(ready, timeout=90, interval=0.3, what="the order service ready")
            token = issue_token(role="ops", sub="ops-1", settings=Settings())
            auth = {"Authorization": f"Bearer {token}"}
            upload = await http.post(
                "/v1/ipa/batches",
                params={"mode": "dry_run"},
                json={"records": [voucher_record("unknown")]},
                headers=auth,
            )
            too_big = await http.post(
                "/v1/ipa/batches", content=b"x" * 1_000_001, headers={**auth, "Content-Type": "text/csv"}
            )
            batch_url = upload.json()["links"]["self"]

            async def finished() -> bool:
                return bool((await http.get(batch_url, headers=auth)).json()["status"] == "completed")

            await wait_until(finished, what="the dry run finished")
            batch = (await http.get(batch_url, headers=auth)).json()
            docs = await http.get("/docs")
            metrics = await http.get("/metrics")

        assert upload.status_code == 202
        assert too_big.status_code == 413
        assert (batch["validated"], batch["rejected"]) == (1, 1)
        assert docs.status_code == 200
        assert "orchard_http_requests_total" in metrics.text
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
