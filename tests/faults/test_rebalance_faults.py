"""A consumer process frozen (SIGSTOP) past its group session timeout while its twin replica runs on:
the group rebalances its partitions to the twin, the flow goes on, and when the frozen process wakes
(SIGCONT) with the batches and sends it had in flight, nothing is doubled. Two replicas of every service
share each consumer group here (their own system, separate from test_pipeline_faults.py's).

Frozen while it runs its schema's outbox relay, the process also stops renewing the relay's lease: the
twin must lead the relay within RELAY_TAKEOVER_S, most of the burst must complete while the leader is
still frozen, and the woken one's producer is fenced (nothing it had claimed is published twice)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.faults.burst import Burst
from tests.faults.invariants import completed_count
from tests.faults.scenarios import Recovery, assert_held, run_scenario
from tests.system import System, running_system

pytestmark = pytest.mark.fault

SESSION_TIMEOUT_S = 10.0
"""The consumers' Kafka session timeout (FastStream's default): frozen longer, a member is evicted."""
FROZEN_AT_LEAST_S = SESSION_TIMEOUT_S + 8
FROZEN_AT_MOST_S = 60.0
DELIVERY_LEASE_S = 12.0
RELAY_TAKEOVER_S = 5.0
"""The outbox relay's lease runs out 3 s after its last renewal; a standby takes it within 0.5 s."""
MOST = 0.8
"""The share of the orders left at the freeze that must complete before the frozen process wakes."""


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    # A delivery lease shorter than the freeze: the twin takes over the frozen sender's claimed sends, and
    # the frozen one finishes them when it wakes (what must not send or count twice).
    with running_system(replicas=2, env={"ORCHARD_DELIVERY_LEASE": str(DELIVERY_LEASE_S)}) as running:
        yield running


def relay_leader(system: System, service: str) -> str:
    """The replica (`voucher` or `voucher-2`) running the schema's outbox relay, from its /metrics."""
    leaders = [
        replica
        for replica, url in replica_urls(system, service).items()
        if leads_relay(httpx.get(f"{url}/metrics", timeout=10).text, service)
    ]
    assert len(leaders) == 1, f"{service}: relay leaders {leaders}"
    return leaders[0]


def replica_urls(system: System, service: str) -> dict[str, str]:
    urls = system.replica_urls(service)
    return {service if n == 1 else f"{service}-{n}": url for n, url in enumerate(urls, start=1)}


def leads_relay(metrics: str, schema: str) -> bool:
    return re.search(rf'orchard_outbox_relay_leader\{{schema="{schema}"\}} 1\.0', metrics) is not None


async def seconds_until_relay_leader(url: str, schema: str, began: float, *, timeout: float) -> float | None:
    """Seconds from `began` until the replica at `url` leads the schema's relay; None if not by timeout."""
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() - began < timeout:
            with contextlib.suppress(httpx.HTTPError):
                if leads_relay((await client.get(f"{url}/metrics")).text, schema):
                    return time.monotonic() - began
            await asyncio.sleep(0.1)
    return None


@pytest.mark.parametrize(
    ("service", "role"), [("voucher", "standby"), ("delivery", "standby"), ("voucher", "relay leader")]
)
async def test_a_frozen_consumer_is_replaced_and_doubles_nothing_when_it_wakes(
    system: System, service: str, role: str
) -> None:
    leader = relay_leader(system, service)
    twin = f"{service}-2" if leader == service else service
    frozen = leader if role == "relay leader" else twin
    progress: dict[str, float] = {}

    async def freeze_then_wake(burst: Burst) -> Recovery:
        before = await completed_count(system, burst.campaign_id)
        system.signal(frozen, signal.SIGSTOP)
        began = time.monotonic()
        try:
            if role == "relay leader":
                twin_url = replica_urls(system, service)[twin]
                took = await seconds_until_relay_leader(twin_url, service, began, timeout=FROZEN_AT_LEAST_S)
                progress["relay_takeover_s"] = took if took is not None else float("inf")
            await asyncio.sleep(max(0.0, FROZEN_AT_LEAST_S - (time.monotonic() - began)))
            # Frozen until the twin has done the rest: the flow must not wait for the frozen process.
            while time.monotonic() - began < FROZEN_AT_MOST_S:
                if burst.done and await completed_count(system, burst.campaign_id) >= len(burst.accepted):
                    break
                await asyncio.sleep(1)
            progress["while_frozen"] = await completed_count(system, burst.campaign_id) - before
            progress["left_at_freeze"] = burst.size - before
        finally:
            system.signal(frozen, signal.SIGCONT)
        frozen_s = time.monotonic() - began
        took_note = (
            f"; the twin led the relay {progress['relay_takeover_s']:.1f}s in" if role != "standby" else ""
        )
        return Recovery(
            notes=(
                f"{frozen} ({role}) frozen {frozen_s:.0f}s{took_note}; {progress['while_frozen']:.0f} of the "
                f"{progress['left_at_freeze']:.0f} orders left completed meanwhile",
            )
        )

    outcome, _ = await run_scenario(
        system,
        f"SIGSTOP {service} ({role})",
        f"stop-{service}-{role.split()[-1]}",
        {"voucher": 40, "delivery": 41}[service] + (5 if role != "standby" else 0),
        freeze_then_wake,
        at=0.3,
    )
    assert_held(outcome)
    # Its partitions went to the twin replica (and its outbox relay, when it led it): the flow did not
    # wait for the frozen process.
    assert progress["while_frozen"] > 0, f"nothing completed while {frozen} was frozen"
    if role == "relay leader":
        assert progress["relay_takeover_s"] <= RELAY_TAKEOVER_S, (
            f"the twin led after {progress['relay_takeover_s']}s"
        )
        assert progress["while_frozen"] >= MOST * progress["left_at_freeze"], outcome.notes
        # Awake again, the frozen one found its lease taken and its producer fenced: it stands by.
        assert relay_leader(system, service) == twin
