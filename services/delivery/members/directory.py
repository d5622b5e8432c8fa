"""Changing a directory entry: lock → decide → save, and an audit entry naming the fields changed and
who changed them (never their values). One function for HR events, imports and corrections."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chassis.audit import append_audit
from chassis.db import Connection

from . import repository
from .domain import changed_fields, is_stale, normalised

AUDIT_ACTION = "member.directory_changed"


async def apply_change(
    conn: Connection,
    member_id: str,
    given: Mapping[str, Any],
    *,
    actor: str,
    source: str,
    changed_at: datetime | None = None,
) -> list[str]:
    """Set the fields `given` holds (null or absent fields keep their value); the fields changed.

    `source` is `hris` (member.upserted), `import` (CSV) or `correction` (the API). An HR change older
    than the last one applied changes nothing. Run it inside the caller's transaction."""
    wanted = normalised(given)
    current = await repository.locked_entry(conn, member_id)
    if is_stale(changed_at, current["hris_changed_at"]):
        return []
    changed = changed_fields(dict(current), wanted)
    if not changed and current["listed"]:
        return []
    await repository.save_entry(conn, member_id, wanted, listed_by=source, hris_changed_at=changed_at)
    await append_audit(
        conn,
        actor=actor,
        action=AUDIT_ACTION,
        subject_type="member",
        subject_id=member_id,
        details={"fields": changed, "source": source, "listed_before": current["listed"]},
    )
    return changed
