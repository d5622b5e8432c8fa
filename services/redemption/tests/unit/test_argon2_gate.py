"""Argon2 work runs on threads, but never more at once than the configured number per process."""

from __future__ import annotations

import asyncio
import threading
import time

from services.redemption.offers.pins import run_argon2


class _Probe:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def work(self) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return "done"


async def test_no_more_argon2_computations_run_at_once_than_the_configured_concurrency() -> None:
    probe = _Probe()

    results = await asyncio.gather(*(run_argon2(probe.work, concurrency=2) for _ in range(8)))

    assert results == ["done"] * 8
    assert probe.most == 2


async def test_a_cancelled_caller_keeps_its_argon2_place_until_its_computation_ends() -> None:
    release = threading.Event()
    started = threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(5)

    probe = _Probe()
    first = asyncio.create_task(run_argon2(blocking, concurrency=1))
    await asyncio.to_thread(started.wait, 5)
    first.cancel()
    second = asyncio.create_task(run_argon2(probe.work, concurrency=1))
    await asyncio.sleep(0.2)

    assert probe.most == 0  # still waiting: the cancelled caller's thread is running
    release.set()
    assert await second == "done"
