"""The dashboard's read model fed a whole consumer batch at a time, with the per-event effect.

Each function has exactly the effect of calling its per-event twin in `readmodel` on the events in
turn: the upserts are the same statements, pipelined (`executemany`, in event order, so two events of
one order still apply in turn); the member audit entries are the same entries in the same order,
appended together. Round trips per batch stay constant instead of growing with the events.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime

from chassis.audit import canonical_json
from chassis.db import Connection
from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.envelope import Envelope
from contracts.orders import OrderStateChanged
from contracts.vouchers import AnyVoucherIssued, VoucherStatusChanged

from . import readmodel
from .member_audit import AuditFact, append_member_audit_many
from .repository import readmodel as repo


async def apply_order_states(conn: Connection, events: Sequence[Envelope[OrderStateChanged]]) -> None:
    if not events:
        return
    await repo.save_orders(conn, [readmodel.order_args(e.data, e.occurred_at) for e in events])
    # Facts kept while the member was unknown join the chain right after the order's first event here.
    pending = await repo.take_pending(conn, list({e.data.order_id for e in events}))
    waiting: dict[uuid.UUID, list[AuditFact]] = {}
    for row in pending:
        waiting.setdefault(row["order_id"], []).append(
            AuditFact("", row["actor"], row["action"], row["occurred_at"], json.loads(row["details"]))
        )
    facts: list[AuditFact] = []
    for env in events:
        fact = readmodel.order_fact(env.data, env.occurred_at)
        if fact is not None:
            facts.append(fact)
        for kept in waiting.pop(env.data.order_id, ()):
            facts.append(
                AuditFact(env.data.member_id, kept.actor, kept.action, kept.occurred_at, kept.details)
            )
    await append_member_audit_many(conn, facts)


async def apply_vouchers_issued(conn: Connection, events: Sequence[Envelope[AnyVoucherIssued]]) -> None:
    if not events:
        return
    await repo.save_vouchers(conn, [readmodel.voucher_args(e.data, e.occurred_at) for e in events])
    await repo.save_issued_codes(conn, [readmodel.code_issued_args(e.data, e.occurred_at) for e in events])
    await record_for_orders(conn, [readmodel.voucher_fact(e.data, e.occurred_at) for e in events])


async def apply_code_statuses(conn: Connection, events: Sequence[Envelope[VoucherStatusChanged]]) -> None:
    rows = [
        readmodel.code_status_args(e.data, e.occurred_at) for e in events if readmodel.is_members_code(e.data)
    ]
    if rows:
        await repo.save_code_statuses(conn, rows)


async def apply_deliveries(
    conn: Connection, events: Sequence[Envelope[DeliverySucceeded] | Envelope[DeliveryFailed]]
) -> None:
    if not events:
        return
    await repo.save_deliveries(conn, [readmodel.delivery_args(e.data, e.occurred_at) for e in events])
    await record_for_orders(conn, [readmodel.delivery_fact(e.data, e.occurred_at) for e in events])


async def record_for_orders(conn: Connection, facts: Sequence[readmodel.OrderFact]) -> None:
    """`OrderFact.record` for each fact in turn: to the member's chain, or pending until it is known."""
    members = await repo.members_of_orders(conn, [f.order_id for f in facts])
    known: list[AuditFact] = []
    kept: list[tuple[uuid.UUID, datetime, str, str, str]] = []
    for fact in facts:
        member_id = members.get(fact.order_id)
        if member_id is None:
            kept.append(
                (fact.order_id, fact.occurred_at, fact.actor, fact.action, canonical_json(fact.details))
            )
        else:
            known.append(AuditFact(member_id, fact.actor, fact.action, fact.occurred_at, fact.details))
    if kept:
        await repo.keep_pending(conn, kept)
    await append_member_audit_many(conn, known)
