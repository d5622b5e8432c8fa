"""Sampling the running system about once a second: each service consumer group's lag (committed vs end
offsets), each process's CPU seconds and RSS (psutil on the pids under the system's var/run), and how
many orders the bench has seen completed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.registry import TOPICS

from .pipeline_stats import group_lag

WHOLE_TREE = ("postgres",)
GROUP_PREFIX = "orchard."
"""The chassis names each consumer group `orchard.<service>.<subscription>`."""


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


@dataclass
class Monitor:
    bootstrap: str
    pids: dict[str, int]
    completed: Callable[[], int]
    in_flight: Callable[[], dict[str, int]] = dict
    interval_s: float = 1.0
    phase: str = "setup"
    samples: list[dict[str, Any]] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)
    final_rss: dict[str, int] = field(default_factory=dict)
    """Each process's RSS when the monitor stopped: a peak alone cannot tell a spike from memory kept."""
    started: float = field(default_factory=time.monotonic)
    _processes: dict[str, psutil.Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.Error):
                self._processes[name] = psutil.Process(pid)

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) each process has used since it started; PostgreSQL's are its
        postmaster's plus every backend's now running (a backend's CPU leaves the sum when it exits, the
        services' pooled connections live as long as they do)."""
        result = {}
        for name, process in self._processes.items():
            with contextlib.suppress(psutil.Error):
                result[name] = cpu_seconds(process)
                if name in WHOLE_TREE:
                    for child in process.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            result[name] += cpu_seconds(child)
        return result

    def _memory(self) -> dict[str, int]:
        """RSS per process (for PostgreSQL, the postmaster alone: its backends share its memory)."""
        result = {}
        for name, process in self._processes.items():
            with contextlib.suppress(psutil.Error):
                result[name] = process.memory_info().rss
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), result[name])
        return result

    async def end_offsets(self, consumer: AIOKafkaConsumer) -> dict[tuple[str, int], int]:
        partitions = [TopicPartition(t.name, p) for t in TOPICS for p in range(t.partitions)]
        ends = await consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def _lags(self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> dict[str, int]:
        ends = await self.end_offsets(consumer)
        groups = sorted(g[0] for g in await admin.list_consumer_groups() if g[0].startswith(GROUP_PREFIX))
        # All groups at once: one after the other, twenty round trips would stretch a sample to seconds.
        answers = await asyncio.gather(*(admin.list_consumer_group_offsets(g) for g in groups))
        lags = {}
        for group, offsets in zip(groups, answers, strict=True):
            committed = {
                (tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0
            }
            topics = {t for t, _ in committed}
            lags[group.removeprefix(GROUP_PREFIX)] = group_lag(
                committed, {tp: end for tp, end in ends.items() if tp[0] in topics}
            )
        return lags

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Monitor]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await admin.start()
        await consumer.start()
        self.started = time.monotonic()

        async def sample() -> None:
            while True:
                began = time.monotonic()
                try:
                    lags = await self._lags(admin, consumer)
                except Exception as exc:  # a missed sample is a gap in the plot, not a failed bench
                    lags = {"error": repr(exc)}  # type: ignore[dict-item]
                self.samples.append(
                    {
                        "t": round(began - self.started, 3),
                        "phase": self.phase,
                        "completed": self.completed(),
                        "in_flight": self.in_flight(),
                        "lag": lags,
                        "cpu_s": self.cpu(),
                        "rss": self._memory(),
                    }
                )
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))

        task = asyncio.create_task(sample())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.final_rss = self._memory()
            await consumer.stop()
            await admin.close()
