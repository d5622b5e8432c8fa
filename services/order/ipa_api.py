"""HTTP in for IPA intake: upload a batch (CSV or JSON records), follow its progress, get its errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from chassis.approvals import Approval
from chassis.audit import append_audit
from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.http import BoundedStreamingResponse
from chassis.inputs import nul_path
from chassis.problems import Problem
from chassis.uploads import MultipartFile, limited_body, replay, spool

from . import batches
from .approvals import hold_for_approval
from .batches import Mode, RowWriter
from .context import Ctx, OrderContext
from .csvfile import CsvFileError, CsvRecordStream, report_header, report_line
from .repository import batches as batch_repository
from .validation import RECORD_FIELDS, RecordError
from .views import BatchAccepted, BatchPage, BatchProgress, json_default

INTAKE_ROLES = (Role.ADMIN, Role.OPS, Role.HRIS)
READ_ROLES = (Role.ADMIN, Role.OPS, Role.HRIS, Role.AUDITOR)
Intake = Annotated[Principal, Depends(require_roles(*INTAKE_ROLES))]
BatchReader = Annotated[Principal, Depends(require_roles(*READ_ROLES))]


_RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{name: {"type": "string"} for name in RECORD_FIELDS},
        "test": {"type": "boolean", "default": False, "description": "a UAT test order (voucher rewards)"},
    },
    "required": ["external_ref", "member_id", "campaign_id", "reward_type", "amount"],
}
UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "description": "CSV with a header of `ipa.record_submitted` field names (UTF-8, comma-separated), "
    "or JSON records. Rows are numbered from 1 (the header is not a row).",
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"records": {"type": "array", "items": _RECORD_SCHEMA}},
            }
        },
    },
}


def _file_problem(exc: CsvFileError) -> Problem:
    return Problem(
        422,
        exc.code,
        detail=exc.message,
        errors=[{"field": "file", "code": exc.code, "message": exc.message}],
    )


def _refuse_nul(cells: Any, field: str, where: str) -> None:
    """Postgres stores no NUL byte in text or JSON: the whole upload is refused, naming the field."""
    path = nul_path(cells)
    if path is None:
        return
    name = f"{field}.{path}".replace("\x00", "\\0") if path else field
    message = f"{where} holds a NUL byte, which cannot be stored."
    raise Problem(
        422,
        "validation_failed",
        detail=f"Invalid request: {name}",
        errors=[{"field": name, "code": "nul_byte", "message": message}],
    )


# The upload alone: `build_spec` gives it the body limit of the service's settings.
upload_router = APIRouter(prefix="/v1/ipa", tags=["ipa"])
router = APIRouter(prefix="/v1/ipa", tags=["ipa"])


@dataclass(frozen=True)
class Upload:
    """One upload as received, before its records are stored."""

    batch_id: uuid.UUID
    mode: Mode
    source: Literal["csv", "json"]
    file_name: str | None
    maker: str


@upload_router.post(
    "/batches",
    status_code=202,
    summary="Upload IPA records: CSV (multipart field `file` or a text/csv body) or JSON `records`;"
    " a batch above the approval thresholds waits for a second person (`awaiting_approval`)",
    response_model=BatchAccepted,
    responses={
        413: {"description": "Upload too large"},
        415: {"description": "Neither CSV nor JSON"},
        422: {"description": "Unreadable file (bad encoding, header, delimiter, quoting) or no records"},
    },
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload(
    request: Request,
    principal: Intake,
    # After the caller is known: an anonymous upload is refused before anything else.
    ctx: Ctx,
    pool: DbPool,
    mode: Mode = Query(Mode.ACCEPT_VALID, description="dry_run | all_or_nothing | accept_valid"),
) -> JSONResponse:
    content_type = request.headers.get("content-type", "").lower()
    media = content_type.split(";")[0].strip()
    source = _upload_source(media)
    limit = ctx.settings.max_json_bytes if source == "json" else ctx.settings.max_upload_bytes
    body = limited_body(request, limit)
    form = MultipartFile(content_type) if media == "multipart/form-data" else None
    if form is not None:
        body = form.file_bytes(body)
    # The whole body is received (and the form and JSON checked) before a connection is taken.
    with await spool(body) as spooled:
        file_name = _uploaded_file_name(form)
        records = _json_records(spooled.read()) if source == "json" else None
        received = Upload(uuid.uuid4(), mode, source, file_name, principal.actor)
        async with pool.acquire() as conn, conn.transaction():
            writer = RowWriter(conn, received.batch_id)
            await _store_upload(conn, received, writer, records if records is not None else replay(spooled))
            pending = await _hold_or_queue(conn, ctx, received, writer.count, principal)
    if pending is None:
        ctx.wake_worker()
    return _accepted(received, writer.count, pending)


def _upload_source(media: str) -> Literal["csv", "json"]:
    if media in ("text/csv", "application/csv", "text/plain", "multipart/form-data"):
        return "csv"
    if media == "application/json":
        return "json"
    raise Problem(
        415,
        "unsupported_media_type",
        detail='Send CSV (multipart `file` field or a text/csv body) or JSON {"records": [...]}.',
    )


async def _store_upload(
    conn: Connection, received: Upload, writer: RowWriter, records: list[Any] | AsyncIterator[bytes]
) -> None:
    """The batch and every record of the upload (a record's problems kept with it); none: 422."""
    await batch_repository.create_batch(
        conn,
        received.batch_id,
        source=received.source,
        mode=received.mode,
        created_by=received.maker,
        file_name=received.file_name,
    )
    if isinstance(records, list):
        await _store_json(records, writer)
    else:
        await _store_csv(records, writer)
    await writer.flush()
    if writer.count == 0:
        raise Problem(
            422,
            "no_records",
            detail="The upload holds no records.",
            errors=[
                {
                    "field": "file" if received.source == "csv" else "records",
                    "code": "no_records",
                    "message": "No records.",
                }
            ],
        )


async def _hold_or_queue(
    conn: Connection, ctx: OrderContext, received: Upload, rows: int, principal: Principal
) -> Approval | None:
    """The stored batch queued for the worker, or held for approval (the pending approval); audited."""
    pending = await hold_for_approval(
        conn,
        ctx.approvals,
        batch_id=received.batch_id,
        mode=received.mode,
        rows=rows,
        rows_above=ctx.settings.ipa_approval_rows_above,
        total_above=ctx.settings.ipa_approval_total_above,
        principal=principal,
        maker=received.maker,
        file_name=received.file_name,
    )
    if pending is None:
        await batch_repository.queue_batch(conn, received.batch_id, rows)
    await append_audit(
        conn,
        actor=received.maker,
        action="ipa.batch_uploaded",
        subject_type="ipa_batch",
        subject_id=str(received.batch_id),
        details={
            "mode": str(received.mode),
            "source": received.source,
            "rows": rows,
            "file_name": received.file_name,
        },
    )
    return pending


def _accepted(received: Upload, rows: int, pending: Approval | None) -> JSONResponse:
    location = f"/v1/ipa/batches/{received.batch_id}"
    links = {"self": location, "errors": f"{location}/errors.csv"}
    answer: dict[str, Any] = {
        "batch_id": str(received.batch_id),
        "mode": str(received.mode),
        "received": rows,
    }
    if pending is None:
        answer |= {"status": "queued", "links": links}
    else:
        answer |= {
            "status": "awaiting_approval",
            "approval_id": str(pending.approval_id),
            "links": links | {"approval": f"/v1/approvals/{pending.approval_id}"},
        }
    return JSONResponse(answer, status_code=202, headers={"Location": location})


@router.get(
    "/batches",
    summary="The latest batches, newest first, with their progress counts",
    response_model=BatchPage,
)
async def recent(
    pool: DbPool,
    principal: BatchReader,
    limit: int = Query(50, ge=1, le=500),
) -> JSONResponse:
    async with pool.acquire() as conn:
        rows = await batch_repository.recent_batches(conn, limit)
    return JSONResponse(_jsonable({"items": rows}))


@router.get("/batches/{batch_id}", summary="A batch's progress", response_model=BatchProgress)
async def progress(pool: DbPool, batch_id: uuid.UUID, principal: BatchReader) -> JSONResponse:
    async with pool.acquire() as conn:
        body = await batches.batch_progress(conn, batch_id)
    if body is None:
        raise Problem(404, "batch_not_found", detail=f"No batch {batch_id}.")
    return JSONResponse(_jsonable(body))


@router.get(
    "/batches/{batch_id}/errors.csv",
    summary="The rejected rows with their errors, as CSV ready to fix and upload again",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def errors_csv(ctx: Ctx, pool: DbPool, batch_id: uuid.UUID, principal: Intake) -> StreamingResponse:
    async with pool.acquire() as conn:
        if await batches.batch_progress(conn, batch_id) is None:
            raise Problem(404, "batch_not_found", detail=f"No batch {batch_id}.")

    timeout_s = ctx.settings.http_download_timeout_s

    async def lines() -> AsyncIterator[bytes]:
        yield report_header().encode()
        async for row_number, cells, errors in batch_repository.rejected_rows(
            pool, batch_id, statement_timeout_s=timeout_s
        ):
            yield report_line(row_number, cells, errors).encode()

    return BoundedStreamingResponse(
        lines(),
        timeout_s=timeout_s,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="ipa-{batch_id}-errors.csv"'},
    )


def _uploaded_file_name(form: MultipartFile | None) -> str | None:
    if form is None:
        return None
    if not form.found:
        raise Problem(
            400,
            "file_missing",
            detail="The multipart form has no field named `file`.",
            errors=[{"field": "file", "code": "required", "message": "Attach the CSV as `file`."}],
        )
    _refuse_nul(form.file_name, "file", "The file name")
    return form.file_name


async def _store_csv(body: AsyncIterator[bytes], writer: RowWriter) -> None:
    stream = CsvRecordStream()
    try:
        async for chunk in body:
            for row in stream.feed(chunk):
                _refuse_nul(row.cells, "file", f"Row {row.row_number}")
                problems = [RecordError("record", "wrong_field_count", row.problem)] if row.problem else []
                await writer.add(row.row_number, row.cells, problems)
        for row in stream.finish():
            _refuse_nul(row.cells, "file", f"Row {row.row_number}")
            problems = [RecordError("record", "wrong_field_count", row.problem)] if row.problem else []
            await writer.add(row.row_number, row.cells, problems)
    except CsvFileError as exc:
        raise _file_problem(exc) from None


def _json_records(raw: bytes) -> list[Any]:
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(422, "invalid_json", detail=f"The body is not JSON: {exc}") from None
    records = document.get("records") if isinstance(document, dict) else None
    if not isinstance(records, list) or not records:
        raise Problem(
            422,
            "validation_failed",
            detail='Expected {"records": [ {...}, ... ]} with at least one record.',
            errors=[{"field": "records", "code": "required", "message": "A non-empty list of records."}],
        )
    for index, record in enumerate(records, start=1):
        if isinstance(record, dict):
            _refuse_nul(record, f"records.{index}", f"Record {index}")
    return records


async def _store_json(records: list[Any], writer: RowWriter) -> None:
    for index, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            await writer.add(
                index, {}, [RecordError("record", "invalid_type", "Each record is a JSON object.")]
            )
            continue
        unknown = sorted(str(k) for k in record if k not in RECORD_FIELDS)
        cells = {k: v for k, v in record.items() if k in RECORD_FIELDS}
        problems = [RecordError(k, "unknown_field", "Not a field of an IPA record.") for k in unknown]
        await writer.add(index, cells, problems)


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(body, default=json_default))
    return document
