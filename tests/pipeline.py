"""Driving the whole system through its public contract (HTTP and Kafka topics), for end-to-end and
fault tests: campaigns with codes, IPA records, orders and their summary, what reached the sinks."""

from __future__ import annotations

import email.policy
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes
from email.utils import getaddresses
from typing import Any

import httpx

from chassis.testing import produce, read_topic, voucher_campaign, wait_until
from contracts.envelope import Envelope, EventData
from contracts.registry import for_payload
from contracts.topics import Topics
from deploy.sinks.processes import FAKE_PROVIDER
from tests.system import System

RUN = uuid.uuid4().hex[:6]
"""Tells this test session's campaigns and refs from others'."""


@asynccontextmanager
async def clients(system: System) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    headers = system.headers()
    async with (
        httpx.AsyncClient(base_url=system.urls["order"], headers=headers, timeout=60) as order,
        httpx.AsyncClient(base_url=system.urls["voucher"], headers=headers, timeout=60) as voucher,
    ):
        yield order, voucher


def provider_url(system: System) -> str:
    return f"http://127.0.0.1:{system.config.sink_ports[FAKE_PROVIDER]}"


def record(campaign_id: str, ref: str, n: int, *, channel: str = "email", **overrides: str) -> dict[str, str]:
    record = {
        "external_ref": ref,
        "member_id": f"{ref}-member",
        "name": f"Member {n}",
        "email": f"{ref}@{campaign_id}.example.com",
        "phone": f"+4477{abs(hash(ref)) % 10**8:08d}",
        "channel": channel,
        "campaign_id": campaign_id,
        "reward_type": "voucher",
        "amount": "25.00",
        "currency": "EUR",
        "reason": "e2e",
    }
    record.update(overrides)
    return record


async def campaign(voucher: httpx.AsyncClient, order: httpx.AsyncClient, name: str, *, codes: int) -> str:
    """A new voucher campaign with `codes` generated codes, once the order service knows it."""
    campaign_id = f"{name}-{RUN}"
    body = voucher_campaign(campaign_id, name, run="e2e", budget="1000000.00")
    created = await voucher.post("/v1/campaigns", json=body)
    assert created.status_code == 201, created.text
    if codes:
        generated = await voucher.post(f"/v1/campaigns/{campaign_id}/codes/generate", json={"count": codes})
        assert generated.status_code == 201, generated.text
    probe = [record(campaign_id, f"probe-{campaign_id}", 0)]

    async def known() -> bool:
        answer = await order.post("/v1/ipa/batches", params={"mode": "dry_run"}, json={"records": probe})
        assert answer.status_code == 202, answer.text
        batch_id = answer.json()["batch_id"]
        progress: dict[str, Any] = {}

        async def judged() -> bool:
            nonlocal progress
            progress = (await order.get(f"/v1/ipa/batches/{batch_id}")).json()
            return progress.get("status") in ("completed", "failed", "rejected")

        await wait_until(judged, timeout=60, interval=0.3, what="a dry run to be judged")
        return progress.get("rejected", 1) == 0

    await wait_until(known, timeout=60, interval=1.0, what=f"the order service to learn {campaign_id}")
    return campaign_id


async def summary(order: httpx.AsyncClient, campaign_id: str) -> dict[str, Any]:
    answer = await order.get("/v1/orders/summary", params={"campaign_id": campaign_id})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def orders(order: httpx.AsyncClient, campaign_id: str, **filters: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"campaign_id": campaign_id, "limit": 500, "sort": "created_at", **filters}
        if cursor:
            params["cursor"] = cursor
        page = await order.get("/v1/orders", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return items


async def order(order: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    answer = await order.get(f"/v1/orders/{order_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def place(order: httpx.AsyncClient, record: dict[str, str]) -> dict[str, Any]:
    body = {k: v for k, v in record.items() if k != "reward_type"}  # an order is always a voucher
    placed = await order.post("/v1/orders", json=body)
    assert placed.status_code == 201, placed.text
    return placed.json()


VOUCHER_TEXT = re.compile(r"\((?:booking|réservation) BK-")
"""What the voucher templates (en, fr; e-mail subject, SMS, WhatsApp) say and members' notices (order
cancelled or on hold, points credited…) do not: the booking in brackets."""


def emails_by_recipient(system: System, *, vouchers_only: bool = True) -> Counter[str]:
    """E-mails in the sink per recipient: the voucher e-mails, or (`vouchers_only=False`) all, notices
    to members included."""
    seen: Counter[str] = Counter()
    for path in system.mail_dir.glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if vouchers_only and not VOUCHER_TEXT.search(str(message["Subject"] or "")):
            continue
        for _, address in getaddresses(message.get_all("To", [])):
            seen[address.lower()] += 1
    return seen


def messages_by_recipient(system: System, *, vouchers_only: bool = True) -> Counter[str]:
    """SMS and WhatsApp messages in the sink per number, as `emails_by_recipient`."""
    seen: Counter[str] = Counter()
    for path in system.messages_dir.glob("*.json"):
        sent = json.loads(path.read_text())
        if vouchers_only and not VOUCHER_TEXT.search(sent.get("body", "")):
            continue
        seen[sent["to"].removeprefix("whatsapp:")] += 1
    return seen


async def issued(system: System, campaign_id: str) -> list[dict[str, Any]]:
    """Every `voucher.issued` envelope of a campaign (codes sealed: only the delivery service opens them)."""
    records = await read_topic(system.config.bootstrap_servers, Topics.VOUCHER_ISSUED, timeout=20)
    envelopes = [json.loads(r.value) for r in records]
    return [e for e in envelopes if e["data"]["campaign_id"] == campaign_id]


async def code_counts(voucher: httpx.AsyncClient, campaign_id: str) -> dict[str, int]:
    answer = await voucher.get(f"/v1/campaigns/{campaign_id}")
    assert answer.status_code == 200, answer.text
    counts: dict[str, int] = answer.json()["code_counts"]
    return counts


def envelope(data: Any, topic: str, producer: str) -> bytes:
    return Envelope.new(event_type=topic, producer=producer, data=data).to_bytes()


def hris_message(data: EventData) -> tuple[bytes, bytes]:
    """An upstream event as the HR system sends it: on its topic's key, from producer `hris`."""
    spec = for_payload(data)
    return spec.key_of(data).encode(), envelope(data, spec.name, "hris")


async def from_hris(system: System, *events: EventData) -> None:
    """Upstream events of one topic, published as the HR system publishes them."""
    messages: list[tuple[bytes | None, bytes | None]] = [hris_message(e) for e in events]
    await produce(system.config.bootstrap_servers, for_payload(events[0]).name, messages)
