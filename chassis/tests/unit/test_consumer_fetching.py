"""How the chassis's batch subscriptions fetch: a lone event is handed on as soon as it is fetched."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from faststream.kafka import KafkaBroker

from chassis.consumer import EventConsumer, Subscription
from contracts.orders import OrderStateChanged
from contracts.topics import Topics


class _Consumer:
    """Answers getmany from a script: nothing for a while, then one record."""

    def __init__(self, script: list[dict[str, list[str]]]) -> None:
        self.script = script
        self.calls: list[tuple[int, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.calls.append((timeout_ms, max_records))
        return self.script.pop(0)


async def _ignore(conn: Any, envelope: Any) -> None:
    return None


def _subscriber() -> Any:
    consumer = EventConsumer(
        broker=KafkaBroker("127.0.0.1:1"),
        pool=None,  # type: ignore[arg-type]  # fetching never touches the database
        service="probe",
        bootstrap_servers="127.0.0.1:1",
        max_batch=7,
        idle_wait_ms=900,
    )
    consumer.subscribe(Subscription("probe", Topics.ORDER_STATE_CHANGED, OrderStateChanged, _ignore))
    (subscriber,) = consumer._broker.subscribers
    return subscriber


async def test_an_empty_fetch_is_followed_by_the_next_fetch_without_a_nap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subscriber = _subscriber()

    async def no_nap(seconds: float) -> None:
        raise AssertionError(f"the subscription napped {seconds} s after an empty fetch")

    monkeypatch.setattr(anyio, "sleep", no_nap)
    fake = _Consumer([{}, {}, {"tp": ["lone event"]}])
    assert await subscriber.get_msg(fake) == ()
    assert await subscriber.get_msg(fake) == ()
    assert await subscriber.get_msg(fake) == ("lone event",)


async def test_a_fetch_waits_for_the_first_record_and_takes_what_is_buffered_up_to_the_batch_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subscriber = _subscriber()
    fake = _Consumer([{"tp-0": ["a", "b"], "tp-1": ["c"]}])
    assert await subscriber.get_msg(fake) == ("a", "b", "c")
    assert fake.calls == [(900, 7)]
