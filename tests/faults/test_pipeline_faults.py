"""The whole system under faults: each scenario sends a burst of IPA voucher records (half by e-mail,
half by SMS, every record its own recipient), injects its fault mid-burst, recovers, waits until every
accepted record is a completed order, and checks the invariants from the tables and the sinks
(tests/faults/invariants.py). One running system serves the module; every scenario has its own
campaign, refs and recipients. The table of scenarios is printed at the end of the run."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import asyncpg
import pytest

from chassis.consumer_lag import read_lag
from chassis.settings import SERVICE_PORTS
from chassis.testing import produce, wait_until
from contracts.ipa import IpaRecordSubmitted
from contracts.registry import TOPICS
from contracts.topics import Topics
from deploy.sinks.receipts import COUNT_REPEATS_ENV
from tests import pipeline as p
from tests.faults import kafka_tools as kt
from tests.faults.burst import Burst
from tests.faults.invariants import check, delivery_workers
from tests.faults.scenarios import Recovery, assert_held, restart, run_scenario
from tests.pipeline import RUN
from tests.system import System, running_system

pytestmark = pytest.mark.fault

SERVICES = tuple(SERVICE_PORTS)
SHUTDOWN_GRACE_S = 10.0
DOWN_FOR_S = 2.0
"""How long a service, the broker or the database stays away while the burst goes on."""
BROKER_RECOVERY_S = 240.0
DELIVERY_LEASE_S = 20.0
"""Sends a killed delivery process had claimed are taken over when their lease ends (60 s by default)."""


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    env = {
        "ORCHARD_SHUTDOWN_GRACE": str(SHUTDOWN_GRACE_S),
        "ORCHARD_DELIVERY_LEASE": str(DELIVERY_LEASE_S),
        COUNT_REPEATS_ENV: "1",  # the sinks count every receipt: the table shows re-sends
    }
    with running_system(env=env) as running:
        yield running


# --------------------------------------------------------------------------------- 4. duplicates, replays


async def test_duplicates_and_replays_on_every_consumed_topic_double_nothing(system: System) -> None:
    bootstrap = system.config.bootstrap_servers
    replayed: Counter[str] = Counter()

    async def replay_everything(burst: Burst) -> Recovery:
        for topic in kt.consumed_topics():
            replayed[topic] += await kt.replay(bootstrap, topic)
        sent: list[tuple[bytes | None, bytes | None]] = [
            (key, value) for key, value in burst.payloads if key.decode() in burst.accepted
        ]
        await produce(bootstrap, Topics.IPA_RECORD_SUBMITTED, sent)  # the very same events again
        again = [  # new envelopes, as an upstream resending them
            p.hris_message(IpaRecordSubmitted.model_validate(r))
            for r in burst.records
            if r["external_ref"] in burst.accepted
        ]
        await produce(bootstrap, Topics.IPA_RECORD_SUBMITTED, again)
        return Recovery(
            notes=(f"mid-burst: {sum(replayed.values())} messages replayed, {2 * len(sent)} records resent",)
        )

    outcome, burst = await run_scenario(
        system, "duplicates + replays", "duplicates", 30, replay_everything, at=0.5
    )
    # Once it settled, everything the burst caused is on the topics: replay all of it once more.
    before = sum(replayed.values())
    for topic in kt.consumed_topics():
        replayed[topic] += await kt.replay(bootstrap, topic)
    groups = await kt.consuming_groups(bootstrap)
    await wait_until(
        lambda: _caught_up(bootstrap, groups), timeout=180, interval=1.0, what="every group to catch up"
    )
    await asyncio.sleep(3)  # a duplicate that slipped through would be queued for a send by now
    final = await check(system, burst, "duplicates + replays (after)")
    outcome.violations.extend(v for v in final.violations if v not in outcome.violations)
    outcome.doubled = max(outcome.doubled, final.doubled)
    outcome.lost = max(outcome.lost, final.lost)
    empty = sorted(topic for topic in kt.consumed_topics() if not replayed[topic])
    outcome.notes.append(f"after settling: {sum(replayed.values()) - before} messages replayed")
    outcome.notes.append(f"consumed topics without traffic to replay: {', '.join(empty) or 'none'}")
    assert_held(outcome)


async def _caught_up(bootstrap: str, groups: dict[str, set[str]]) -> bool:
    topic_of = {group: topic for topic, readers in groups.items() for group in readers}
    assert len(topic_of) == sum(map(len, groups.values())), "a consumer group reads one topic"
    return not any(lag.lag for lag in await read_lag(bootstrap, topic_of))


# --------------------------------------------------------------------------------- 5. poison messages


async def test_poison_on_every_consumed_topic_is_dead_lettered_once_per_group_and_the_flow_goes_on(
    system: System,
) -> None:
    bootstrap = system.config.bootstrap_servers
    poisons = [poison for topic in kt.consumed_topics() for poison in kt.poison_for(topic, RUN)]

    async def inject(burst: Burst) -> Recovery:
        await kt.inject(bootstrap, poisons)
        return Recovery(notes=(f"{len(poisons)} poison messages on {len(kt.consumed_topics())} topics",))

    outcome, _ = await run_scenario(system, "poison messages", "poison", 31, inject)
    groups = await kt.consuming_groups(bootstrap)
    for spec in TOPICS:  # the broker's view agrees with the registry: every consumer reads its topics
        assert {g.split(".")[1] for g in groups.get(spec.name, ())} == set(spec.consumers), spec.name

    async def all_dead_lettered() -> bool:
        letters = await _poison_letters(bootstrap, poisons)
        return all(set(letters[poison]) >= groups[poison.topic] for poison in poisons)

    await wait_until(
        all_dead_lettered, timeout=120, interval=1.0, what="every poison in its DLQ for every group"
    )
    letters = await _poison_letters(bootstrap, poisons)
    codes: Counter[str] = Counter()
    for poison in poisons:
        by_group = letters[poison]
        # once per consuming group: `_poison_letters` fails on a second dead letter of one group
        assert set(by_group) == groups[poison.topic], (poison.topic, poison.kind, sorted(by_group))
        for letter in by_group.values():
            assert letter.error, letter
            assert letter.original_topic == poison.topic, letter
            codes[f"{poison.kind}→{letter.error_code}"] += 1
    outcome.notes.append("dead letters: " + ", ".join(f"{k} x{n}" for k, n in sorted(codes.items())))
    assert_held(outcome)


async def _poison_letters(
    bootstrap: str, poisons: list[kt.Poison]
) -> dict[kt.Poison, dict[str, kt.DeadLetter]]:
    """Each poison's dead letters by consuming group (a group dead-lettering it twice fails the test)."""
    found: dict[kt.Poison, dict[str, kt.DeadLetter]] = {poison: {} for poison in poisons}
    for topic in {poison.topic for poison in poisons}:
        mine = {poison.value: poison for poison in poisons if poison.topic == topic}
        for letter in await kt.dead_letters(bootstrap, topic):
            poison = mine.get(letter.value)
            if poison is None:
                continue
            assert letter.consumer not in found[poison], (
                f"{topic}: {letter.consumer} dead-lettered {poison.kind} twice"
            )
            found[poison][letter.consumer] = letter
    return found


