"""The real `python -m services.support` process: a breach detected, escalated and published end to end
with the system clock, a policy of seconds set over HTTP, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from chassis.auth import issue_token
from chassis.testing import read_topic, wait_until
from contracts.envelope import Envelope
from contracts.registry import consumed_by, produced_by
from contracts.support import SupportSlaBreached
from contracts.topics import Topics
from deploy.infra.net import free_port
from deploy.infra.topics import ensure_topics
from deploy.testing import ServiceDb

REPO_ROOT = Path(__file__).resolve().parents[4]


def _start(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.support"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as a supervisor stops it: the service drains and exits 0."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def test_the_service_process_detects_escalates_and_publishes_a_breach(
    kafka_bootstrap: str, service_db: ServiceDb, tmp_path: Path
):
    await ensure_topics(kafka_bootstrap, [*consumed_by("support"), *produced_by("support")])
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "ORCHARD_SERVICE": f"support-{uuid.uuid4().hex[:8]}",  # its own consumer groups
        "ORCHARD_HTTP_PORT": str(port),
        "ORCHARD_DB_SCHEMA": service_db.schema,
        "DATABASE_URL": service_db.dsn,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ORCHARD_OUTBOX_POLL_INTERVAL": "0.2",
        "ORCHARD_SUPPORT_SLA_CHECK_INTERVAL": "0.5",
        "ORCHARD_SHUTDOWN_GRACE": "10",
    }
    log_path = tmp_path / "support.log"
    process = _start(env, log_path)
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {issue_token(role='admin', sub='lead')}"}
    member = f"member-{uuid.uuid4().hex[:6]}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def ready() -> bool:
                assert process.poll() is None, log_path.read_text()
                try:
                    return (await client.get("/health/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_until(ready, timeout=90, what="the support process to be ready")
            policy = await client.put(
                "/v1/sla/policies",
                json={"priority": "medium", "category": "other", "first_response_s": 2, "resolution_s": 600},
                headers=admin,
            )
            assert policy.status_code == 200, policy.text
            opened = await client.post(
                "/v1/tickets",
                json={"category": "other", "description": "nobody answers", "priority": "medium"},
                headers={"Authorization": f"Bearer {issue_token(role='member', sub=member)}"},
            )
            assert opened.status_code == 201, opened.text
            ticket_id = opened.json()["ticket_id"]

            async def alerts() -> list[SupportSlaBreached]:
                records = await read_topic(kafka_bootstrap, Topics.SUPPORT_SLA_BREACHED)
                found = [Envelope.decode(r.value, SupportSlaBreached).data for r in records]
                return [a for a in found if a.ticket_id == ticket_id]

            async def breached() -> bool:
                return any(a.kind == "breach" for a in await alerts())

            await wait_until(breached, timeout=60, what="support.sla_breached for the ticket")
            published = await alerts()
            # A warning comes first unless the machine was too busy to look before the due time.
            assert [(a.kind.value, a.target.value) for a in published][-1] == ("breach", "first_response")
            assert [a.kind.value for a in published] in (["breach"], ["warning", "breach"])
            assert published[-1].priority == "high"

            ticket = (await client.get(f"/v1/tickets/{ticket_id}", headers=admin)).json()
            assert ticket["priority"] == "high"
            assert ticket["queue"] == "escalation"
            assert ticket["sla"]["first_response"]["status"] == "breached"
            assert [e["kind"] for e in ticket["timeline"]][-1] == "sla_breached"
    finally:
        _stop(process)
    assert process.returncode == 0, log_path.read_text()[-3000:]
