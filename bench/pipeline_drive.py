"""Driving the system through its public contract, as its users do: a campaign and its codes over the
voucher service's HTTP API, allocations on `ipa.record_submitted` as an HR system publishes them, a CSV
through the order service's HTTP API, and the bench's own consumer of `order.state_changed` telling when
each order completed."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from chassis.auth import issue_token
from chassis.testing import voucher_campaign
from contracts.envelope import Envelope
from contracts.ipa import IpaRecordSubmitted
from contracts.registry import topic
from contracts.topics import Topics

FACE_VALUE = "25.00"
SMS_EVERY = 5
"""Every fifth allocation asks for SMS, the rest for e-mail (80 % e-mail, 20 % SMS)."""
STALL_S = 120.0
"""Only stops a hung run: this long without one more completed order is a stall, never a judgement."""
CSV_COLUMNS = tuple(name for name in IpaRecordSubmitted.model_fields if name not in ("batch_id", "test"))
"""An IPA record's fields, as the upload's columns (the batch is the upload itself; no test records)."""


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(role='admin', sub='bench')}"}


def channel_of(i: int) -> str:
    return "sms" if i % SMS_EVERY == SMS_EVERY - 1 else "email"


def record_fields(run: str, campaign_id: str, i: int) -> dict[str, str]:
    """The i-th allocation of a run: its own member, address and number, so every send is attributable."""
    ref = f"{run}-{i}"
    return {
        "external_ref": ref,
        "member_id": f"member-{ref}",
        "name": f"Member {i}",
        "email": f"{ref}@bench.example.com",
        "phone": f"+4477{i % 10**8:08d}",
        "channel": channel_of(i),
        "campaign_id": campaign_id,
        "reward_type": "voucher",
        "amount": FACE_VALUE,
        "currency": "EUR",
        "reason": "bench",
    }


def submitted_messages(run: str, campaign_id: str, first: int, count: int) -> list[tuple[str, bytes]]:
    """(external_ref, envelope bytes) of `count` allocations, built before any clock starts."""
    messages = []
    for i in range(first, first + count):
        data = IpaRecordSubmitted.model_validate(record_fields(run, campaign_id, i))
        envelope = Envelope.new(event_type=Topics.IPA_RECORD_SUBMITTED, producer="hris", data=data)
        messages.append((data.external_ref, envelope.to_bytes()))
    return messages


def write_csv(path: Path, run: str, campaign_id: str, rows: int) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for i in range(rows):
            writer.writerow(record_fields(run, campaign_id, i))


# ------------------------------------------------------------------------------------------ campaigns


async def create_campaign(urls: dict[str, str], name: str, *, codes: int) -> str:
    """A voucher campaign with `codes` generated codes, returned once the order service knows it."""
    campaign_id = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=urls["voucher"], headers=admin_headers(), timeout=600) as voucher:
        body = voucher_campaign(campaign_id, name, run="bench", budget="1000000000.00", face_value=FACE_VALUE)
        created = await voucher.post("/v1/campaigns", json=body)
        if created.status_code != 201:
            raise RuntimeError(f"campaign refused: {created.status_code} {created.text}")
        generated = await voucher.post(f"/v1/campaigns/{campaign_id}/codes/generate", json={"count": codes})
        if generated.status_code != 201:
            raise RuntimeError(f"code generation refused: {generated.status_code} {generated.text}")
    await _wait_known(urls["order"], campaign_id)
    return campaign_id


async def _wait_known(order_url: str, campaign_id: str) -> None:
    """A dry-run batch of one record is accepted only once `campaign.changed` reached the order service."""
    probe = {"records": [record_fields("probe", campaign_id, 0)]}
    deadline = time.monotonic() + STALL_S
    async with httpx.AsyncClient(base_url=order_url, headers=admin_headers(), timeout=60) as order:
        while time.monotonic() < deadline:
            answer = await order.post("/v1/ipa/batches", params={"mode": "dry_run"}, json=probe)
            if answer.status_code != 202:
                raise RuntimeError(f"dry run refused: {answer.status_code} {answer.text}")
            batch = await _poll_batch(order, answer.json()["batch_id"], lambda b: b["status"] != "pending")
            if batch.get("rejected", 1) == 0:
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the order service never learnt campaign {campaign_id}")


async def _poll_batch(
    order: httpx.AsyncClient, batch_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + STALL_S
    while True:
        batch: dict[str, Any] = (await order.get(f"/v1/ipa/batches/{batch_id}")).json()
        if done(batch) or batch.get("status") in ("completed", "failed", "rejected"):
            return batch
        if time.monotonic() > deadline:
            raise RuntimeError(f"batch {batch_id} stalled: {batch}")
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------------------------------ tracking


@dataclass
class Tracker:
    """The bench's own consumer of `order.state_changed`: when each external_ref's order completed, as
    seen downstream (the moment a consumer could act on it). Assigned to every partition and started at
    their end, so it reads only this run's events and joins no group."""

    bootstrap: str
    campaigns: set[str] = field(default_factory=set)
    completed: dict[str, float] = field(default_factory=dict)
    states: Counter[str] = field(default_factory=Counter)
    latest: dict[str, str] = field(default_factory=dict)
    """Each order's latest state or fulfilment status seen (events of one order share a partition)."""
    last_progress: float = field(default_factory=time.monotonic)
    _task: asyncio.Task[None] | None = None

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    data = json.loads(record.value)["data"]
                    if data["campaign_id"] not in self.campaigns:
                        continue
                    state = data["state"]
                    status = data.get("fulfilment_status") or state
                    self.states[status] += 1
                    if data.get("external_ref"):
                        self.latest[data["external_ref"]] = status
                    if state == "completed" and data.get("external_ref"):
                        self.completed.setdefault(data["external_ref"], now)
                        self.last_progress = now

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Tracker]:
        name = Topics.ORDER_STATE_CHANGED.value
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(
                [TopicPartition(name, p) for p in range(topic(Topics.ORDER_STATE_CHANGED).partitions)]
            )
            await consumer.seek_to_end()
            for tp in consumer.assignment():
                await consumer.position(tp)  # resolve the end now, before anything is sent
            self._task = asyncio.create_task(self._run(consumer))
            yield self
        finally:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            await consumer.stop()

    def in_flight(self) -> dict[str, int]:
        """Orders not completed yet, by where they wait: awaiting_voucher, on_hold, delivering, …"""
        waiting = Counter(status for status in self.latest.values() if status != "completed")
        return dict(waiting)

    async def wait_for(self, refs: list[str], *, what: str) -> float:
        """Until every ref completed; returns the monotonic time the last one did."""
        self.last_progress = time.monotonic()
        while True:
            if self._task is not None and self._task.done():
                self._task.result()
            missing = sum(1 for r in refs if r not in self.completed)
            if not missing:
                return max(self.completed[r] for r in refs)
            if time.monotonic() - self.last_progress > STALL_S:
                raise RuntimeError(
                    f"{what}: stalled with {missing} of {len(refs)} orders not completed;"
                    f" states seen: {dict(self.states)}"
                )
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------------------ sending


