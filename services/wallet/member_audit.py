"""The member audit log: one hash chain per member, built with the chassis' hashing rule.

Every action against a member's account (ledger entries, redemptions, resends, delivery outcomes,
staff changes) is appended in the transaction that learns of it. The member's head row is the lock
that keeps the chain one line; `verify` recomputes every link and names the first broken one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chassis.audit import GENESIS_HASH, canonical_json, chain_hash
from chassis.db import Connection

_VERIFY_BATCH = 1000


@dataclass(frozen=True)
class MemberAuditEntry:
    member_id: str
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def hashed_record(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "seq": self.seq,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": self.actor,
            "action": self.action,
            "details": self.details,
        }

    def computed_hash(self) -> str:
        return chain_hash(self.prev_hash, self.hashed_record())

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat(),
            "actor": self.actor,
            "action": self.action,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


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
    if not conn.is_in_transaction():
        raise RuntimeError("a member audit entry shares the transaction of the change it records")
    # One round trip: the upsert locks the member's head row (appenders of one member queue here) and
    # passes the details through jsonb, so the hash covers exactly what verification will read back.
    head = await conn.fetchrow(
        """
        INSERT INTO member_audit_heads AS head (member_id) VALUES ($1)
        ON CONFLICT (member_id) DO UPDATE SET seq = head.seq
        RETURNING head.seq, head.hash, $2::text::jsonb::text AS details
        """,
        member_id,
        canonical_json(details or {}),
    )
    assert head is not None
    # Postgres keeps microseconds: hash the instant as it will be read back.
    at = occurred_at.astimezone(UTC)
    entry = MemberAuditEntry(
        member_id=member_id,
        seq=head["seq"] + 1,
        occurred_at=at,
        actor=actor,
        action=action,
        details=json.loads(head["details"]),
        prev_hash=head["hash"],
        hash="",
    )
    entry = MemberAuditEntry(**{**entry.__dict__, "hash": entry.computed_hash()})
    await conn.execute(
        """
        WITH appended AS (
            INSERT INTO member_audit (member_id, seq, occurred_at, actor, action, details, prev_hash, hash)
            VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8)
            RETURNING member_id, seq, hash
        )
        UPDATE member_audit_heads SET seq = appended.seq, hash = appended.hash
          FROM appended WHERE member_audit_heads.member_id = appended.member_id
        """,
        member_id,
        entry.seq,
        entry.occurred_at,
        actor,
        action,
        head["details"],
        entry.prev_hash,
        entry.hash,
    )
    return entry


@dataclass(frozen=True)
class AuditFact:
    """One entry to append: what `append_member_audit` takes, for `append_member_audit_many`."""

    member_id: str
    actor: str
    action: str
    occurred_at: datetime
    details: Mapping[str, Any]


async def append_member_audit_many(conn: Connection, facts: Sequence[AuditFact]) -> list[MemberAuditEntry]:
    """Append `facts` in order, as many `append_member_audit` calls would, in two round trips.

    The heads of every member concerned are locked at once (in member order, so two batches never wait
    on each other crosswise), the links are computed here, then the entries go in with one statement.
    """
    if not facts:
        return []
    if not conn.is_in_transaction():
        raise RuntimeError("a member audit entry shares the transaction of the change it records")
    members = sorted({f.member_id for f in facts})
    row = await conn.fetchrow(
        """
        WITH heads AS (
            INSERT INTO member_audit_heads AS head (member_id)
            SELECT m FROM unnest($1::text[]) AS m ORDER BY m
            ON CONFLICT (member_id) DO UPDATE SET seq = head.seq
            RETURNING head.member_id, head.seq, head.hash
        )
        SELECT (SELECT array_agg(member_id) FROM heads) AS members,
               (SELECT array_agg(seq) FROM heads) AS seqs,
               (SELECT array_agg(hash) FROM heads) AS hashes,
               (SELECT array_agg(d::jsonb::text ORDER BY n)
                  FROM unnest($2::text[]) WITH ORDINALITY AS t(d, n)) AS details
        """,
        members,
        [canonical_json(f.details or {}) for f in facts],
    )
    assert row is not None
    heads: dict[str, tuple[int, str]] = {
        m: (seq, h) for m, seq, h in zip(row["members"], row["seqs"], row["hashes"], strict=True)
    }
    entries: list[MemberAuditEntry] = []
    for fact, details in zip(facts, row["details"], strict=True):
        seq, prev_hash = heads[fact.member_id]
        entry = MemberAuditEntry(
            member_id=fact.member_id,
            seq=seq + 1,
            occurred_at=fact.occurred_at.astimezone(UTC),
            actor=fact.actor,
            action=fact.action,
            details=json.loads(details),
            prev_hash=prev_hash,
            hash="",
        )
        entry = MemberAuditEntry(**{**entry.__dict__, "hash": entry.computed_hash()})
        heads[fact.member_id] = (entry.seq, entry.hash)
        entries.append(entry)
    await conn.execute(
        """
        WITH appended AS (
            INSERT INTO member_audit (member_id, seq, occurred_at, actor, action, details, prev_hash, hash)
            SELECT m, s, o, a, c, d::jsonb, p, h
              FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
                          $7::text[], $8::text[]) AS e(m, s, o, a, c, d, p, h)
            RETURNING member_id, seq, hash
        )
        UPDATE member_audit_heads SET seq = last.seq, hash = last.hash
          FROM (SELECT DISTINCT ON (member_id) member_id, seq, hash
                  FROM appended ORDER BY member_id, seq DESC) AS last
         WHERE member_audit_heads.member_id = last.member_id
        """,
        [e.member_id for e in entries],
        [e.seq for e in entries],
        [e.occurred_at for e in entries],
        [e.actor for e in entries],
        [e.action for e in entries],
        list(row["details"]),
        [e.prev_hash for e in entries],
        [e.hash for e in entries],
    )
    return entries


def _entry(row: Any) -> MemberAuditEntry:
    return MemberAuditEntry(
        member_id=row["member_id"],
        seq=row["seq"],
        occurred_at=row["occurred_at"],
        actor=row["actor"],
        action=row["action"],
        details=json.loads(row["details"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


_SELECT = """
    SELECT member_id, seq, occurred_at, actor, action, details::text AS details, prev_hash, hash
      FROM member_audit
