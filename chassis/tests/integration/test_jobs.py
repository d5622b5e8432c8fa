"""Leader-elected periodic jobs against a real Postgres: one runner at a time, fast failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from prometheus_client import REGISTRY

from chassis.db import create_pool
from chassis.jobs import JobRunner, PeriodicJob, job_lock_key
from deploy.testing import ServiceDb

INTERVAL = 0.1


async def eventually(condition: Callable[[], bool], *, within: float = 5.0, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.02)


def failures_of(job: str) -> float:
    return REGISTRY.get_sample_value("orchard_job_failures_total", {"job": job}) or 0.0


class Recorder:
    """Notes which runner ran the job, and when."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float]] = []

    def job(self, runner: str, name: str = "sweep") -> PeriodicJob:
        async def run(_: asyncpg.Pool) -> None:
            self.runs.append((runner, time.monotonic()))

        return PeriodicJob(name=name, interval_s=INTERVAL, run=run)

    def runners_since(self, since: float) -> set[str]:
        return {runner for runner, at in self.runs if at >= since}

    def count(self, runner: str) -> int:
        return sum(1 for who, _ in self.runs if who == runner)


@pytest.fixture
async def runners() -> AsyncIterator[list[JobRunner]]:
    started: list[JobRunner] = []
    yield started
    await asyncio.gather(*(runner.stop(timeout_s=5) for runner in started))


