"""Demo data for `orchard up`, loaded through the public HTTP API like any operator would.

It creates a voucher campaign with a stocked code pool and a points campaign, waits until the order
service has seen both on `campaign.changed`, then uploads one IPA batch with a few records for every
channel, one points award, and two rows that fail validation (so the error file has something in it).
External refs are fixed, so seeding again never creates a second reward: a second `up` finds the
campaigns and stops there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from deploy.infra.errors import InfraError
from deploy.infra.net import LOCALHOST

VOUCHER_CAMPAIGN = "demo-coffee"
POINTS_CAMPAIGN = "demo-points"
DEMO_CODES = 200
DEMO_ACTOR = "orchard-demo"


@dataclass
class DemoReport:
    seeded: bool
    batch_id: str | None = None
    campaigns: list[str] = field(default_factory=list)
    codes_generated: int = 0
    records: int = 0


def demo_records() -> list[dict[str, str]]:
    """Twelve allocations across the three channels, a points award and two rows that are refused."""
    records: list[dict[str, str]] = []
    for n in range(1, 13):
        channel = ("email", "sms", "whatsapp")[n % 3]
        records.append(
            {
                "external_ref": f"demo-{n:04d}",
                "member_id": f"demo-member-{n:02d}",
                "name": f"Demo Member {n}",
                "email": f"member{n:02d}@example.com",
                "phone": f"+4477009000{n:02d}",
                "channel": channel,
                "campaign_id": VOUCHER_CAMPAIGN,
                "reward_type": "voucher",
                "amount": "25.00",
                "currency": "EUR",
                "reason": "Quarterly recognition",
            }
        )
    records.append(
        {
            "external_ref": "demo-points-0001",
            "member_id": "demo-member-01",
            "name": "Demo Member 1",
            "email": "member01@example.com",
            "campaign_id": POINTS_CAMPAIGN,
            "reward_type": "points",
            "amount": "500",
            "currency": "PTS",
            "reason": "Onboarding milestone",
        }
    )
    invalid = dict(records[0], external_ref="demo-invalid-0001", email="not-an-email", channel="email")
    unknown = dict(records[1], external_ref="demo-invalid-0002", campaign_id="no-such-campaign")
    return [*records, invalid, unknown]


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _ensure_campaign(client: httpx.AsyncClient, body: Mapping[str, Any]) -> bool:
    """True when the campaign was created now, False when it already existed."""
    found = await client.get(f"/v1/campaigns/{body['campaign_id']}")
    if found.status_code == 200:
        return False
    created = await client.post("/v1/campaigns", json=body)
    if created.status_code >= 400:
        raise InfraError(f"demo data: creating campaign {body['campaign_id']} failed: {created.text[:300]}")
    return True


async def _wait_for_campaigns(client: httpx.AsyncClient, timeout_s: float) -> None:
    """The order service learns campaigns from `campaign.changed`; a dry run says when it has."""
    probe = [r for r in demo_records() if not r["external_ref"].startswith("demo-invalid")]
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await client.post("/v1/ipa/batches", params={"mode": "dry_run"}, json={"records": probe})
        if answer.status_code == 202:
            batch_id = answer.json()["batch_id"]
            progress = await _wait_for_batch(client, batch_id, deadline)
            if progress.get("rejected", 0) == 0:
                return
        if time.monotonic() > deadline:
            raise InfraError("demo data: the order service did not learn the demo campaigns in time")
        await asyncio.sleep(1.0)


async def _wait_for_batch(client: httpx.AsyncClient, batch_id: str, deadline: float) -> dict[str, Any]:
    while True:
        progress: dict[str, Any] = (await client.get(f"/v1/ipa/batches/{batch_id}")).json()
        if progress.get("status") in ("completed", "failed"):
            return progress
        if time.monotonic() > deadline:
            return progress
        await asyncio.sleep(0.3)


async def seed(
    service_urls: Mapping[str, str],
    token: str,
    *,
    timeout_s: float = 60.0,
    on_step: Callable[[str], None] = lambda _: None,
) -> DemoReport:
    """Load the demo data unless it is there already."""
    async with (
        httpx.AsyncClient(base_url=service_urls["voucher"], headers=_headers(token), timeout=30) as voucher,
        httpx.AsyncClient(base_url=service_urls["order"], headers=_headers(token), timeout=30) as order,
    ):
        on_step("demo data: campaigns")
        created = await _ensure_campaign(
            voucher,
            {
                "campaign_id": VOUCHER_CAMPAIGN,
                "name": "Demo coffee voucher",
                "brand": "Orchard Coffee",
                "face_value": "25.00",
                "currency": "EUR",
                "per_record_limit": "100.00",
                "budget": "100000.00",
                "default_channel": "email",
                "low_stock_threshold": 20,
                "partner_ids": ["demo-partner"],
                "expiry_policy": {"kind": "days_after_issue", "days": 365},
            },
        )
        await _ensure_campaign(
            voucher,
            {
                "campaign_id": POINTS_CAMPAIGN,
                "name": "Demo points programme",
                "reward_type": "points",
                "default_channel": "email",
            },
        )
        report = DemoReport(seeded=created, campaigns=[VOUCHER_CAMPAIGN, POINTS_CAMPAIGN])
        if not created:
            return report
        on_step("demo data: codes")
        generated = await voucher.post(
            f"/v1/campaigns/{VOUCHER_CAMPAIGN}/codes/generate", json={"count": DEMO_CODES, "prefix": "DEMO"}
        )
        if generated.status_code >= 400:
            raise InfraError(f"demo data: generating codes failed: {generated.text[:300]}")
        report.codes_generated = DEMO_CODES
        on_step("demo data: waiting for the order service to see the campaigns")
        await _wait_for_campaigns(order, timeout_s)
        on_step("demo data: IPA batch")
        records = demo_records()
        uploaded = await order.post(
            "/v1/ipa/batches", params={"mode": "accept_valid"}, json={"records": records}
        )
        if uploaded.status_code != 202:
            raise InfraError(f"demo data: uploading the IPA batch failed: {uploaded.text[:300]}")
        report.batch_id = uploaded.json()["batch_id"]
        report.records = len(records)
        return report


def service_urls(ports: Mapping[str, int]) -> dict[str, str]:
    return {name: f"http://{LOCALHOST}:{port}" for name, port in ports.items()}
