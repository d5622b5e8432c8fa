"""Fixtures the chassis's integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from chassis.db import apply_migrations, create_pool
from deploy.testing import ServiceDb


@pytest.fixture
async def pool(service_db: ServiceDb) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's own schema with the chassis's tables (outbox, inbox, relay lease)."""
    pool = await create_pool(service_db.dsn, schema=service_db.schema)
    await apply_migrations(pool)
    yield pool
    await pool.close()
