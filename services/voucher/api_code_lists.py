"""HTTP: a campaign's codes, listed a page at a time and exported (CSV or JSON lines), masked."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from chassis.auth import Role
from chassis.deps import DbPool
from chassis.downloads import (
    DOWNLOAD_RESPONSES,
    DownloadFormat,
    cursor_rows,
    download_lines,
    download_response,
)
from chassis.http import BoundedStreamingResponse
from chassis.inputs import Text
from chassis.problems import Problem
from contracts.vouchers import CodeStatus

from . import campaigns, code_lists
from .api_common import Ctx, Reader
from .repository import code_lists as code_lists_repository
from .views import CodeListPage

MAX_SEQ = 2**63 - 1


def code_filter(
    campaign_id: str,
    status: CodeStatus | None = None,
    test: Annotated[
        bool | None, Query(description="true: UAT test codes only; false: real ones only")
    ] = None,
) -> code_lists.CodeListFilter:
    return code_lists.CodeListFilter(campaign_id=campaign_id, status=status, test=test)


router = APIRouter(prefix="/v1/campaigns/{campaign_id}/codes", tags=["codes"])


@router.get(
    "",
    summary="A campaign's codes in pool order, masked, a page at a time (filter by status, test)",
    response_model=CodeListPage,
)
async def list_codes(
    pool: DbPool,
    _: Reader,
    flt: code_lists.CodeListFilter = Depends(code_filter),
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="`next_after` of the page before")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        await campaigns.load(conn, flt.campaign_id)
        rows = await code_lists.page(conn, flt, after=after, limit=limit)
    return {
        "items": rows,
        "next_after": rows[-1]["seq"] if len(rows) == limit else None,
    }


@router.get(
    "/export",
    summary="Every code of a campaign the filters match, streamed as CSV or JSON lines, masked; an"
    " admin may add the clear code with `clear=true` and a `reason`, audited before the first line",
    response_class=StreamingResponse,
    responses={**DOWNLOAD_RESPONSES, 403: {"description": "`clear=true` by anyone but an admin"}},
)
async def export_codes(
    ctx: Ctx,
    pool: DbPool,
    principal: Reader,
    format: Annotated[DownloadFormat, Query(description="`csv` (spreadsheet-safe) or `jsonl`")] = "csv",
    flt: code_lists.CodeListFilter = Depends(code_filter),
    clear: Annotated[bool, Query(description="admins only: add the clear `code` column")] = False,
    reason: Annotated[Text | None, Query(min_length=3, description="why clear codes are exported")] = None,
) -> BoundedStreamingResponse:
    timeout_s = ctx.settings.http_download_timeout_s
    async with pool.acquire() as conn:
        await campaigns.load(conn, flt.campaign_id)
    columns = code_lists.COLUMNS
    values: Any = code_lists.code_json
    if clear:
        if Role.ADMIN not in principal.roles:
            raise Problem(403, "forbidden", detail="Only an admin may export clear codes.")
        if reason is None:
            raise Problem(
                422,
                "validation_failed",
                detail="A clear export needs a reason.",
                errors=[{"field": "query.reason", "code": "required", "message": "Say why."}],
            )
        async with pool.acquire() as conn, conn.transaction():
            await code_lists.audit_clear_export(
                conn, flt, actor=principal.actor, reason=reason, format=format
            )
        columns = (*columns, "code")
        values = code_lists.clear_values(ctx.vault)
    query, args = code_lists_repository.export_query(flt, clear=clear)
    rows = cursor_rows(pool, query, *args, statement_timeout_s=timeout_s)
    return download_response(
        download_lines(rows, columns, format, values),
        name=f"codes-{flt.campaign_id}",
        format=format,
        timeout_s=timeout_s,
    )
