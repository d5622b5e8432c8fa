"""The approvals chassis on a real Postgres: stored requests, one performance per approval whatever the
race, the maker kept out, the outbox and audit rows written with each decision."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from chassis.approvals import Approval, ApprovalAction, Approvals, ApprovalStatus, list_approvals
from chassis.auth import Principal, Role
from chassis.db import Connection
from chassis.problems import Problem

MAKER = Principal(sub="mia", roles=frozenset({Role.OPS, Role.APPROVER}))
CHECKERS = [Principal(sub=f"checker-{n}", roles=frozenset({Role.APPROVER})) for n in range(4)]


@pytest.fixture
async def registry(pool: asyncpg.Pool) -> Approvals:
    await pool.execute("CREATE TABLE performed (approval_id uuid NOT NULL, what text NOT NULL)")

    async def perform(conn: Connection, approval: Approval) -> dict[str, Any]:
        await conn.execute(
            "INSERT INTO performed (approval_id, what) VALUES ($1, $2)",
            approval.approval_id,
            approval.request["what"],
        )
        return {"done": approval.request["what"]}

    return Approvals("order", [ApprovalAction("thing", perform)])


async def ask(pool: asyncpg.Pool, registry: Approvals, what: str) -> Approval:
    async with pool.acquire() as conn, conn.transaction():
        return await registry.request(
            conn,
            kind="thing",
            subject_id=what,
            summary=f"do {what}",
            request={"what": what},
            principal=MAKER,
            maker="ops:mia",
            reason="because",
        )


async def test_racing_approvers_perform_the_action_once(pool: asyncpg.Pool, registry: Approvals) -> None:
    pending = await ask(pool, registry, "once")

    outcomes = await asyncio.gather(
        *(registry.approve(pool, pending.approval_id, checker) for checker in CHECKERS),
        return_exceptions=True,
    )

    approved = [o for o in outcomes if isinstance(o, Approval)]
    refused = [o for o in outcomes if isinstance(o, Problem)]
    assert len(approved) == 1
    assert [(p.status, p.code) for p in refused] == [(409, "approval_already_decided")] * 3
    assert await pool.fetchval("SELECT count(*) FROM performed WHERE what = 'once'") == 1
    assert approved[0].result == {"done": "once"}
    events = await pool.fetch("SELECT topic FROM outbox ORDER BY id")
    assert [e["topic"] for e in events] == ["approval.requested", "approval.decided"]


async def test_the_maker_may_not_decide_and_an_unknown_approval_is_not_found(
    pool: asyncpg.Pool, registry: Approvals
) -> None:
    pending = await ask(pool, registry, "mine")

    with pytest.raises(Problem) as own:
        await registry.approve(pool, pending.approval_id, MAKER)
    with pytest.raises(Problem) as unknown:
        await registry.reject(pool, uuid.uuid4(), CHECKERS[0], reason="who?")

    assert (own.value.status, own.value.code) == (403, "maker_cannot_approve")
    assert unknown.value.status == 404
    assert await pool.fetchval("SELECT count(*) FROM performed") == 0
    async with pool.acquire() as conn:
        still = await list_approvals(conn, status=ApprovalStatus.PENDING, kind="thing", after=None, limit=10)
    assert [a.approval_id for a in still] == [pending.approval_id]


async def test_a_failing_action_leaves_the_approval_pending(pool: asyncpg.Pool) -> None:
    async def refuse(conn: Connection, approval: Approval) -> dict[str, Any]:
        raise Problem(409, "campaign_rule_violated", detail="the budget is now below what is used")

    registry = Approvals("order", [ApprovalAction("thing", refuse)])
    pending = await ask(pool, registry, "later")

    with pytest.raises(Problem):
        await registry.approve(pool, pending.approval_id, CHECKERS[0])

    async with pool.acquire() as conn:
        found = await list_approvals(conn, status=None, kind=None, after=None, limit=10)
    assert [(a.status, a.decided_by) for a in found] == [(ApprovalStatus.PENDING, None)]
    audit = await pool.fetch("SELECT action FROM audit_log ORDER BY seq")
    assert [a["action"] for a in audit] == ["approval.requested"]
