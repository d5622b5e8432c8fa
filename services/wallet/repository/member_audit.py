"""The member audit log's statements: each member's head row (the lock that keeps a chain one line)
and the entries (see `services.wallet.member_audit`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chassis.audit import canonical_json
from chassis.db import Connection

if TYPE_CHECKING:
    from ..member_audit import AuditFact, MemberAuditEntry


async def lock_heads(
    conn: Connection, members: Sequence[str], facts: Sequence[AuditFact]
) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """Lock the heads of `members` (in member order, so two writers never wait on each other crosswise)
    and answer each one's (seq, hash), with each fact's details as jsonb will read them back."""
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
        list(members),
        [canonical_json(f.details or {}) for f in facts],
    )
    assert row is not None
    heads = {m: (seq, h) for m, seq, h in zip(row["members"], row["seqs"], row["hashes"], strict=True)}
    return heads, list(row["details"])


async def insert_entries(
    conn: Connection, entries: Sequence[MemberAuditEntry], details: Sequence[str]
) -> None:
    """The entries in one statement, and each member's head moved to its last one."""
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
        list(details),
        [e.prev_hash for e in entries],
        [e.hash for e in entries],
    )


async def entries_after(conn: Connection, member_id: str, after_seq: int, limit: int) -> list[Any]:
    return await conn.fetch(
        "SELECT member_id, seq, occurred_at, actor, action, details::text AS details, prev_hash, hash"
        " FROM member_audit WHERE member_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        member_id,
        after_seq,
        limit,
    )


async def head(conn: Connection, member_id: str) -> Any:
    return await conn.fetchrow("SELECT seq, hash FROM member_audit_heads WHERE member_id = $1", member_id)
