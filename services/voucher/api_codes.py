"""HTTP: code generation and import, status, reveal, and the operations on codes."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import IO, Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from chassis.approvals import PENDING_RESPONSE, pending_answer
from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.http import body_limit
from chassis.inputs import Identifier, NoNul, PositiveInt32, Text
from chassis.problems import Problem, ProblemDetails
from contracts.vouchers import CodeStatus

from . import codes, operations, reveal_limits
from .api_common import Ctx, Operator, Reader, in_transaction, invalid, serve_held_orders
from .approvals import ask_for_bulk_recovery
from .crypto import CodeVault
from .csv_import import ParsedFile, parse_codes
from .domain import DEFAULT_ALPHABET, MAX_LENGTH, MIN_LENGTH
from .repository import codes as codes_repository
from .repository import operations as operations_repository
from .views import (
    CodeStatusOut,
    ExtendResult,
    FlagResult,
    GenerateResult,
    ImportReport,
    RecoverResult,
    RevealedCode,
)

Revealer = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.SUPPORT_AGENT, Role.MEMBER))]
MAX_IMPORT_BYTES = 64 * 2**20


class Generate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: PositiveInt32 = Field(
        description="at most ORCHARD_VOUCHER_MAX_CODES_PER_REQUEST (default 1,000,000)"
    )
    length: int = Field(default=12, ge=MIN_LENGTH, le=MAX_LENGTH)
    prefix: Annotated[str, NoNul] = Field(default="", max_length=16)
    alphabet: Annotated[str, NoNul] = Field(
        default=DEFAULT_ALPHABET, description="no look-alike characters (0/O, 1/I/L…)"
    )
    test: bool = Field(
        default=False, description="UAT test codes: never issued, redeemable in test mode only"
    )


class CodeLookup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=200)


class Reveal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=3)


class CodeFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    campaign_id: Identifier | None = None
    status: CodeStatus | None = None
    delivery_failed: bool | None = None
    issued_from: AwareDatetime | None = None
    issued_to: AwareDatetime | None = None


class Recover(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code_ids: list[uuid.UUID] = Field(default_factory=list, max_length=operations.MAX_BATCH)
    filter: CodeFilter | None = None
    reason: Text = Field(min_length=3)
    dry_run: bool = False


class ExtendExpiry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code_ids: list[uuid.UUID] = Field(default_factory=list, max_length=operations.MAX_BATCH)
    campaign_id: Identifier | None = Field(default=None, description="every code of the campaign")
    expires_at: AwareDatetime
    reason: Text = Field(min_length=3)
    dry_run: bool = False


class Flag(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000)
    reason: Text = Field(min_length=3)


def too_many_codes(cap: int) -> Problem:
    message = f"at most {cap} codes per request: split the generation into several requests"
    return Problem(
        422,
        "validation_failed",
        detail=f"Invalid request: body.count ({message})",
        errors=[{"field": "body.count", "code": "less_than_equal", "message": message}],
    )


def _selection(code_ids: list[uuid.UUID], code_filter: CodeFilter | None) -> operations.Selection:
    f = code_filter or CodeFilter()
    selection = operations.Selection(code_ids=tuple(code_ids), **f.model_dump())
    if not code_ids and f == CodeFilter():
        raise invalid("code_ids", "name the codes by code_ids or a filter")
    return selection


SPOOL_IN_MEMORY = 2**20


def _parse_spooled(file: IO[bytes], now: datetime) -> ParsedFile:
    file.seek(0)
    data = file.read()
    if len(data) > MAX_IMPORT_BYTES:
        raise Problem(413, "file_too_large", detail=f"files up to {MAX_IMPORT_BYTES // 2**20} MiB")
    return parse_codes(data, now=now)


async def _received_file(request: Request, now: datetime) -> ParsedFile:
    """The file is received whole (on disk past 1 MiB), then parsed in a worker thread: no database
    connection is taken before, however slowly the client sends it."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        # Starlette's form parser spools file parts to temporary files itself.
        async with request.form() as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise invalid("file", "the multipart field `file` is missing")
            return await asyncio.to_thread(_parse_spooled, upload.file, now)
    if content_type.split(";")[0].strip() not in ("text/csv", "application/csv"):
        raise Problem(
            415, "unsupported_media_type", detail="send a multipart field `file` or a text/csv body"
        )
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spooled:
        async for chunk in request.stream():
            spooled.write(chunk)
        return await asyncio.to_thread(_parse_spooled, spooled, now)


