"""What every HTTP route of the service takes from its request: the runtime's pool and settings, and
the actor named in audits (`<first role>:<subject>`)."""

from __future__ import annotations

import asyncpg
from fastapi import Request

from chassis.problems import Problem

from .settings import DeliverySettings


def request_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool | None = request.app.state.runtime.pool
    if pool is None:
        raise Problem(503, "not_ready", detail="The service is starting.")
    return pool


def request_settings(request: Request) -> DeliverySettings:
    settings = request.app.state.runtime.settings
    assert isinstance(settings, DeliverySettings)
    return settings
