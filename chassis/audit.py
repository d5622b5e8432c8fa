"""A tamper-evident audit log: append-only rows, each hash-chained to the one before it.

`append_audit` runs inside the caller's transaction, so an audited change and its audit row commit
(or roll back) together. Appenders serialise on a transaction-scoped advisory lock, which makes the
chain one line in commit order. `verify_audit_chain` recomputes every hash and names the first entry
where the chain breaks: an edited, removed or reordered row cannot go unnoticed. Removing entries from
the very end leaves a shorter valid chain; compare the head hash with one recorded elsewhere to catch
that.

`chain_hash` is the hashing rule on its own, for chains kept in other tables (e.g. per member).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import asyncpg

from chassis.db import Connection

GENESIS_HASH: Final = "0" * 64
# The two-key advisory lock space is separate from the one-key space other locks use; the second
# key is the audit table's own oid, so each schema's log has its own lock.
_LOCK_NAMESPACE: Final = 0x61756474  # "audt"
_VERIFY_BATCH: Final = 1000
_COLUMNS: Final = (
    "seq, occurred_at, actor, action, subject_type, subject_id, details::text AS details, prev_hash, hash"
)


def _json_default(value: Any) -> Any:
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no whitespace, UTF-8 as is; UUIDs, decimals and dates as text."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of `record` together with the previous entry's hash."""
    if "prev_hash" in record:
        raise ValueError("record must not carry its own prev_hash; it is passed separately")
    return hashlib.sha256(canonical_json({**record, "prev_hash": prev_hash}).encode()).hexdigest()


class ChainedEntry:
    """A link of a hash chain (a dataclass with these fields and its own): its hash covers every field
    but the chain's own, `prev_hash` (which goes in apart) and `hash`."""

    seq: int
    occurred_at: datetime
    prev_hash: str
    hash: str

    def hashed_record(self) -> dict[str, Any]:
        record = {name: value for name, value in vars(self).items() if name not in ("prev_hash", "hash")}
        return {**record, "occurred_at": self.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")}

    def computed_hash(self) -> str:
        return chain_hash(self.prev_hash, self.hashed_record())


@dataclass(frozen=True)
class AuditEntry(ChainedEntry):
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainVerification:
    ok: bool
    entries: int  # entries verified intact, from the first up to the break (all of them when ok)
    first_broken_seq: int | None = None
    reason: str | None = None


async def verify_chain(
    entries_from: Callable[[int, int], Awaitable[Sequence[ChainedEntry]]],
) -> tuple[ChainVerification, str]:
    """Walk a chain in seq order and recompute every link, a page at a time (`entries_from(seq,
    limit)`: up to `limit` entries from `seq` on): its verification and the hash it ends on as far
    as it is intact."""
    expected_seq, prev_hash, verified = 1, GENESIS_HASH, 0
    while True:
        page = await entries_from(expected_seq, _VERIFY_BATCH)
        for entry in page:
            if entry.seq != expected_seq:
                broken = ChainVerification(False, verified, expected_seq, f"entry {expected_seq} is missing")
                return broken, prev_hash
            if entry.prev_hash != prev_hash:
                reason = "prev_hash does not match the previous entry's hash"
                return ChainVerification(False, verified, entry.seq, reason), prev_hash
            if entry.computed_hash() != entry.hash:
                reason = "hash does not match the entry's content"
                return ChainVerification(False, verified, entry.seq, reason), prev_hash
            expected_seq, prev_hash, verified = expected_seq + 1, entry.hash, verified + 1
        if len(page) < _VERIFY_BATCH:
            return ChainVerification(True, verified), prev_hash


async def append_audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to this schema's audit log and return it.

    Call it with the connection of the transaction that makes the audited change. Without an open
    transaction it opens its own (the lock needs one). Use READ COMMITTED, Postgres' default: under a
    snapshot taken before the lock the tail looks stale and the insert fails on the duplicate seq.
    """
    if conn.is_in_transaction():
        return await _append(conn, actor, action, subject_type, subject_id, details or {})
    async with conn.transaction():
        return await _append(conn, actor, action, subject_type, subject_id, details or {})


async def _append(
    conn: Connection,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details: Mapping[str, Any],
) -> AuditEntry:
    await conn.execute("SELECT pg_advisory_xact_lock($1, 'audit_log'::regclass::oid::int4)", _LOCK_NAMESPACE)
    # Details go through jsonb before hashing, so the hash covers exactly what is stored and what
    # verification will read back (jsonb normalises numbers and key order).
    head = await conn.fetchrow(
        """
        SELECT last.seq, last.hash, clock_timestamp() AS now, $1::text::jsonb::text AS details
        FROM (SELECT 1) AS one
        LEFT JOIN LATERAL (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS last ON true
        """,
        canonical_json(details),
    )
    assert head is not None
    entry = AuditEntry(
        seq=(head["seq"] or 0) + 1,
        occurred_at=head["now"],
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=json.loads(head["details"]),
        prev_hash=head["hash"] or GENESIS_HASH,
        hash="",
    )
    entry = replace(entry, hash=entry.computed_hash())
    await conn.execute(
        """
        INSERT INTO audit_log
            (seq, occurred_at, actor, action, subject_type, subject_id, details, prev_hash, hash)
        VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9)
        """,
        entry.seq,
        entry.occurred_at,
        entry.actor,
        entry.action,
        entry.subject_type,
        entry.subject_id,
        head["details"],
        entry.prev_hash,
        entry.hash,
    )
    return entry


def _entry(row: asyncpg.Record) -> AuditEntry:
    """The entry a row of `_COLUMNS` holds."""
    return AuditEntry(**{**dict(row), "details": json.loads(row["details"])})


async def verify_audit_chain(conn: Connection) -> ChainVerification:
    """Walk the whole log in seq order and recompute every link."""

    async def entries_from(seq: int, limit: int) -> list[AuditEntry]:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2",  # noqa: S608 -- columns are a module constant; values are bind parameters
            seq,
            limit,
        )
        return [_entry(row) for row in rows]

    verification, _ = await verify_chain(entries_from)
    return verification


@dataclass(frozen=True)
class AuditFilter:
    """Which entries a reader wants; every field left `None` admits all."""

    actor: str | None = None
    action: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    occurred_from: datetime | None = None  # inclusive
    occurred_to: datetime | None = None  # exclusive


async def list_audit(conn: Connection, flt: AuditFilter, *, after_seq: int, limit: int) -> list[AuditEntry]:
    """Up to `limit` entries matching `flt` with a seq past `after_seq`, in chain (seq) order."""
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM audit_log
        WHERE seq > $1
          AND ($2::text IS NULL OR actor = $2)
          AND ($3::text IS NULL OR action = $3)
          AND ($4::text IS NULL OR subject_type = $4)
          AND ($5::text IS NULL OR subject_id = $5)
          AND ($6::timestamptz IS NULL OR occurred_at >= $6)
          AND ($7::timestamptz IS NULL OR occurred_at < $7)
        ORDER BY seq
        LIMIT $8
        """,  # noqa: S608 -- columns are a module constant; values are bind parameters
        after_seq,
        flt.actor,
        flt.action,
        flt.subject_type,
        flt.subject_id,
        flt.occurred_from,
        flt.occurred_to,
        limit,
    )
    return [_entry(row) for row in rows]