def recovery_selection(body: dict[str, Any]) -> operations.Selection:
    """The codes a stored `POST /v1/codes/recover` body names (approved bulk recoveries)."""
    recover = Recover.model_validate(body)
    return _selection(recover.code_ids, recover.filter)


async def _add_codes(
    pool: asyncpg.Pool,
    vault: CodeVault,
    campaign_id: str,
    add: Callable[[Connection], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Add codes to a campaign's pool (generated or imported) and mark its stock in one transaction;
    then serve the orders that waited for them. `add`'s report, with how many orders were served."""

    async def work(conn: Connection) -> dict[str, Any]:
        report = await add(conn)
        await codes_repository.refresh_stock_flag(conn, campaign_id)
        return report

    report = await in_transaction(pool, work)
    report["held_orders_served"] = await serve_held_orders(pool, vault, campaign_id)
    return report


router = APIRouter(tags=["codes"])


@router.post(
    "/v1/campaigns/{campaign_id}/codes/generate",
    status_code=201,
    summary="Generate unique codes",
    response_model=GenerateResult,
    response_model_exclude_unset=True,
)
async def generate(
    campaign_id: str, body: Generate, ctx: Ctx, pool: DbPool, principal: Operator
) -> dict[str, Any]:
    if body.count > ctx.settings.max_codes_per_request:
        raise too_many_codes(ctx.settings.max_codes_per_request)
    return await _add_codes(
        pool,
        ctx.vault,
        campaign_id,
        lambda conn: codes.generate(
            conn,
            ctx.vault,
            campaign_id,
            count=body.count,
            length=body.length,
            prefix=body.prefix,
            alphabet=body.alphabet,
            test=body.test,
            actor=principal.actor,
            chunk_size=ctx.settings.generation_chunk,
        ),
    )


@router.post(
    "/v1/campaigns/{campaign_id}/codes/import",
    summary="Import a partner's CSV (code, expires_at, value); problems reported per row",
    response_model=ImportReport,
    dependencies=[Depends(body_limit(MAX_IMPORT_BYTES))],
)
async def import_csv(
    campaign_id: str, request: Request, ctx: Ctx, pool: DbPool, principal: Operator
) -> dict[str, Any]:
    parsed = await _received_file(request, datetime.now(UTC))
    return await _add_codes(
        pool,
        ctx.vault,
        campaign_id,
        lambda conn: codes.import_codes(conn, ctx.vault, campaign_id, parsed, actor=principal.actor),
    )


@router.get(
    "/v1/codes/{code_id}",
    summary="A code's status, order, member and history (never the code)",
    response_model=CodeStatusOut,
)
async def get_code(code_id: uuid.UUID, pool: DbPool, _: Reader) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return await codes.status(conn, code_id)


@router.post(
    "/v1/codes/lookup",
    summary="A code's status by the code itself (sent in the body)",
    response_model=CodeStatusOut,
)
async def lookup(body: CodeLookup, ctx: Ctx, pool: DbPool, _: Reader) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return await codes.status(conn, await codes.find_id(conn, ctx.vault, body.code.strip()))


@router.post(
    "/v1/codes/{code_id}/reveal",
    summary="The clear code; every reveal is audited and each actor's reveals are rate-limited",
    response_model=RevealedCode,
    responses={429: {"model": ProblemDetails, "description": "Too many reveals this minute (Retry-After)"}},
)
async def reveal(
    code_id: uuid.UUID, body: Reveal, ctx: Ctx, pool: DbPool, principal: Revealer
) -> dict[str, Any]:
    # Counted on its own, before the reveal: refused and failed attempts use up the window too.
    async with pool.acquire() as conn:
        wait_s = await reveal_limits.count_reveal(
            conn, principal.sub, per_minute=ctx.settings.reveals_per_minute
        )
    if wait_s is not None:
        raise Problem(
            429,
            "too_many_reveals",
            detail=f"at most {ctx.settings.reveals_per_minute} reveals a minute; try again in {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        )
    staff = principal.has_any_role((Role.ADMIN, Role.SUPPORT_AGENT))
    member_id = None if staff else principal.sub
    clear = await in_transaction(
        pool,
        lambda conn: codes.reveal(
            conn, ctx.vault, code_id, actor=principal.actor, reason=body.reason, member_id=member_id
        ),
    )
    return {"code_id": code_id, "code": clear}


@router.post(
    "/v1/codes/recover",
    summary="Recover codes by ids or filter: an undelivered code returns to its pool, a delivered one is"
    " voided and its order gets a fresh code; more codes than the approval threshold wait for a"
    " second person's approval (202)",
    response_model=RecoverResult,
    response_model_exclude_unset=True,
    responses=PENDING_RESPONSE,
)
async def recover(body: Recover, ctx: Ctx, pool: DbPool, principal: Operator) -> Any:
    selection = _selection(body.code_ids, body.filter)
    if not body.dry_run:
        pending = await in_transaction(
            pool,
            lambda conn: ask_for_bulk_recovery(
                conn,
                ctx.approvals,
                selection=selection,
                recover=body.model_dump(mode="json", exclude_unset=True),
                reason=body.reason,
                principal=principal,
                above=ctx.settings.recovery_approval_above,
            ),
        )
        if pending is not None:
            return pending_answer(pending)
    result = await in_transaction(
        pool,
        lambda conn: operations.recover(
            conn,
            selection,
            actor=principal.actor,
            reason=body.reason,
            dry_run=body.dry_run,
            vault=ctx.vault,
        ),
    )
    if not body.dry_run:
        async with pool.acquire() as conn:
            campaign_ids = await operations_repository.campaigns_of_codes(conn, result["code_ids"])
        await serve_held_orders(pool, ctx.vault, *campaign_ids)
    return result


@router.post(
    "/v1/codes/extend-expiry",
    summary="Extend expiry of codes, a list, or a whole campaign",
    response_model=ExtendResult,
    response_model_exclude_unset=True,
)
async def extend(body: ExtendExpiry, pool: DbPool, principal: Operator) -> dict[str, Any]:
    if body.expires_at <= datetime.now(UTC):
        raise invalid("expires_at", "the new expiry must be in the future")
    if bool(body.code_ids) == (body.campaign_id is not None):
        raise invalid("code_ids", "give either code_ids or campaign_id")
    selection = operations.Selection(code_ids=tuple(body.code_ids), campaign_id=body.campaign_id)
    return await in_transaction(
        pool,
        lambda conn: operations.extend_expiry(
            conn,
            selection,
            expires_at=body.expires_at,
            actor=principal.actor,
            reason=body.reason,
            dry_run=body.dry_run,
        ),
    )


def _flag_route(flagged: bool) -> None:
    path = "/v1/codes/flag" if flagged else "/v1/codes/unflag"

    @router.post(
        path,
        summary="Flag codes (no issue, no redemption)" if flagged else "Unflag codes",
        name="flag" if flagged else "unflag",
        response_model=FlagResult,
        response_model_exclude_unset=True,
    )
    async def change(body: Flag, ctx: Ctx, pool: DbPool, principal: Operator) -> dict[str, Any]:
        result = await in_transaction(
            pool,
            lambda conn: operations.flag(
                conn, body.code_ids, flagged=flagged, actor=principal.actor, reason=body.reason
            ),
        )
        if not flagged:
            await serve_held_orders(pool, ctx.vault, *result["campaign_ids"])
        return result


_flag_route(True)
_flag_route(False)
