"""Running one fault scenario: a campaign of its own, a burst of records, the fault injected mid-burst,
the recovery, the wait until every accepted record completed, and the invariants checked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests import pipeline as p
from tests.faults.burst import Burst, burst_size
from tests.faults.invariants import Outcome, check, record_outcome, wait_settled
from tests.system import System

SETTLE_TIMEOUT_S = 240.0


@dataclass
class Recovery:
    """What a fault's recovery step measured, and anything worth printing under the table."""

    restart_s: float = 0.0
    notes: tuple[str, ...] = ()


Fault = Callable[[Burst], Awaitable[Recovery]]


async def restart(system: System) -> float:
    """Start whatever is not running and wait until every process is ready again; the seconds it took."""
    began = time.monotonic()
    await asyncio.to_thread(system.restart)
    await asyncio.to_thread(system.wait_ready)
    return time.monotonic() - began


async def run_scenario(
    system: System, label: str, key: str, slot: int, fault: Fault, *, at: float = 0.4, size: int | None = None
) -> tuple[Outcome, Burst]:
    """`label` names the scenario in the table; `key` (unique in the run, lower case) names its campaign
    and its records; `slot` (unique per system) its phone numbers. The fault runs once `at` of the
    burst was sent."""
    size = size or burst_size()
    async with p.clients(system) as (order, voucher):
        campaign_id = await p.campaign(voucher, order, key, codes=size + 10)
    burst = Burst(system.config.bootstrap_servers, campaign_id, prefix=campaign_id, slot=slot, size=size)
    burst.start()
    try:
        await burst.reached(at)
        recovery = await fault(burst)
        await burst.finish()
    finally:
        await burst.cancel()
    began = time.monotonic()
    await wait_settled(system, burst, timeout=SETTLE_TIMEOUT_S)
    settle_s = time.monotonic() - began
    outcome = await check(system, burst, label, restart_s=recovery.restart_s, settle_s=settle_s)
    outcome.notes.extend(recovery.notes)
    if burst.send_errors:
        outcome.notes.append(f"the upstream resent {burst.send_errors} chunks while the broker was away")
    record_outcome(outcome)
    return outcome, burst


def assert_held(outcome: Outcome) -> None:
    assert outcome.ok, f"{outcome.scenario}: " + "; ".join(outcome.violations)
