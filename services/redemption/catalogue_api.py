"""What editing, pausing, resuming and ending share for offers and rewards over HTTP."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Body, Depends
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from chassis.audit import append_audit
from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.inputs import Identifier, Text
from chassis.problems import Problem
from services.redemption.deps import pool
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


async def create_entry(
    db: asyncpg.Pool,
    *,
    kind: str,
    entry_id: str,
    insert: Callable[[Connection], Awaitable[bool]],
    by: str,
    details: dict[str, Any],
) -> None:
    """Insert a new entry of `kind` (offer, reward) and audit `<kind>.created` in one transaction;
    409 `<kind>_exists` when its id is taken."""
    async with db.acquire() as conn, conn.transaction():
        if not await insert(conn):
            raise Problem(409, f"{kind}_exists", detail=f"{kind.capitalize()} {entry_id} already exists.")
        await append_audit(
            conn, actor=by, action=f"{kind}.created", subject_type=kind, subject_id=entry_id, details=details
        )


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


StatusChange = Callable[[str, LifecycleAction, LifecycleIn | None, Principal, asyncpg.Pool], Awaitable[Any]]
"""Moves one entry (by id) through `action` for the caller and answers its view."""


def add_lifecycle_routes(
    router: APIRouter,
    *,
    kind: str,
    collection: str,
    managers: tuple[Role, ...],
    response_model: type[BaseModel],
    change: StatusChange,
    descriptions: dict[LifecycleAction, str],
) -> None:
    """`POST /v1/<collection>/{<kind>_id}/pause|resume|end` for the managers' roles, each named
    `<action>_<kind>` (its OpenAPI operation) and with an optional reason as its body."""
    for action in LifecycleAction:
        router.add_api_route(
            f"/v1/{collection}/{{{kind}_id}}/{action.value}",
            _lifecycle_endpoint(action, kind, managers, change),
            methods=["POST"],
            name=f"{action.value}_{kind}",
            description=descriptions.get(action),
            response_model=response_model,
        )


def _lifecycle_endpoint(
    action: LifecycleAction, kind: str, managers: tuple[Role, ...], change: StatusChange
) -> Callable[..., Awaitable[Any]]:
    async def endpoint(
        entry_id: str, principal: Principal, db: asyncpg.Pool, body: LifecycleIn | None = None
    ) -> Any:
        return await change(entry_id, action, body, principal, db)

    # The path parameter keeps its public name (`offer_id`, `reward_id`) through an alias.
    parameter = inspect.Parameter
    setattr(  # noqa: B010 - FastAPI reads the endpoint's parameters from its signature
        endpoint,
        "__signature__",
        inspect.Signature(
            [
                parameter(
                    "entry_id",
                    parameter.POSITIONAL_OR_KEYWORD,
                    annotation=Annotated[Identifier, PathParam(alias=f"{kind}_id")],
                ),
                parameter(
                    "principal",
                    parameter.POSITIONAL_OR_KEYWORD,
                    annotation=Annotated[Principal, Depends(require_roles(*managers))],
                ),
                parameter(
                    "db", parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[asyncpg.Pool, Depends(pool)]
                ),
                parameter("body", parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=OptionalReason),
            ]
        ),
    )
    return endpoint
