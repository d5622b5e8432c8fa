"""How the redemption service audits what happens to one subject (an offer, a reward, an export, a
member's PIN or segments, a retention rule): the action is `<subject type>.<what happened>`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chassis.audit import append_audit
from chassis.db import Connection


async def audit(
    conn: Connection,
    by: str,
    subject_type: str,
    subject_id: str,
    what: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append `<subject_type>.<what>` about `subject_id` to the audit log, in the caller's transaction."""
    await append_audit(
        conn,
        actor=by,
        action=f"{subject_type}.{what}",
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
    )
