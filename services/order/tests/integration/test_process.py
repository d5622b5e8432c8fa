"""`python -m services.order` as a real process: it serves, processes a batch, and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
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


async def test_a_batch_survives_kill_9_of_the_service_and_each_row_is_accepted_exactly_once(
    registry_topics: None, kafka_bootstrap: str, service_db: ServiceDb, tmp_path: Path
) -> None:
    import asyncpg

    env = {
        **os.environ,
        "DATABASE_URL": service_db.dsn,
        "ORCHARD_DB_SCHEMA": service_db.schema,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ORCHARD_ORDER_IPA_CHUNK_ROWS": "50",
        "ORCHARD_ORDER_IPA_STALE_CLAIM_S": "2",
        "ORCHARD_ORDER_IPA_POLL_S": "0.2",
    }
    env.pop("ORCHARD_SERVICE", None)
    log = (tmp_path / "order.log").open("wb")
    processes: list[subprocess.Popen[bytes]] = []
    campaign = f"kill-{uuid.uuid4().hex[:8]}"  # other tests' events may reach this service: count only ours
    conn = await asyncpg.connect(service_db.dsn, server_settings={"search_path": f'"{service_db.schema}"'})
    try:
        port = free_port()
        processes.append(_start({**env, "ORCHARD_HTTP_PORT": str(port)}, log))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await _until_ready(http, processes[-1])
            await conn.execute(
                "INSERT INTO campaigns (campaign_id, version, name, reward_type, status, currency,"
                " default_channel) VALUES ($1, 1, 'k', 'voucher', 'active', 'EUR', 'email')",
                campaign,
            )
            token = issue_token(role="admin", sub="admin-1", settings=Settings())
            records = [voucher_record(campaign) for _ in range(1000)]
            upload = await http.post(
                "/v1/ipa/batches", json={"records": records}, headers={"Authorization": f"Bearer {token}"}
            )
            batch_id = upload.json()["batch_id"]

        async def under_way() -> bool:
            return bool(await conn.fetchval("SELECT validated FROM ipa_batches") >= 100)

        await wait_until(under_way, interval=0.02, what="the batch under way")
        processes[-1].kill()
        await asyncio.to_thread(processes[-1].wait, 10)
        killed_at = await conn.fetchval("SELECT validated FROM ipa_batches")
        processes.append(_start({**env, "ORCHARD_HTTP_PORT": str(free_port())}, log))

        async def completed() -> bool:
            return bool(await conn.fetchval("SELECT status FROM ipa_batches") == "completed")

        await wait_until(completed, timeout=120, what="the batch completed after the restart")
        batch = await conn.fetchrow("SELECT validated, accepted, rejected FROM ipa_batches")
        orders = await conn.fetchval("SELECT count(*) FROM orders WHERE batch_id = $1::uuid", batch_id)
        per_topic = dict(
            await conn.fetch(
                "SELECT topic, count(*) FROM outbox WHERE position($1 in convert_from(payload, 'UTF8')) > 0"
                " GROUP BY topic",
                campaign,
            )
        )
    finally:
        await conn.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        log.close()

    assert killed_at < 1000
    assert tuple(batch) == (1000, 1000, 0)
    assert orders == 1000
    assert per_topic == {"ipa.record_accepted": 1000, "delivery.requested": 1000, "order.state_changed": 1000}


async def _until_ready(http: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    async def ready() -> bool:
        assert process.poll() is None, "the order service exited"
        try:
            return (await http.get("/health/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(ready, timeout=90, interval=0.3, what="the order service ready")
