"""What editing, pausing, resuming and ending share for offers and rewards over HTTP."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chassis.inputs import Text
from chassis.problems import Problem
from services.redemption.lifecycle import LifecycleRefused


class LifecycleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(default=None, description="why, kept in the audit log")


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