# --------------------------------------------------------------------------------- 1. SIGKILL each service


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_killed_mid_burst_loses_and_doubles_nothing(system: System, service: str) -> None:
    async def kill_and_restart(burst: Burst) -> Recovery:
        await asyncio.to_thread(system.kill, service)
        await asyncio.sleep(DOWN_FOR_S)
        return Recovery(await restart(system))

    outcome, burst = await run_scenario(
        system, f"SIGKILL {service}", f"kill-{service}", SERVICES.index(service), kill_and_restart
    )
    assert_held(outcome)
    if service == "delivery":  # at most one message per worker was sent but not recorded at the kill
        workers = delivery_workers(burst, replicas=len(system.replica_urls("delivery")))
        assert outcome.resent is not None, "the sinks did not count receipts"
        assert outcome.resent <= workers, f"{outcome.resent} messages re-sent by {workers} delivery workers"


# ---------------------------------------------------------------------------- 2. the broker, the database


@pytest.mark.timeout(600)  # log recovery after -9 took 80-200 s on a loaded 2-core machine
async def test_the_broker_killed_mid_burst_loses_and_doubles_nothing(system: System) -> None:
    async def kill_broker(burst: Burst) -> Recovery:
        await asyncio.to_thread(system.kafka_kill)
        await asyncio.sleep(DOWN_FOR_S)
        began = asyncio.get_running_loop().time()
        # A broker killed with -9 recovers every partition's log first: give it longer than `up` does.
        await asyncio.to_thread(system.kafka_start, BROKER_RECOVERY_S)
        return Recovery(asyncio.get_running_loop().time() - began + await restart(system))

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