def hris_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
    )


async def send_burst(producer: AIOKafkaProducer, messages: list[tuple[str, bytes]]) -> dict[str, float]:
    """Every message as fast as the producer takes them; returns each ref's submission time."""
    name = Topics.IPA_RECORD_SUBMITTED.value
    sent: dict[str, float] = {}
    acks = []
    for ref, value in messages:
        sent[ref] = time.monotonic()
        acks.append(await producer.send(name, key=ref.encode(), value=value))
    await asyncio.gather(*acks)
    return sent


async def send_steady(
    producer: AIOKafkaProducer, messages: list[tuple[str, bytes]], rate: float
) -> dict[str, float]:
    """One message every 1/rate s on a fixed schedule (a late tick sends at once, never skips); each ref's
    submission time is its send time."""
    name = Topics.IPA_RECORD_SUBMITTED.value
    sent: dict[str, float] = {}
    acks = []
    started = time.monotonic()
    for i, (ref, value) in enumerate(messages):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[ref] = time.monotonic()
        acks.append(await producer.send(name, key=ref.encode(), value=value))
    await asyncio.gather(*acks)
    return sent


# ------------------------------------------------------------------------------------------ CSV


@dataclass
class CsvTimes:
    rows: int
    upload_s: float = 0.0
    validated_s: float = 0.0
    accepted_s: float = 0.0
    delivered_s: float = 0.0
    final: dict[str, Any] = field(default_factory=dict)


async def upload_csv(order_url: str, path: Path, rows: int) -> CsvTimes:
    """Stream the CSV to `POST /v1/ipa/batches`, then follow the batch's progress: every row validated,
    the batch completed (every order accepted) and every order completed (its code delivered)."""
    times = CsvTimes(rows)

    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(256 * 1024):
                yield chunk

    headers = {**admin_headers(), "Content-Type": "text/csv"}
    async with httpx.AsyncClient(base_url=order_url, headers=admin_headers(), timeout=600) as order:
        started = time.monotonic()
        response = await order.post("/v1/ipa/batches", content=body(), headers=headers)
        times.upload_s = time.monotonic() - started
        if response.status_code != 202:
            raise RuntimeError(f"CSV upload refused: {response.status_code} {response.text}")
        batch_id = response.json()["batch_id"]
        last_change, last_seen = time.monotonic(), None
        while True:
            batch: dict[str, Any] = (await order.get(f"/v1/ipa/batches/{batch_id}")).json()
            now = time.monotonic()
            if not times.validated_s and batch.get("validated", 0) >= rows:
                times.validated_s = now - started
            if not times.accepted_s and batch.get("status") in ("completed", "failed", "rejected"):
                times.accepted_s = now - started
                if batch["status"] != "completed":
                    raise RuntimeError(f"the CSV batch ended {batch['status']}: {batch}")
            completed = batch.get("orders", {}).get("completed", 0)
            if times.accepted_s and completed >= batch.get("accepted", rows):
                times.delivered_s = now - started
                times.final = batch
                return times
            progress = (batch.get("validated"), batch.get("accepted"), completed)
            if progress != last_seen:
                last_change, last_seen = now, progress
            elif now - last_change > STALL_S:
                raise RuntimeError(f"CSV batch stalled: {batch}")
            await asyncio.sleep(0.1)