@pytest.fixture
async def pool(service_db: ServiceDb) -> AsyncIterator[asyncpg.Pool]:
    """The pool every run is given; leadership is held on connections of the runner's own."""
    pool = await create_pool(service_db.dsn, schema=service_db.schema, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def start(
    runners: list[JobRunner], pool: asyncpg.Pool, *jobs: PeriodicJob, lock_dsn: str | None = None
) -> JobRunner:
    runner = JobRunner(pool, jobs, lock_dsn=lock_dsn)
    await runner.start()
    runners.append(runner)
    return runner


async def lock_holder_pid(service_db: ServiceDb, job_name: str) -> int | None:
    key = job_lock_key(service_db.schema, job_name) & 0xFFFFFFFFFFFFFFFF
    conn = await asyncpg.connect(service_db.admin_dsn)
    try:
        pid: int | None = await conn.fetchval(
            """
            SELECT pid FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND objsubid = 1
              AND classid::bigint = $1 AND objid::bigint = $2
            """,
            key >> 32,
            key & 0xFFFFFFFF,
        )
        return pid
    finally:
        await conn.close()


async def test_two_runners_of_the_same_job_never_both_run_it(
    service_db: ServiceDb, pool: asyncpg.Pool, runners: list[JobRunner]
) -> None:
    recorder = Recorder()
    first = await start(runners, pool, recorder.job("first"), lock_dsn=service_db.dsn)
    second = await start(runners, pool, recorder.job("second"), lock_dsn=service_db.dsn)

    await asyncio.sleep(12 * INTERVAL)

    assert len(recorder.runners_since(0)) == 1
    assert len(recorder.runs) >= 5
    assert first.is_leader("sweep") != second.is_leader("sweep")


async def test_a_standby_takes_over_when_the_leaders_backend_is_terminated(
    service_db: ServiceDb, pool: asyncpg.Pool, runners: list[JobRunner]
) -> None:
    recorder = Recorder()
    first = await start(runners, pool, recorder.job("first"), lock_dsn=service_db.dsn)
    await eventually(lambda: recorder.count("first") > 0, what="the first runner leads")
    second = await start(runners, pool, recorder.job("second"), lock_dsn=service_db.dsn)
    pid = await lock_holder_pid(service_db, "sweep")
    assert pid is not None

    admin = await asyncpg.connect(service_db.admin_dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()

    await eventually(lambda: recorder.count("second") > 0, within=3.0, what="the standby takes over")
    await eventually(lambda: not first.is_leader("sweep"), what="the old leader notices it lost the lock")
    settled = time.monotonic()
    await asyncio.sleep(6 * INTERVAL)
    assert recorder.runners_since(settled) == {"second"}
    assert second.is_leader("sweep")


async def test_a_standby_takes_over_when_the_leader_stops(
    service_db: ServiceDb, pool: asyncpg.Pool, runners: list[JobRunner]
) -> None:
    recorder = Recorder()
    first = await start(runners, pool, recorder.job("first"), lock_dsn=service_db.dsn)
    await eventually(lambda: first.is_leader("sweep"), what="the first runner leads")
    await start(runners, pool, recorder.job("second"), lock_dsn=service_db.dsn)

    await first.stop()
    stopped_at = time.monotonic()

    # The standby may win the lock while `stop()` is still closing the leader's connection.
    await eventually(lambda: recorder.count("second") > 0, within=3.0, what="the standby takes over")
    await asyncio.sleep(3 * INTERVAL)
    assert recorder.runners_since(stopped_at) == {"second"}
    assert REGISTRY.get_sample_value("orchard_job_leader", {"job": "sweep"}) == 1


async def test_a_failing_run_is_counted_and_the_job_keeps_running(
    service_db: ServiceDb, pool: asyncpg.Pool, runners: list[JobRunner]
) -> None:
    attempts = 0

    async def flaky(_: asyncpg.Pool) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("provider down")

    failures_before = failures_of("flaky")
    await start(runners, pool, PeriodicJob("flaky", INTERVAL, flaky), lock_dsn=service_db.dsn)

    await eventually(lambda: attempts >= 3, what="the job runs again after failures")
    assert failures_of("flaky") - failures_before >= 3


async def test_stop_waits_for_the_run_in_flight_then_releases_the_lock(
    service_db: ServiceDb, pool: asyncpg.Pool, runners: list[JobRunner]
) -> None:
    running, finished = asyncio.Event(), asyncio.Event()

    async def slow(_: asyncpg.Pool) -> None:
        running.set()
        await asyncio.sleep(0.5)
        finished.set()

    runner = await start(runners, pool, PeriodicJob("slow", 10.0, slow), lock_dsn=service_db.dsn)
    await asyncio.wait_for(running.wait(), timeout=5)

    await runner.stop()

    assert finished.is_set()
    assert not runner.is_leader("slow")
    assert await lock_holder_pid(service_db, "slow") is None


async def test_different_jobs_are_led_independently(
    service_db: ServiceDb, pool: asyncpg.Pool, runners: list[JobRunner]
) -> None:
    recorder = Recorder()
    await start(runners, pool, recorder.job("first", name="sweep"), lock_dsn=service_db.dsn)
    await start(runners, pool, recorder.job("second", name="expire"), lock_dsn=service_db.dsn)

    await eventually(lambda: recorder.runners_since(0) == {"first", "second"}, what="both jobs run")


async def test_runners_on_the_service_pool_elect_one_leader(
    service_db: ServiceDb, runners: list[JobRunner]
) -> None:
    recorder = Recorder()
    pools = [
        await create_pool(service_db.dsn, schema=service_db.schema, min_size=1, max_size=3) for _ in range(2)
    ]
    try:
        first = await start(runners, pools[0], recorder.job("first"))
        await eventually(lambda: first.is_leader("sweep"), what="the first runner leads")
        second = await start(runners, pools[1], recorder.job("second"))
        await asyncio.sleep(5 * INTERVAL)
        assert recorder.runners_since(0) == {"first"}

        await first.stop()

        await eventually(lambda: second.is_leader("sweep"), what="the second runner takes over")
        await second.stop()
    finally:
        await asyncio.gather(*(pool.close() for pool in pools))


async def test_each_run_is_given_the_runners_pool(
    service_db: ServiceDb, pool: asyncpg.Pool, runners: list[JobRunner]
) -> None:
    given: list[asyncpg.Pool] = []
    schemas: list[str] = []

    async def sweep(job_pool: asyncpg.Pool) -> None:
        given.append(job_pool)
        schemas.append(await job_pool.fetchval("SELECT current_schema()"))

    await start(runners, pool, PeriodicJob("sweep", INTERVAL, sweep), lock_dsn=service_db.dsn)

    await eventually(lambda: len(given) >= 2, what="the job runs twice")
    assert all(job_pool is pool for job_pool in given)
    assert set(schemas) == {service_db.schema}


def test_a_job_needs_a_positive_interval() -> None:
    async def noop(_: asyncpg.Pool) -> None:
        return None

    with pytest.raises(ValueError, match="positive"):
        PeriodicJob("x", 0, noop)


async def test_job_names_must_be_unique_within_a_runner(pool: asyncpg.Pool) -> None:
    async def noop(_: asyncpg.Pool) -> None:
        return None

    with pytest.raises(ValueError, match="unique"):
        JobRunner(pool, [PeriodicJob("x", 1, noop), PeriodicJob("x", 2, noop)])


def test_the_lock_key_is_stable_and_scoped_by_schema() -> None:
    assert job_lock_key("support", "sla_breaches") == job_lock_key("support", "sla_breaches")
    assert job_lock_key("support", "sla_breaches") != job_lock_key("wallet", "sla_breaches")
    assert -(2**63) <= job_lock_key("support", "sla_breaches") < 2**63
