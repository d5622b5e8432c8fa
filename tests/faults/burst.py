"""A background burst of IPA voucher records on `ipa.record_submitted`, as an HR system sends them.

Every record has its own recipient (its own e-mail address or its own phone number), so what reached
the SMTP sink and the fake provider can be attributed to one record. The burst keeps resending a record
until the broker acknowledged it (the same bytes, so the same event id), as a real upstream does when
the broker is away: every record of a burst is eventually accepted, and `accepted` says which are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts.ipa import IpaRecordSubmitted
from contracts.topics import Topics
from tests import pipeline as p

DEFAULT_SIZE = 200
DEFAULT_SECONDS = 6.0


def burst_size() -> int:
    """Records per scenario: ORCHARD_FAULT_BURST (a soak sets it to thousands)."""
    return int(os.environ.get("ORCHARD_FAULT_BURST", str(DEFAULT_SIZE)))


def burst_seconds() -> float:
    """How long a burst takes to send: ORCHARD_FAULT_BURST_SECONDS, at least a few seconds so a fault
    lands in the middle of it."""
    return float(os.environ.get("ORCHARD_FAULT_BURST_SECONDS", str(DEFAULT_SECONDS)))


@dataclass
class Burst:
    """`size` records of one campaign, keyed `<prefix>-NNNNN`, half by e-mail and half by SMS."""

    bootstrap: str
    campaign_id: str
    prefix: str
    slot: int
    """A number of its own (0-999) per scenario of a system: the middle digits of its phone numbers."""
    size: int = field(default_factory=burst_size)
    seconds: float = field(default_factory=burst_seconds)
    records: list[dict[str, str]] = field(init=False)
    payloads: list[tuple[bytes, bytes]] = field(init=False)
    accepted: set[str] = field(init=False, default_factory=set)
    send_errors: int = field(init=False, default=0)
    started_at: float = field(init=False, default=0.0)
    finished_at: float | None = field(init=False, default=None)
    _task: asyncio.Task[None] | None = field(init=False, default=None, repr=False)
    _progressed: asyncio.Event = field(init=False, default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.slot < 1000:
            raise ValueError("slot must be 0-999")
        self.records = [self._record(n) for n in range(1, self.size + 1)]
        self.payloads = [p.hris_message(IpaRecordSubmitted.model_validate(r)) for r in self.records]

    def _record(self, n: int) -> dict[str, str]:
        ref = f"{self.prefix}-{n:05d}"
        channel = "email" if n % 2 else "sms"
        return p.record(
            self.campaign_id,
            ref,
            n,
            channel=channel,
            email=f"{ref}@{self.campaign_id}.example.com".lower(),
            phone=f"+4478{int(p.RUN, 16) % 100:02d}{self.slot:03d}{n:05d}",
        )

    # --- recipients -------------------------------------------------------------------------------

    def recipient(self, record: dict[str, str]) -> str:
        return record["email"] if record["channel"] == "email" else record["phone"]

    @property
    def refs(self) -> list[str]:
        return [r["external_ref"] for r in self.records]

    # --- sending ----------------------------------------------------------------------------------

    def start(self) -> Burst:
        self.started_at = time.monotonic()
        self._task = asyncio.create_task(self._send_all(), name=f"burst {self.prefix}")
        return self

    @property
    def progress(self) -> int:
        return len(self.accepted)

    async def reached(self, fraction: float) -> None:
        """Return once `fraction` of the records were accepted by the broker (or the burst ended)."""
        while self.progress < fraction * self.size and not self.done:
            self._progressed.clear()
            await self._progressed.wait()

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def finish(self, timeout: float = 180) -> None:
        """Wait until every record was accepted; re-raise what stopped the burst, if anything did."""
        assert self._task is not None, "the burst was never started"
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _send_all(self) -> None:
        chunks = max(1, int(self.seconds * 10))  # a chunk every 0.1 s
        per_chunk = max(1, -(-self.size // chunks))
        producer: AIOKafkaProducer | None = None
        try:
            for start in range(0, self.size, per_chunk):
                chunk = self.payloads[start : start + per_chunk]
                began = time.monotonic()
                while True:
                    try:
                        if producer is None:
                            producer = await _producer(self.bootstrap)
                        futures = [
                            await producer.send(Topics.IPA_RECORD_SUBMITTED, key=k, value=v) for k, v in chunk
                        ]
                        await asyncio.gather(*futures)
                        break
                    except (KafkaError, OSError, TimeoutError):
                        # The broker is away (a fault scenario): resend the same bytes once it is back.
                        self.send_errors += 1
                        if producer is not None:
                            await _stop_quietly(producer)
                            producer = None
                        await asyncio.sleep(0.5)
                self.accepted.update(k.decode() for k, _ in chunk)
                self._progressed.set()
                await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - began)))
        finally:
            self.finished_at = time.monotonic()
            self._progressed.set()
            if producer is not None:
                await _stop_quietly(producer)


async def _producer(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", request_timeout_ms=10_000
    )
    try:
        await producer.start()
    except BaseException:
        await _stop_quietly(producer)
        raise
    return producer


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    # A producer of a dead broker may fail to stop; it is dropped anyway.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 10)
