"""A service's context (what its routes, handlers and jobs share) whose database pool is bound when the
service starts: nothing connects while `build_spec` composes the service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from .service import ServiceRuntime


@dataclass(kw_only=True)
class PooledContext:
    pool: asyncpg.Pool | None = None

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError(f"{type(self).__name__}: the service has not started, no database pool yet")
        return self.pool

    async def bind_pool(self, runtime: ServiceRuntime) -> None:
        """An `on_startup` hook: the runtime's pool, once it is connected and migrated."""
        self.pool = runtime.pool
