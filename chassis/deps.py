"""FastAPI dependencies every service's routes take from their request, written once.

`pool: DbPool` in a route's signature is the running service's database pool; it comes from the
request, so it adds nothing to the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from .problems import Problem


def db_pool(request: Request) -> asyncpg.Pool:
    """The running service's pool; a request that arrives before it is connected is answered 503."""
    pool: asyncpg.Pool | None = request.app.state.runtime.pool
    if pool is None:
        raise Problem(503, "not_ready", detail="The service is still starting.")
    return pool


DbPool = Annotated[asyncpg.Pool, Depends(db_pool)]
