"""HTTP in: the member directory. Ops and support read and correct entries, HR systems and ops import a
CSV, and members choose their channel and the notifications they want. Every change is audited with the
fields it changed and who changed them."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Annotated, Any, Final

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.http import body_limit
from chassis.inputs import Identifier
from chassis.logging import redact_text
from chassis.problems import Problem
from chassis.uploads import spooled_csv
from contracts.members import EmploymentStatus, NotificationKind
from contracts.values import Channel, Email, Locale, Name, Phone

from . import importing, repository
from .directory import apply_change
from .domain import NulInEntry

MAX_IMPORT_BYTES: Final = 16 * 2**20
"""A directory file of about 100,000 members."""
IMPORT_BATCH: Final = 500
"""Rows applied per transaction: an import holds no lock on the directory for long."""
MAX_REPORTED_ERRORS: Final = 1000

STAFF = (Role.ADMIN, Role.OPS, Role.SUPPORT_AGENT)
Editor = Annotated[Principal, Depends(require_roles(*STAFF))]
Importer = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPS, Role.HRIS))]
Reader = Annotated[Principal, Depends(require_roles(*STAFF, Role.MEMBER))]

router = APIRouter(prefix="/v1/members", tags=["members"])
_BINARY: Final = {"type": "string", "format": "binary"}


class MemberEntry(BaseModel):
    member_id: str
    name: str | None
    email: str | None = Field(description="masked for support agents")
    phone: str | None = Field(description="masked for support agents")
    locale: str | None
    preferred_channel: Channel | None
    opted_out: list[NotificationKind]
    employment_status: EmploymentStatus | None
    listed: bool = Field(description="false: known only from the contacts of earlier orders")
    listed_by: str | None = Field(
        description="`hris`, `import` or `correction`: the source of the last change"
    )
    updated_at: datetime


class MemberChanged(MemberEntry):
    changed: list[str] = Field(description="the fields this request changed (empty: nothing to change)")


class MemberCorrection(BaseModel):
    """Fields to set; a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    locale: Locale | None = None
    preferred_channel: Channel | None = None
    opted_out: list[NotificationKind] | None = Field(default=None, max_length=20)
    employment_status: EmploymentStatus | None = None


