"""The member audit log: one hash chain per member, built with the chassis' hashing rule.

Every action against a member's account (ledger entries, redemptions, resends, delivery outcomes,
staff changes) is appended in the transaction that learns of it. The member's head row is the lock
that keeps the chain one line; `verify` recomputes every link and names the first broken one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from chassis.audit import ChainedEntry, ChainVerification, verify_chain
from chassis.db import Connection
from chassis.rows import from_row

from .repository import member_audit as repo


@dataclass(frozen=True)
class MemberAuditEntry(ChainedEntry):
    member_id: str
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditFact:
    """One entry to append: what `append_member_audit` takes, for `append_member_audit_many`."""

    member_id: str
    actor: str
    action: str
    occurred_at: datetime
    details: Mapping[str, Any]


async def append_member_audit(
    conn: Connection,
    *,
    member_id: str,
    actor: str,
    action: str,
    occurred_at: datetime,
    details: Mapping[str, Any] | None = None,
) -> MemberAuditEntry:
    """Append one entry to `member_id`'s chain, in the caller's transaction."""
    [entry] = await append_member_audit_many(
        conn, [AuditFact(member_id, actor, action, occurred_at, details or {})]
    )
    return entry


async def append_member_audit_many(conn: Connection, facts: Sequence[AuditFact]) -> list[MemberAuditEntry]:
    """Append `facts` in order, as many `append_member_audit` calls would, in two round trips.

    The heads of every member concerned are locked at once (in member order, so two batches never wait
    on each other crosswise), the links are computed here, then the entries go in with one statement.
    """
    if not facts:
        return []
    if not conn.is_in_transaction():
        raise RuntimeError("a member audit entry shares the transaction of the change it records")
    # One round trip locks the heads of every member concerned and passes the details through jsonb,
    # so each hash covers exactly what verification will read back.
    heads, details = await repo.lock_heads(conn, sorted({f.member_id for f in facts}), facts)
    entries = _linked(facts, heads, details)
    await repo.insert_entries(conn, entries, details)
    return entries


def _linked(
    facts: Sequence[AuditFact], heads: dict[str, tuple[int, str]], details: Sequence[str]
) -> list[MemberAuditEntry]:
    """Each fact as the next link of its member's chain, from the heads (seq, hash) before them."""
    entries: list[MemberAuditEntry] = []
    for fact, fact_details in zip(facts, details, strict=True):
        seq, prev_hash = heads[fact.member_id]
        entry = MemberAuditEntry(
            member_id=fact.member_id,
            seq=seq + 1,
            # Postgres keeps microseconds: hash the instant as it will be read back.
            occurred_at=fact.occurred_at.astimezone(UTC),
            actor=fact.actor,
            action=fact.action,
            details=json.loads(fact_details),
            prev_hash=prev_hash,
            hash="",
        )
        entry = MemberAuditEntry(**{**entry.__dict__, "hash": entry.computed_hash()})
        heads[fact.member_id] = (entry.seq, entry.hash)
        entries.append(entry)
    return entries


def _entry(row: Any) -> MemberAuditEntry:
    return from_row(MemberAuditEntry, row, details=json.loads(row["details"]))


async def list_member_audit(
    conn: Connection, member_id: str, *, after_seq: int = 0, limit: int = 100
) -> list[MemberAuditEntry]:
    return [_entry(r) for r in await repo.entries_after(conn, member_id, after_seq, limit)]


@dataclass(frozen=True)
class MemberChainVerification(ChainVerification):
    """The audit log's verification, with the hash the member's chain ends on."""

    head_hash: str | None = None


async def verify_member_audit(conn: Connection, member_id: str) -> MemberChainVerification:
    """Recompute every link of the member's chain, then check it ends where the head says."""

    async def entries_from(seq: int, limit: int) -> list[MemberAuditEntry]:
        return [_entry(r) for r in await repo.entries_after(conn, member_id, seq - 1, limit)]

    walked, last_hash = await verify_chain(entries_from)
    if not walked.ok:
        return MemberChainVerification(**asdict(walked))
    verified = walked.entries
    head = await repo.head(conn, member_id)
    if head is not None and (head["seq"], head["hash"]) != (verified, last_hash):
        return MemberChainVerification(
            False, verified, verified + 1, "the chain ends before its recorded head", head["hash"]
        )
    return MemberChainVerification(True, verified, head_hash=last_hash if verified else None)
