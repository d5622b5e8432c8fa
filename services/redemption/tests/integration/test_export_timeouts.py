"""An export download is cut off once it runs past the download timeout, its query with it."""

from __future__ import annotations

from typing import Any

import httpx

from chassis.service import ServiceRuntime
from chassis.stuck_downloads import cut_off_while_locked
from chassis.testing import wait_until
from services.redemption.app import build_spec
from services.redemption.tests.integration.conftest import RunningService, service_settings


async def test_an_export_download_stuck_in_the_database_is_cut_off_after_the_download_timeout(
    service_db: Any, kafka_bootstrap: str, registry_topics: None
) -> None:
    settings = service_settings(service_db, kafka_bootstrap, ORCHARD_HTTP_DOWNLOAD_TIMEOUT_S=1)
    runtime = ServiceRuntime(settings, build_spec(settings))
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=runtime.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://redemption") as client:
            service = RunningService(runtime, client, kafka_bootstrap)
            headers = service.auth("finance", "fin-1")
            requested = await client.post(
                "/v1/exports",
                json={"purpose": "finance_reconciliation", "format": "csv", "reason": "month end"},
                headers=headers,
            )
            assert requested.status_code == 202, requested.text
            export = f"/v1/exports/{requested.json()['export_id']}"

            async def ready() -> bool:
                return bool((await client.get(export, headers=headers)).json()["status"] == "ready")

            await wait_until(ready, timeout=30, interval=0.2, what="export ready")
            await cut_off_while_locked(
                service.pool,
                "export_chunks",
                "%FROM export_chunks WHERE export_id%",
                lambda: client.get(f"{export}/download", headers=headers),
            )
            whole = await client.get(f"{export}/download", headers=headers)
            assert whole.status_code == 200
            assert whole.text.count("\n") == 1  # the header line: no redemptions yet
    finally:
        await runtime.stop()
