"""A small service built on the chassis, for fault tests of the messaging guarantees.

`produce` writes numbered state rows, each with its event in the same transaction (the outbox), and
runs the relay. `consume` applies those events as effect rows through the inbox. Configured by
environment (PROBE_*) plus the usual ORCHARD_*/DATABASE_URL/KAFKA_BOOTSTRAP_SERVERS; run as
`python tests/faults/probe_app.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from chassis.consumer import EventConsumer, Subscription
from chassis.errors import is_transient
from chassis.outbox import OutgoingEvent, add_to_outbox
from chassis.service import ServiceRuntime, ServiceSpec, run_service
from chassis.settings import Settings
from contracts.envelope import Envelope, EventData

log = structlog.get_logger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "probe_migrations"


class ProbeEvent(EventData):
    n: int


def _topic() -> str:
    return os.environ["PROBE_TOPIC"]


async def write_state_rows(runtime: ServiceRuntime) -> None:
    """Write rows 1..PROBE_COUNT in small transactions, resuming after a crash where it stopped."""
    assert runtime.pool is not None
    count = int(os.environ.get("PROBE_COUNT", "1000"))
    per_tx = int(os.environ.get("PROBE_ROWS_PER_TX", "10"))
    pause = float(os.environ.get("PROBE_PAUSE_S", "0.005"))
    topic = _topic()
    start = 1
    while start <= count:
        end = min(start + per_tx - 1, count)
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "INSERT INTO probe_state (n) SELECT g FROM generate_series($1::int, $2::int) AS g"
                    " ON CONFLICT DO NOTHING RETURNING n",
                    start,
                    end,
                )
                await add_to_outbox(
                    conn,
                    [
                        OutgoingEvent(
                            key=str(r["n"]),
                            topic=topic,
                            envelope=Envelope.new(
                                event_type=topic, producer="probe", data=ProbeEvent(n=r["n"])
                            ),
                        )
                        for r in rows
                    ],
                )
        except Exception as exc:
            if not is_transient(exc):
                log.exception("probe_writer_failed")
                raise
            await asyncio.sleep(0.2)  # Postgres restarting: try the same rows again
            continue
        start = end + 1
        await asyncio.sleep(pause)


async def apply_event(conn: asyncpg.Connection, envelope: Envelope[Any]) -> None:
    await conn.execute(
        "INSERT INTO probe_effects (n, event_id) VALUES ($1, $2)", envelope.data.n, envelope.event_id
    )


class CrashingConsumer(EventConsumer):
    """Dies by SIGKILL right after a batch's database commit and before its offsets are committed."""

    batches = 0

    async def process(self, sub: Subscription, records: Sequence[Any]) -> None:
        await super().process(sub, records)
        CrashingConsumer.batches += 1
        if CrashingConsumer.batches >= int(os.environ["PROBE_CRASH_AFTER_BATCHES"]):
            os.kill(os.getpid(), signal.SIGKILL)


def build_spec(mode: str) -> ServiceSpec:
    writer_task: list[asyncio.Task[None]] = []

    async def start_writer(runtime: ServiceRuntime) -> None:
        writer_task.append(asyncio.create_task(write_state_rows(runtime)))

    async def stop_writer(runtime: ServiceRuntime) -> None:
        for task in writer_task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    subscriptions = [Subscription(name="probe", topic=_topic(), payload=ProbeEvent, handle=apply_event)]
    return ServiceSpec(
        title=f"Orchard fault probe ({mode})",
        migrations_dir=MIGRATIONS,
        subscriptions=subscriptions if mode == "consume" else (),
        on_startup=[start_writer] if mode == "produce" else (),
        on_shutdown=[stop_writer] if mode == "produce" else (),
        consumer_class=CrashingConsumer if os.environ.get("PROBE_CRASH_AFTER_BATCHES") else EventConsumer,
    )


if __name__ == "__main__":
    os.environ.setdefault("ORCHARD_SERVICE", "probe")
    run_service(build_spec(os.environ.get("PROBE_MODE", "produce")), Settings())
