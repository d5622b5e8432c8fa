"""HTTP in for exports: request one for a purpose, follow its progress, download it. All audited."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chassis.auth import Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.http import BoundedStreamingResponse
from chassis.inputs import Identifier, NoNul
from chassis.models import model_from
from chassis.problems import Problem
from contracts.redemption import RedemptionKind, RedemptionStatus
from services.redemption.audit import audit
from services.redemption.deps import settings
from services.redemption.exports import domain
from services.redemption.exports import repository as repo
from services.redemption.settings import RedemptionSettings
from services.redemption.views import ExportOut

router = APIRouter(tags=["exports"])

EXPORT_ROLES = (Role.ADMIN, Role.FINANCE, Role.OPS, Role.AUDITOR, Role.PARTNER)


class ExportFilters(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")
    kind: RedemptionKind | None = None
    status: RedemptionStatus | None = None
    partner_id: Identifier | None = None
    offer_id: Identifier | None = None
    channel: Identifier | None = None


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: domain.Purpose
    format: domain.ExportFormat = domain.ExportFormat.CSV
    reason: Annotated[str, StringConstraints(min_length=3, max_length=500), NoNul] = Field(
        description="why the data is needed (audited)"
    )
    fields: list[Annotated[str, StringConstraints(max_length=200), NoNul]] | None = Field(
        default=None, description="a subset of the purpose's allowed fields"
    )
    filters: ExportFilters = Field(default_factory=ExportFilters)


def export_view(job: repo.ExportJob) -> ExportOut:
    total = job.rows_total
    percent = 100 if job.status == "ready" else (int(job.rows_done * 100 / total) if total else 0)
    return model_from(
        ExportOut,
        job,
        progress={"rows_done": job.rows_done, "rows_total": total, "percent": percent},
        download=f"/v1/exports/{job.export_id}/download" if job.status == "ready" else None,
    )


@router.post("/v1/exports", status_code=202, response_model=ExportOut)
async def request_export(
    body: ExportIn,
    principal: Annotated[Principal, Depends(require_roles(*EXPORT_ROLES))],
    pool: DbPool,
) -> ExportOut:
    if not principal.has_any_role(domain.ALLOWED_ROLES[body.purpose]):
        raise Problem(403, "purpose_not_allowed", detail=f"Your role may not export for {body.purpose}.")
    try:
        fields = domain.choose_fields(body.purpose, body.fields)
    except domain.FieldsNotAllowed as exc:
        raise Problem(
            422,
            "fields_not_allowed",
            detail=str(exc),
            errors=[
                {"field": "body.fields", "code": "not_allowed_for_purpose", "message": f"{f} is not allowed"}
                for f in exc.fields
            ],
        ) from exc
    filters = body.filters.model_dump(mode="json", by_alias=True, exclude_none=True)
    staff = principal.has_any_role(domain.ALLOWED_ROLES[body.purpose] - {Role.PARTNER})
    if not staff:  # a partner settles only its own redemptions
        if filters.get("partner_id") not in (None, principal.sub):
            raise Problem(403, "forbidden", detail="A partner exports only its own redemptions.")
        filters["partner_id"] = principal.sub
    who = principal.actor
    job = repo.ExportJob(
        export_id=uuid.uuid4(),
        purpose=body.purpose,
        format=body.format,
        fields=fields,
        filters=filters,
        reason=body.reason,
        requested_by=who,
        status="queued",
        rows_total=None,
        rows_done=0,
        error=None,
        created_at=None,
        finished_at=None,
    )
    async with pool.acquire() as conn, conn.transaction():
        await repo.insert_export(conn, job)
        await audit(
            conn,
            who,
            "export",
            str(job.export_id),
            "requested",
            {
                "purpose": str(body.purpose),
                "reason": body.reason,
                "fields": list(fields),
                "format": str(body.format),
                "filters": filters,
            },
        )
        stored = await repo.get_export(conn, job.export_id)
    assert stored is not None
    return export_view(stored)


class ExportPage(BaseModel):
    items: list[ExportOut]


@router.get(
    "/v1/exports",
    response_model=ExportPage,
    summary="The latest exports, newest first: the caller's own (admins and auditors: everyone's)",
)
async def list_exports(
    principal: Annotated[Principal, Depends(require_roles(*EXPORT_ROLES))],
    pool: DbPool,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    everyone = principal.has_any_role((Role.ADMIN, Role.AUDITOR))
    async with pool.acquire() as conn:
        jobs = await repo.list_exports(conn, None if everyone else principal.actor, limit)
    return {"items": [export_view(job) for job in jobs]}


async def _visible_export(conn: Any, principal: Principal, export_id: uuid.UUID) -> repo.ExportJob:
    job = await repo.get_export(conn, export_id)
    if job is None or not (
        job.requested_by == principal.actor or principal.has_any_role((Role.ADMIN, Role.AUDITOR))
    ):
        raise Problem(404, "export_not_found", detail=f"No export {export_id}.")
    return job


@router.get("/v1/exports/{export_id}", response_model=ExportOut)
async def get_export(
    export_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require_roles(*EXPORT_ROLES))],
    pool: DbPool,
) -> ExportOut:
    async with pool.acquire() as conn:
        return export_view(await _visible_export(conn, principal, export_id))


@router.get(
    "/v1/exports/{export_id}/download",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The export as CSV or JSON lines, as it was requested",
            "content": {
                media.split(";")[0]: {"schema": {"type": "string"}} for media in domain.MEDIA_TYPES.values()
            },
        }
    },
)
async def download_export(
    export_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require_roles(*EXPORT_ROLES))],
    pool: DbPool,
    config: Annotated[RedemptionSettings, Depends(settings)],
) -> StreamingResponse:
    async with pool.acquire() as conn, conn.transaction():
        job = await _visible_export(conn, principal, export_id)
        if job.status != "ready":
            raise Problem(409, "export_not_ready", detail=f"Export {export_id} is {job.status}.")
        details = {"purpose": str(job.purpose), "fields": list(job.fields)}
        await audit(conn, principal.actor, "export", str(export_id), "downloaded", details)
    suffix = "csv" if job.format is domain.ExportFormat.CSV else "jsonl"
    timeout_s = config.http_download_timeout_s
    return BoundedStreamingResponse(
        repo.chunks(pool, export_id, statement_timeout_s=timeout_s),
        timeout_s=timeout_s,
        media_type=domain.MEDIA_TYPES[job.format],
        headers={
            "Content-Disposition": f'attachment; filename="redemptions-{job.purpose}-{export_id}.{suffix}"'
        },
    )