class MemberPreferences(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferred_channel: Channel | None = None
    opted_out: list[NotificationKind] | None = Field(default=None, max_length=20)


class RowProblem(BaseModel):
    row: int
    field: str
    code: str
    message: str


class ImportReport(BaseModel):
    dry_run: bool
    rows: int
    valid: int
    rejected: int
    changed: int = Field(description="entries created or changed (0 in a dry run)")
    unchanged: int
    errors: list[RowProblem] = Field(description=f"by row and field; the first {MAX_REPORTED_ERRORS}")
    errors_truncated: bool


def _entry(row: asyncpg.Record, principal: Principal) -> dict[str, Any]:
    entry = {k: row[k] for k in MemberEntry.model_fields}
    entry["opted_out"] = list(row["opted_out"] or [])
    if not principal.has_any_role((Role.ADMIN, Role.OPS)) and principal.sub != row["member_id"]:
        for field in ("email", "phone"):
            entry[field] = redact_text(row[field]) if row[field] else None
    return entry


def _may_read(principal: Principal, member_id: str) -> None:
    if not principal.has_any_role(STAFF) and principal.sub != member_id:
        raise Problem(403, "forbidden", detail="Members may read and change only their own entry.")


async def _found(conn: Connection, member_id: str) -> asyncpg.Record:
    row = await repository.entry(conn, member_id)
    if row is None:
        raise Problem(404, "member_not_found", detail="No directory entry for this member.")
    return row


async def _change(
    pool: asyncpg.Pool, member_id: str, body: BaseModel, principal: Principal
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        try:
            changed = await apply_change(
                conn,
                member_id,
                body.model_dump(exclude_unset=True),
                actor=principal.actor,
                source="correction",
            )
        except NulInEntry as exc:
            raise Problem(
                422,
                "validation_failed",
                detail=f"Invalid request: body.{exc.field}",
                errors=[{"field": f"body.{exc.field}", "code": "nul_byte", "message": str(exc)}],
            ) from None
        row = await _found(conn, member_id)
    return {**_entry(row, principal), "changed": changed}


@router.get("/{member_id}", response_model=MemberEntry, summary="A member's directory entry")
async def get_member(pool: DbPool, member_id: Identifier, principal: Reader) -> dict[str, Any]:
    _may_read(principal, member_id)
    async with pool.acquire() as conn:
        return _entry(await _found(conn, member_id), principal)


@router.put(
    "/{member_id}",
    response_model=MemberChanged,
    summary="Create or correct a member's directory entry (fields left out keep their value)",
)
async def correct_member(
    pool: DbPool, member_id: Identifier, body: MemberCorrection, principal: Editor
) -> dict[str, Any]:
    return await _change(pool, member_id, body, principal)


@router.put(
    "/{member_id}/preferences",
    response_model=MemberChanged,
    summary="A member's preferred channel and the notification kinds they opt out of",
)
async def set_preferences(
    pool: DbPool, member_id: Identifier, body: MemberPreferences, principal: Reader
) -> dict[str, Any]:
    _may_read(principal, member_id)
    async with pool.acquire() as conn:
        await _found(conn, member_id)
    return await _change(pool, member_id, body, principal)


@router.post(
    "/import",
    response_model=ImportReport,
    summary="Import directory entries from CSV (multipart field `file` or a text/csv body)",
    responses={
        413: {"description": "Upload too large"},
        415: {"description": "Not CSV"},
        422: {"description": "Unreadable file (encoding, header, quoting)"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "CSV with a header of `member.upserted` field names; `member_id` required; "
            f"`opted_out` separated by `{importing.OPT_OUT_SEPARATOR}`. Rows are numbered from 1.",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
    dependencies=[Depends(body_limit(MAX_IMPORT_BYTES))],
)
async def import_members(
    request: Request,
    pool: DbPool,
    principal: Importer,
    dry_run: bool = Query(False, description="check every row, change nothing"),
) -> dict[str, Any]:
    """Two passes over the spooled file: the first checks it all (an unreadable file changes nothing),
    the second applies the valid rows, a few hundred per transaction."""
    actor = principal.actor
    report: dict[str, Any] = {"dry_run": dry_run, "rows": 0, "valid": 0, "changed": 0, "unchanged": 0}
    errors: list[dict[str, Any]] = []
    # The whole body is spooled before a connection is taken.
    with await spooled_csv(request, MAX_IMPORT_BYTES) as spooled:
        try:
            for item in importing.rows(spooled):
                report["rows"] += 1
                report["valid"] += item.member is not None
                errors.extend(vars(e) for e in item.errors)
        except importing.ImportFileError as exc:
            raise Problem(
                422,
                exc.code,
                detail=exc.message,
                errors=[{"field": "file", "code": exc.code, "message": exc.message}],
            ) from None
        if not dry_run:
            spooled.seek(0)
            valid = (item.member for item in importing.rows(spooled) if item.member is not None)
            while batch := list(itertools.islice(valid, IMPORT_BATCH)):
                async with pool.acquire() as conn, conn.transaction():
                    for member in batch:
                        changed = await apply_change(
                            conn,
                            member.member_id,
                            member.model_dump(exclude={"member_id", "changed_at"}),
                            actor=actor,
                            source="import",
                        )
                        report["changed" if changed else "unchanged"] += 1
    return {
        **report,
        "rejected": report["rows"] - report["valid"],
        "errors": errors[:MAX_REPORTED_ERRORS],
        "errors_truncated": len(errors) > MAX_REPORTED_ERRORS,
    }
