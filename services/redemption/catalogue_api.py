"""What editing, pausing, resuming and ending share for offers and rewards over HTTP."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Protocol, TypeVar

import asyncpg
from fastapi import APIRouter, Body, Depends
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.inputs import Identifier, Text
from chassis.problems import Problem
from services.redemption.audit import audit
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


def refuse_cleared(changes: dict[str, Any], required: tuple[str, ...]) -> None:
    """422 when `changes` clears (sends `null` for) a field an entry cannot do without."""
    for name in required:
        if name in changes and changes[name] is None:
            raise field_problem(name, "null", f"{name} cannot be cleared")


async def create_entry(
    pool: asyncpg.Pool,
    *,
    kind: str,
    entry_id: str,
    insert: Callable[[Connection], Awaitable[bool]],
    by: str,
    details: dict[str, Any],
) -> None:
    """Insert a new entry of `kind` (offer, reward) and audit `<kind>.created` in one transaction;
    409 `<kind>_exists` when its id is taken."""
    async with pool.acquire() as conn, conn.transaction():
        if not await insert(conn):
            raise Problem(409, f"{kind}_exists", detail=f"{kind.capitalize()} {entry_id} already exists.")
        await audit(conn, by, kind, entry_id, "created", details)


class CatalogueEntry(Protocol):
    @property
    def status(self) -> CatalogueStatus: ...


EntryT = TypeVar("EntryT", bound=CatalogueEntry)


@dataclass(frozen=True)
class Catalogue(Generic[EntryT]):
    """How entries of one kind (offer, reward) are locked, saved and shown, for editing them and moving
    them through their lifecycle the same way. A 409 problem answers a change their status refuses."""

    kind: str
    lock: Callable[[Connection, Principal, str], Awaitable[EntryT]]
    """The entry by id under its row lock, when the caller may see it; a 404 problem otherwise."""
    with_status: Callable[[EntryT, CatalogueStatus], EntryT]
    edited: Callable[[EntryT, dict[str, Any]], EntryT]
    """The entry with the changes a caller sent; a 422 or 409 problem when they do not fit it."""
    save: Callable[[Connection, EntryT], Awaitable[None]]
    view: Callable[[EntryT], dict[str, Any]]
    terms: Callable[[EntryT], dict[str, Any]]
    """What the audit log keeps of the entry before and after an edit."""

    async def edit(
        self,
        pool: asyncpg.Pool,
        entry_id: str,
        principal: Principal,
        body: BaseModel,
    ) -> dict[str, Any]:
        """Apply the fields `body` sends to an entry that has not ended, audited `<kind>.updated` with
        its `terms` before and after, and answer its view."""
        changes = changed_fields(body)
        async with pool.acquire() as conn, conn.transaction():
            entry = await self.lock(conn, principal, entry_id)
            try:
                check_editable(entry.status, f"{self.kind} {entry_id}")
            except LifecycleRefused as exc:
                raise lifecycle_problem(exc) from None
            changed = self.edited(entry, changes)
            await self.save(conn, changed)
            details = {"changed": sorted(changes), "before": self.terms(entry), "after": self.terms(changed)}
            await audit(conn, principal.actor, self.kind, entry_id, "updated", details)
        return self.view(changed)

    async def change_status(
        self,
        entry_id: str,
        action: LifecycleAction,
        body: LifecycleIn | None,
        principal: Principal,
        pool: asyncpg.Pool,
    ) -> dict[str, Any]:
        """A `StatusChange` for this kind of entry: its new status audited with who and why, then saved."""
        async with pool.acquire() as conn, conn.transaction():
            entry = await self.lock(conn, principal, entry_id)
            try:
                status = after(entry.status, action, f"{self.kind} {entry_id}")
            except LifecycleRefused as exc:
                raise lifecycle_problem(exc) from None
            details = {
                "from": entry.status.value,
                "to": status.value,
                "reason": body.reason if body else None,
            }
            await audit(conn, principal.actor, self.kind, entry_id, PAST_TENSE[action], details)
            changed = self.with_status(entry, status)
            await self.save(conn, changed)
        return self.view(changed)


def add_catalogue_routes(
    router: APIRouter,
    catalogue: Catalogue[Any],
    *,
    collection: str,
    managers: tuple[Role, ...],
    response_model: type[BaseModel],
    changes: type[BaseModel],
    descriptions: dict[str, str],
) -> None:
    """For the managers' roles: `PATCH /v1/<collection>/{<kind>_id}` named `edit_<kind>` (its OpenAPI
    operation), with the fields to change (`changes`) as its body, and `POST .../pause|resume|end` named
    `<action>_<kind>`, with an optional reason as theirs. `descriptions` by route name without the kind."""
    kind = catalogue.kind
    entry_path = f"/v1/{collection}/{{{kind}_id}}"

    async def edit(entry_id: str, principal: Principal, pool: asyncpg.Pool, body: BaseModel) -> Any:
        return await catalogue.edit(pool, entry_id, principal, body)

    routes: list[tuple[str, str, Callable[..., Awaitable[Any]], inspect.Parameter]] = [
        ("edit", entry_path, edit, _body(changes))
    ]
    for action in LifecycleAction:
        routes.append(
            (action.value, f"{entry_path}/{action.value}", _lifecycle_endpoint(catalogue, action), _REASON)
        )
    for name, path, endpoint, body in routes:
        _sign(endpoint, kind, managers, body)
        router.add_api_route(
            path,
            endpoint,
            methods=["PATCH" if name == "edit" else "POST"],
            name=f"{name}_{kind}",
            description=descriptions.get(name),
            response_model=response_model,
        )


def _lifecycle_endpoint(catalogue: Catalogue[Any], action: LifecycleAction) -> Callable[..., Awaitable[Any]]:
    async def endpoint(
        entry_id: str, principal: Principal, pool: asyncpg.Pool, body: LifecycleIn | None = None
    ) -> Any:
        return await catalogue.change_status(entry_id, action, body, principal, pool)

    return endpoint


def _body(model: type[BaseModel]) -> inspect.Parameter:
    return inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=model)


_REASON = inspect.Parameter(
    "body", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=OptionalReason
)


def _sign(
    endpoint: Callable[..., Awaitable[Any]], kind: str, managers: tuple[Role, ...], body: inspect.Parameter
) -> None:
    """Give `endpoint(entry_id, principal, pool, body)` the signature FastAPI reads its parameters from: the
    path parameter keeps its public name (`offer_id`, `reward_id`) through an alias."""
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
                parameter("pool", parameter.POSITIONAL_OR_KEYWORD, annotation=DbPool),
                body,
            ]
        ),
    )