"""


async def list_member_audit(
    conn: Connection, member_id: str, *, after_seq: int = 0, limit: int = 100
) -> list[MemberAuditEntry]:
    rows = await conn.fetch(
        _SELECT + " WHERE member_id = $1 AND seq > $2 ORDER BY seq LIMIT $3", member_id, after_seq, limit
    )
    return [_entry(r) for r in rows]


@dataclass(frozen=True)
class MemberChainVerification:
    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None
    head_hash: str | None = None


async def verify_member_audit(conn: Connection, member_id: str) -> MemberChainVerification:
    """Recompute every link of the member's chain, then check it ends where the head says."""
    expected_seq, prev_hash, verified = 1, GENESIS_HASH, 0
    while True:
        rows = await conn.fetch(
            _SELECT + " WHERE member_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
            member_id,
            expected_seq,
            _VERIFY_BATCH,
        )
        for entry in map(_entry, rows):
            if entry.seq != expected_seq:
                return MemberChainVerification(
                    False, verified, expected_seq, f"entry {expected_seq} is missing"
                )
            if entry.prev_hash != prev_hash:
                return MemberChainVerification(
                    False, verified, entry.seq, "prev_hash does not match the previous entry's hash"
                )
            if entry.computed_hash() != entry.hash:
                return MemberChainVerification(
                    False, verified, entry.seq, "hash does not match the entry's content"
                )
            expected_seq, prev_hash, verified = expected_seq + 1, entry.hash, verified + 1
        if len(rows) < _VERIFY_BATCH:
            break
    head = await conn.fetchrow("SELECT seq, hash FROM member_audit_heads WHERE member_id = $1", member_id)
    if head is not None and (head["seq"], head["hash"]) != (verified, prev_hash):
        return MemberChainVerification(
            False, verified, verified + 1, "the chain ends before its recorded head", head["hash"]
        )
    return MemberChainVerification(True, verified, head_hash=prev_hash if verified else None)
