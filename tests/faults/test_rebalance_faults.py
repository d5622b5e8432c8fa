"""A consumer process frozen (SIGSTOP) past its group session timeout while its twin replica runs on:
the group rebalances its partitions to the twin, the flow goes on, and when the frozen process wakes
(SIGCONT) with the batches and sends it had in flight, nothing is doubled. Two replicas of every service
share each consumer group here (their own system, separate from test_pipeline_faults.py's)."""

from __future__ import annotations

import asyncio
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


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    # A delivery lease shorter than the freeze: the twin takes over the frozen sender's claimed sends, and
    # the frozen one finishes them when it wakes (what must not send or count twice).
    with running_system(replicas=2, env={"ORCHARD_DELIVERY_LEASE": str(DELIVERY_LEASE_S)}) as running:
        yield running


def relay_leader(system: System, service: str) -> str:
    """The replica (`voucher` or `voucher-2`) running the schema's outbox relay, from its /metrics."""
    leaders = []
    for number, url in enumerate(system.replica_urls(service), start=1):
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        if re.search(rf'orchard_outbox_relay_leader\{{schema="{service}"\}} 1\.0', metrics):
            leaders.append(service if number == 1 else f"{service}-{number}")
    assert len(leaders) == 1, f"{service}: relay leaders {leaders}"
    return leaders[0]


@pytest.mark.parametrize(
    ("service", "role"), [("voucher", "standby"), ("delivery", "standby"), ("voucher", "relay leader")]
)
async def test_a_frozen_consumer_is_replaced_and_doubles_nothing_when_it_wakes(
    system: System, service: str, role: str
) -> None:
    leader = relay_leader(system, service)
    twin = f"{service}-2" if leader == service else service
    frozen = leader if role == "relay leader" else twin
    progress: dict[str, int] = {}

    async def freeze_then_wake(burst: Burst) -> Recovery:
        before = await completed_count(system, burst.campaign_id)
        system.signal(frozen, signal.SIGSTOP)
        began = time.monotonic()
        try:
            await asyncio.sleep(FROZEN_AT_LEAST_S)
            # A standby stays frozen until the twin has done the rest (the relay leader's outbox waits
            # for it: no need to watch that stall for long).
            while role == "standby" and time.monotonic() - began < FROZEN_AT_MOST_S:
                if burst.done and await completed_count(system, burst.campaign_id) >= len(burst.accepted):
                    break
                await asyncio.sleep(1)
            progress["while_frozen"] = await completed_count(system, burst.campaign_id) - before
        finally:
            system.signal(frozen, signal.SIGCONT)
        frozen_s = time.monotonic() - began
        return Recovery(
            notes=(
                f"{frozen} ({role}) frozen {frozen_s:.0f}s; {progress['while_frozen']} orders completed "
                "meanwhile",
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
    if role == "standby":
        # Its partitions went to the twin replica: the flow did not wait for the frozen process.
        assert progress["while_frozen"] > 0, f"nothing completed while {frozen} was frozen"
