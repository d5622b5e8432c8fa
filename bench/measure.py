"""What every scenario shares: the events it moves, its result, and how it knows it is done."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from chassis.sealed_codes import dev_sealer
from contracts.envelope import Envelope
from contracts.registry import topic
from contracts.topics import Topics
from contracts.vouchers import VoucherIssued

# The pipeline's busiest event (one per order), on as many partitions as its real topic.
EVENT_TYPE = Topics.VOUCHER_ISSUED
PARTITIONS = topic(EVENT_TYPE).partitions
# One sealed code for every event: the messaging layer never opens it, and sealing is the voucher
# service's cost, not the bench's.
_CODE = {
    "campaign_id": "spring-thanks",
    "sealed_code": dev_sealer().seal("QX7M-4T9K-2W8P", uuid.UUID(int=0)),
    "masked_code": "****-****-2W8P",
}
# Only stops a hung run (plus 50 ms per event); never a judgement of speed.
STALL_TIMEOUT_S = 120


RESULTS_DIR = Path(__file__).resolve().parent / "results"


def quiet_logs(*, kafka_client_errors_only: bool = False) -> None:
    """Warnings only (the Kafka client's errors only, when asked): what a bench prints is its table."""
    logging.basicConfig(level=logging.WARNING)
    if kafka_client_errors_only:
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, help="where to write the JSON record (default bench/results/)")


def save_record(record: dict[str, Any], prefix: str, started_at: datetime, path: Path | None = None) -> Path:
    """A run's record as JSON: at `path`, else `bench/results/<prefix><start time>.json`."""
    path = path or RESULTS_DIR / f"{prefix}{started_at:%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return path


@dataclass(frozen=True)
class Measurement:
    key: str
    label: str
    events: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def voucher_issued_events(count: int) -> list[Envelope[VoucherIssued]]:
    """Distinct real envelopes, built before any clock starts: that is the domain's cost, not ours."""
    return [
        Envelope.new(
            event_type=EVENT_TYPE,
            producer="voucher",
            data=VoucherIssued(
                order_id=uuid.uuid4(), code_id=uuid.uuid4(), face_value="25.00", currency="EUR", **_CODE
            ),
        )
        for _ in range(count)
    ]


def message_key(envelope: Envelope[VoucherIssued]) -> str:
    return str(envelope.data.order_id)


async def wait_for_count(count: Callable[[], Awaitable[Any]], target: int, *, what: str) -> float:
    """Poll until `count()` reaches `target` and return the monotonic time it did; the 10 ms poll
    period bounds the error of every end time measured this way."""
    deadline = time.monotonic() + STALL_TIMEOUT_S + target / 20
    while await count() < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark stalled: {what} never reached {target}")
        await asyncio.sleep(0.01)
    return time.monotonic()
