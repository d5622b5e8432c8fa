"""Periodic jobs that run on exactly one replica at a time, chosen by a Postgres advisory lock.

Each job has its own connection holding (or trying to take) a session-level advisory lock keyed by
the schema and the job name. The holder runs the job every interval; the others try to take the
lock every interval. When the holder's connection dies, Postgres releases the lock and a standby
takes over at its next try. Leadership cannot fence a run already under way, so a run may rarely
overlap with the new leader's first one: jobs must be idempotent (they usually are: "find overdue
tickets and flag them").

Each run is given the service's pool: a service composes its jobs before the runtime connects, so they
take the pool rather than capture it (or a context holding it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from chassis.db import Connection, advisory_lock_key
from chassis.metrics import JOB_FAILURES, JOB_LEADER, JOB_RUNS

log = structlog.get_logger("chassis.jobs")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_s: float
    run: Callable[[asyncpg.Pool], Awaitable[None]]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a periodic job needs a name")
        if self.interval_s <= 0:
            raise ValueError(f"job {self.name}: interval_s must be positive")


def job_lock_key(schema: str, job_name: str) -> int:
    """The job's advisory lock key: stable across processes, versions and restarts (unlike hash())."""
    return advisory_lock_key("job", schema, job_name)


class JobRunner:
    """Runs `jobs` on this replica whenever it wins their leadership; `start()` then `stop()`.

    Every run is given `pool`, the service's pool. Each job's leadership is held on a connection of
    its own: from `lock_dsn` when given (so the runner's connections do not take from the pool), else
    one checked out of `pool` while the runner runs. Locks are keyed by the connection's
    `current_schema()`, so replicas of one service compete and different services never do.
    """

    def __init__(
        self, pool: asyncpg.Pool, jobs: Sequence[PeriodicJob], *, lock_dsn: str | None = None
    ) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError("periodic job names must be unique")
        self._pool = pool
        self._lock_dsn = lock_dsn
        self._jobs = list(jobs)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._leading: set[str] = set()

    def is_leader(self, job_name: str) -> bool:
        return job_name in self._leading

    async def start(self) -> None:
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._lead_or_stand_by(job), name=f"job:{job.name}") for job in self._jobs
        ]

    async def stop(self, *, timeout_s: float | None = None) -> None:
        """Let in-flight runs finish (up to `timeout_s`, then cancel them) and give up leadership."""
        self._stopping.set()
        if not self._tasks:
            return
        _, unfinished = await asyncio.wait(self._tasks, timeout=timeout_s)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _connect(self, job: PeriodicJob) -> Connection:
        application_name = f"orchard-job:{job.name}"[:63]
        if self._lock_dsn is not None:
            return await asyncpg.connect(
                self._lock_dsn, server_settings={"application_name": application_name}
            )
        conn = await self._pool.acquire()
        # Shows who holds which lock in pg_stat_activity; the pool resets it when the connection returns.
        await conn.execute("SELECT set_config('application_name', $1, false)", application_name)
        return conn

    async def _disconnect(self, conn: Connection) -> None:
        # Closing or returning the connection ends its session and with it any advisory lock it held.
        with contextlib.suppress(Exception):
            if isinstance(conn, PoolConnectionProxy):
                await self._pool.release(conn)
            else:
                await conn.close()

    def _set_leader(self, job: PeriodicJob, leading: bool) -> None:
        if leading and job.name not in self._leading:
            log.info("job_leadership_acquired", job=job.name)
        elif not leading and job.name in self._leading:
            log.info("job_leadership_released", job=job.name)
        if leading:
            self._leading.add(job.name)
        else:
            self._leading.discard(job.name)
        JOB_LEADER.labels(job.name).set(1 if leading else 0)

    async def _lead_or_stand_by(self, job: PeriodicJob) -> None:
        loop = asyncio.get_running_loop()
        conn: Connection | None = None
        key = 0
        try:
            while not self._stopping.is_set():
                started = loop.time()
                try:
                    if conn is None:
                        conn = await self._connect(job)
                        schema = await conn.fetchval("SELECT current_schema()")
                        if schema is None:
                            raise RuntimeError("the connection's search_path names no existing schema")
                        key = job_lock_key(schema, job.name)
                    if self.is_leader(job.name):
                        # A terminated backend has already lost the lock; find out before running.
                        await conn.execute("SELECT 1")
                    else:
                        self._set_leader(job, await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
                except Exception as exc:
                    log.warning("job_lock_connection_failed", job=job.name, error=repr(exc))
                    self._set_leader(job, False)
                    if conn is not None:
                        await self._disconnect(conn)
                        conn = None
                if self.is_leader(job.name):
                    await self._run_once(job)
                remaining = job.interval_s - (loop.time() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=max(remaining, 0))
        finally:
            # Step down before unlocking: a standby may win the lock the moment it is free.
            was_leader = self.is_leader(job.name)
            self._set_leader(job, False)
            if conn is not None:
                if was_leader:
                    with contextlib.suppress(Exception):
                        await conn.execute("SELECT pg_advisory_unlock($1)", key)
                await self._disconnect(conn)

    async def _run_once(self, job: PeriodicJob) -> None:
        JOB_RUNS.labels(job.name).inc()
        try:
            await job.run(self._pool)
        except Exception:
            JOB_FAILURES.labels(job.name).inc()
            log.exception("job_failed", job=job.name)
