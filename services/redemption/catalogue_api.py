"""What editing, pausing, resuming and ending share for offers and rewards over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body
from pydantic import BaseModel, ConfigDict, Field

from chassis.audit import append_audit
from chassis.db import Connection
from chassis.inputs import Text
from chassis.problems import Problem
from services.redemption.lifecycle import (
    PAST_TENSE,
    CatalogueStatus,
    LifecycleAction,
    LifecycleRefused,
    after,
    check_editable,
)


class LifecycleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(default=None, description="why, kept in the audit log")


OptionalReason = Annotated[LifecycleIn | None, Body()]
"""The body of pause, resume and end: optional, a reason when given."""


def lifecycle_problem(exc: LifecycleRefused) -> Problem:
    """409: the entry's status does not allow the change (ended, or already in the asked state)."""
    return Problem(409, exc.code, detail=str(exc))


def field_problem(field: str, code: str, message: str, status: int = 422) -> Problem:
    return Problem(
        status,
        "validation_failed" if status == 422 else code,
        detail=message,
        errors=[{"field": f"body.{field}", "code": code, "message": message}],
    )


def changed_fields(body: BaseModel) -> dict[str, Any]:
    """The fields the caller sent (null included, to clear one); the rest stay as they are."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise Problem(422, "validation_failed", detail="Nothing to change: send at least one field.")
    return changes


def ensure_editable(status: CatalogueStatus, what: str) -> None:
    try:
        check_editable(status, what)
    except LifecycleRefused as exc:
        raise lifecycle_problem(exc) from None


async def next_status(
    conn: Connection,
    *,
    kind: str,
    entry_id: str,
    current: CatalogueStatus,
    action: LifecycleAction,
    body: LifecycleIn | None,
    actor: str,
) -> CatalogueStatus:
    """The status `action` takes an entry of `kind` (offer, reward) to, audited with who and why; a
    409 problem when its status does not allow it. The caller holds the entry's row lock and writes it."""
    try:
        status = after(current, action, f"{kind} {entry_id}")
    except LifecycleRefused as exc:
        raise lifecycle_problem(exc) from None
    await append_audit(
        conn,
        actor=actor,
        action=f"{kind}.{PAST_TENSE[action]}",
        subject_type=kind,
        subject_id=entry_id,
        details={"from": current.value, "to": status.value, "reason": body.reason if body else None},
    )
    return status
