"""The ledger against the real Postgres: concurrency, append-only rules, reversals, FIFO expiry."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from chassis.db import create_pool
from contracts.wallet import EntryType
from services.wallet.domain import (
    AlreadyReversed,
    InsufficientPoints,
    Posting,
    ReversalExceedsEntry,
    UnknownMember,
)
from services.wallet.member_audit import verify_member_audit
from services.wallet.tests.support import credit, debit, post, posting


async def balance_of(pool: asyncpg.Pool, member: str) -> int:
    return await pool.fetchval("SELECT balance FROM wallets WHERE member_id = $1", member)


async def test_concurrent_debits_of_one_member_on_two_replicas_never_overdraw(pool, ledger, service_db):
    member = f"m-{uuid.uuid4().hex[:8]}"
    await post(pool, ledger, credit(member, 1000))
    # A second pool stands for a second replica: separate connections, same database.
    replica = await create_pool(service_db.dsn, schema=service_db.schema, min_size=1, max_size=20)
    try:
        pools = [pool, replica]

        async def attempt(i: int) -> bool:
            try:
                await post(pools[i % 2], ledger, debit(member, 70))
                return True
            except InsufficientPoints:
                return False

        outcomes = await asyncio.gather(*(attempt(i) for i in range(40)))
    finally:
        await replica.close()

    assert outcomes.count(True) == 14  # 14 * 70 = 980 of the 1000 points; every later one is refused
    assert await balance_of(pool, member) == 20
    entries = await pool.fetch(
        "SELECT member_seq, balance_after FROM ledger_entries WHERE member_id = $1 ORDER BY member_seq",
        member,
    )
    assert [e["member_seq"] for e in entries] == list(range(1, 16))
    assert min(e["balance_after"] for e in entries) == 20
    remaining = await pool.fetchval("SELECT sum(remaining) FROM lots WHERE member_id = $1", member)
    assert remaining == 20


async def test_the_same_idempotency_key_posted_at_once_is_applied_once(pool, ledger):
    member = f"m-{uuid.uuid4().hex[:8]}"
    posting = credit(member, 50, key=f"same-{uuid.uuid4()}")

    results = await asyncio.gather(*(post(pool, ledger, posting) for _ in range(10)))

    assert sum(not r.replayed for r in results) == 1
    assert len({r.entry.entry_id for r in results}) == 1
    assert await balance_of(pool, member) == 50


async def test_a_debit_for_a_member_without_a_wallet_is_refused(pool, ledger):
    with pytest.raises(UnknownMember):
        await post(pool, ledger, debit(f"nobody-{uuid.uuid4().hex[:6]}", 1))


async def test_ledger_entries_can_be_neither_updated_nor_deleted(pool, ledger):
    member = f"m-{uuid.uuid4().hex[:8]}"
    await post(pool, ledger, credit(member, 10))

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("UPDATE ledger_entries SET amount = 1000 WHERE member_id = $1", member)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("DELETE FROM ledger_entries WHERE member_id = $1", member)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("TRUNCATE ledger_entries CASCADE")


async def test_the_database_refuses_an_entry_that_does_not_continue_the_balance(pool, ledger):
    member = f"m-{uuid.uuid4().hex[:8]}"
    await post(pool, ledger, credit(member, 10))

    with pytest.raises(asyncpg.CheckViolationError, match="does not continue"):
        await pool.execute(
            "INSERT INTO ledger_entries (entry_id, member_id, member_seq, entry_type, direction, amount,"
            " balance_after, reason_code, actor, idempotency_key, recorded_at)"
            " VALUES ($1, $2, 2, 'programme_rule', 'credit', 5, 999, 'x', 'x', $3, now())",
            uuid.uuid4(),
            member,
            str(uuid.uuid4()),
        )


async def test_a_credit_is_reversed_at_most_once_and_never_by_more_than_it_gave(pool, ledger):
    member = f"m-{uuid.uuid4().hex[:8]}"
    original = (await post(pool, ledger, credit(member, 100))).entry
    await post(pool, ledger, credit(member, 500))

    def reversal(amount: int) -> Posting:
        return posting(
            member,
            EntryType.REVERSAL,
            amount,
            reason_code="correction",
            actor="admin:alice",
            reverses_entry_id=original.entry_id,
        )

    with pytest.raises(ReversalExceedsEntry):
        await post(pool, ledger, reversal(101))
    await post(pool, ledger, reversal(60))
    with pytest.raises(AlreadyReversed):
        await post(pool, ledger, reversal(10))
    # Past the code, the database itself holds both rules.
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(
            "INSERT INTO ledger_entries (entry_id, member_id, member_seq, entry_type, direction, amount,"
            " balance_after, reason_code, actor, idempotency_key, reverses_entry_id, recorded_at)"
            " VALUES ($1, $2, 4, 'reversal', 'debit', 10, 530, 'x', 'x', $3, $4, now())",
            uuid.uuid4(),
            member,
            str(uuid.uuid4()),
            original.entry_id,
        )
    assert await balance_of(pool, member) == 540


async def test_points_expire_oldest_first_when_their_months_are_up(pool, ledger, clock):
    member = f"m-{uuid.uuid4().hex[:8]}"
    await post(pool, ledger, credit(member, 100))  # expires 2027-01-15
    clock.advance(days=60)
    await post(pool, ledger, credit(member, 50))  # expires 2027-03-16
    clock.advance(days=30)
    await post(pool, ledger, debit(member, 120))  # takes all 100 of the first lot and 20 of the second

    clock.advance(days=290)  # 2027-01-20: the first lot is due but empty
    assert await ledger.expire_due(pool) == 0
    clock.advance(days=60)  # 2027-03-21: the rest of the second lot expires
    assert await ledger.expire_due(pool) == 30
    assert await ledger.expire_due(pool) == 0  # a second run finds nothing more

    assert await balance_of(pool, member) == 0
    expiry = await pool.fetchrow(
        "SELECT amount, balance_after, actor FROM ledger_entries"
        " WHERE member_id = $1 AND entry_type = 'expiry'",
        member,
    )
    assert dict(expiry) == {"amount": 30, "balance_after": 0, "actor": "system:wallet-expiry"}
    async with pool.acquire() as conn:
        verification = await verify_member_audit(conn, member)
    assert verification.ok
    assert verification.entries == 4
