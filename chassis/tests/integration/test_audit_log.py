"""The audit log against a real Postgres: one linear chain under concurrency, tampering detected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from chassis.audit import GENESIS_HASH, ChainVerification, append_audit, chain_hash, verify_audit_chain
from chassis.db import apply_migrations, create_pool
from chassis.testing import tamper_audit_log
from deploy.testing import ServiceDb


@pytest.fixture
async def pool(service_db: ServiceDb) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(service_db.dsn, schema=service_db.schema, min_size=1, max_size=12)
    await apply_migrations(pool)
    try:
        yield pool
    finally:
        await pool.close()


async def append(pool: asyncpg.Pool, n: int, **overrides: Any) -> None:
    async with pool.acquire() as conn:
        for i in range(n):
            fields = {
                "actor": "admin-1",
                "action": "campaign.created",
                "subject_type": "campaign",
                "subject_id": f"c-{i}",
                "details": {"budget": "1000.00", "n": i},
            }
            await append_audit(conn, **{**fields, **overrides})


async def tamper(service_db: ServiceDb, *statements: str) -> None:
    await tamper_audit_log(service_db.admin_dsn, service_db.schema, *statements)


async def verify(pool: asyncpg.Pool) -> ChainVerification:
    async with pool.acquire() as conn:
        return await verify_audit_chain(conn)


async def test_the_first_entry_links_to_the_genesis_hash_and_each_next_to_its_predecessor(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        first = await append_audit(
            conn, actor="a", action="x", subject_type="member", subject_id="m-1", details={"k": 1}
        )
        second = await append_audit(conn, actor="a", action="y", subject_type="member", subject_id="m-1")

    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert first.hash == chain_hash(GENESIS_HASH, first.hashed_record())
    assert await verify(pool) == ChainVerification(ok=True, entries=2)


async def test_an_empty_log_is_a_valid_chain(pool: asyncpg.Pool) -> None:
    assert await verify(pool) == ChainVerification(ok=True, entries=0)


async def test_concurrent_appenders_build_one_valid_chain(pool: asyncpg.Pool) -> None:
    async def worker(w: int) -> None:
        async with pool.acquire() as conn:
            for i in range(10):
                async with conn.transaction():
                    await append_audit(
                        conn,
                        actor=f"w{w}",
                        action="tick",
                        subject_type="t",
                        subject_id=str(i),
                        details={"i": i},
                    )

    await asyncio.gather(*(worker(w) for w in range(10)))

    assert await verify(pool) == ChainVerification(ok=True, entries=100)
    seqs = [r["seq"] for r in await pool.fetch("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == list(range(1, 101))


async def test_an_audit_row_rolls_back_with_the_change_it_audits(pool: asyncpg.Pool) -> None:
    async def audited_change_that_fails(conn: asyncpg.pool.PoolConnectionProxy) -> None:
        async with conn.transaction():
            await append_audit(conn, actor="a", action="x", subject_type="t", subject_id="1")
            raise RuntimeError("change failed")

    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="change failed"):
            await audited_change_that_fails(conn)
        await append_audit(conn, actor="a", action="y", subject_type="t", subject_id="2")

    assert await pool.fetchval("SELECT array_agg(action) FROM audit_log") == ["y"]
    assert await verify(pool) == ChainVerification(ok=True, entries=1)


async def test_details_survive_storage_exactly_as_hashed(pool: asyncpg.Pool) -> None:
    details = {"amount": 1.10, "big": 10**20, "nested": {"z": [1, "two", None], "a": True}, "text": "ünï ☃"}
    await append(pool, 1, details=details)

    assert (await verify(pool)).ok


async def test_the_service_role_cannot_update_or_delete_audit_rows(pool: asyncpg.Pool) -> None:
    await append(pool, 2)

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("DELETE FROM audit_log WHERE seq = 2")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("TRUNCATE audit_log")
    assert await verify(pool) == ChainVerification(ok=True, entries=2)


async def test_changed_details_are_detected_at_that_entry(pool: asyncpg.Pool, service_db: ServiceDb) -> None:
    await append(pool, 5)

    await tamper(service_db, """UPDATE audit_log SET details = '{"budget": "1.00", "n": 2}' WHERE seq = 3""")

    result = await verify(pool)
    assert result == ChainVerification(
        ok=False, entries=2, first_broken_seq=3, reason="hash does not match the entry's content"
    )


async def test_a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link(
    pool: asyncpg.Pool, service_db: ServiceDb
) -> None:
    await append(pool, 5)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM audit_log WHERE seq = 3")
    assert row is not None
    forged = chain_hash(
        row["prev_hash"],
        {
            "seq": 3,
            "occurred_at": row["occurred_at"].isoformat(timespec="microseconds"),
            "actor": "nobody",
            "action": row["action"],
            "subject_type": row["subject_type"],
            "subject_id": row["subject_id"],
            "details": {"budget": "1000.00", "n": 2},
        },
    )

    await tamper(service_db, f"UPDATE audit_log SET actor = 'nobody', hash = '{forged}' WHERE seq = 3")

    result = await verify(pool)
    assert (result.ok, result.first_broken_seq, result.entries) == (False, 4, 3)
    assert result.reason == "prev_hash does not match the previous entry's hash"


async def test_a_deleted_entry_is_detected_where_it_is_missing(
    pool: asyncpg.Pool, service_db: ServiceDb
) -> None:
    await append(pool, 5)

    await tamper(service_db, "DELETE FROM audit_log WHERE seq = 2")

    assert await verify(pool) == ChainVerification(
        ok=False, entries=1, first_broken_seq=2, reason="entry 2 is missing"
    )


async def test_reordered_entries_are_detected(pool: asyncpg.Pool, service_db: ServiceDb) -> None:
    await append(pool, 5)

    await tamper(
        service_db,
        "UPDATE audit_log SET seq = 1000 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 1000",
    )

    result = await verify(pool)
    assert (result.ok, result.first_broken_seq) == (False, 3)


async def test_appending_continues_the_chain_across_verification_batches(pool: asyncpg.Pool) -> None:
    await append(pool, 1205)

    assert await verify(pool) == ChainVerification(ok=True, entries=1205)
