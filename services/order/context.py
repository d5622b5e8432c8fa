"""What the HTTP routes and hooks of one order service process share, filled in at startup."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .batches import BatchWorker
from .settings import OrderSettings


@dataclass
class OrderContext:
    settings: OrderSettings
    pool: asyncpg.Pool | None = None
    worker: BatchWorker | None = None

    def require_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the order service has not started")
        return self.pool

    def wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()
