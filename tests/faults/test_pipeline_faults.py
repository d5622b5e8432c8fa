"""The whole system under faults: each scenario sends a burst of IPA voucher records (half by e-mail,
half by SMS, every record its own recipient), injects its fault mid-burst, recovers, waits until every
accepted record is a completed order, and checks the invariants from the tables and the sinks
(tests/faults/invariants.py). One running system serves the module; every scenario has its own
campaign, refs and recipients. The table of scenarios is printed at the end of the run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from chassis.settings import SERVICE_PORTS
from tests.faults.burst import Burst
from tests.faults.scenarios import Recovery, assert_held, restart, run_scenario
from tests.system import System, running_system

pytestmark = pytest.mark.fault

SERVICES = tuple(SERVICE_PORTS)
SHUTDOWN_GRACE_S = 10.0
DOWN_FOR_S = 2.0
"""How long a service, the broker or the database stays away while the burst goes on."""


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with running_system(env={"ORCHARD_SHUTDOWN_GRACE": str(SHUTDOWN_GRACE_S)}) as running:
        yield running


# --------------------------------------------------------------------------------- 1. SIGKILL each service


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_killed_mid_burst_loses_and_doubles_nothing(system: System, service: str) -> None:
    async def kill_and_restart(burst: Burst) -> Recovery:
        await asyncio.to_thread(system.kill, service)
        await asyncio.sleep(DOWN_FOR_S)
        return Recovery(await restart(system))

    outcome, _ = await run_scenario(
        system, f"SIGKILL {service}", f"kill-{service}", SERVICES.index(service), kill_and_restart
    )
    assert_held(outcome)


# --------------------------------------------------------------------------------- 2. the broker, the database


async def test_the_broker_killed_mid_burst_loses_and_doubles_nothing(system: System) -> None:
    async def kill_broker(burst: Burst) -> Recovery:
        await asyncio.to_thread(system.kafka_kill)
        await asyncio.sleep(DOWN_FOR_S)
        return Recovery(await restart(system))

    outcome, _ = await run_scenario(system, "SIGKILL Kafka broker", "kill-kafka", 10, kill_broker)
    assert_held(outcome)


async def test_the_database_stopped_mid_burst_loses_and_doubles_nothing(system: System) -> None:
    async def stop_database(burst: Burst) -> Recovery:
        await asyncio.to_thread(system.postgres_stop)
        await asyncio.sleep(DOWN_FOR_S)
        return Recovery(await restart(system))

    outcome, _ = await run_scenario(system, "stop Postgres", "stop-postgres", 11, stop_database)
    assert_held(outcome)


# --------------------------------------------------------------------------------- 6. SIGTERM drains


@pytest.mark.parametrize("service", ["order", "voucher", "delivery"])
async def test_a_service_terminated_mid_burst_drains_and_exits_cleanly(system: System, service: str) -> None:
    exits: list[tuple[int | None, float, int]] = []

    async def terminate_and_restart(burst: Burst) -> Recovery:
        code, took = await asyncio.to_thread(system.terminate, service, SHUTDOWN_GRACE_S + 10)
        unpublished = await _unpublished(system, service)
        exits.append((code, took, unpublished))
        await asyncio.sleep(DOWN_FOR_S)
        note = f"{service} exited {code} {took:.1f}s after SIGTERM, {unpublished} events left unpublished"
        return Recovery(await restart(system), notes=(note,))

    outcome, _ = await run_scenario(
        system, f"SIGTERM {service}", f"term-{service}", 20 + SERVICES.index(service), terminate_and_restart
    )
    [(code, took, unpublished)] = exits
    assert code == 0, f"{service} exit code {code} after SIGTERM (None: still running after {took:.0f}s)"
    assert took <= SHUTDOWN_GRACE_S + 5, (
        f"{service} took {took:.1f}s to exit, its grace is {SHUTDOWN_GRACE_S}s"
    )
    assert unpublished == 0, f"{service} exited with {unpublished} events in its outbox"
    assert_held(outcome)


async def _unpublished(system: System, schema: str) -> int:
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".outbox WHERE published_at IS NULL'))
    finally:
        await conn.close()
