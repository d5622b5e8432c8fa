"""HTTP in: webhooks for downstream systems (admin, ops). Register (the secret is answered once),
list, inspect the delivery log, rotate the secret, ping, disable and enable, replay, delete. Every
change is audited; secrets are stored encrypted and never shown again."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from chassis.audit import append_audit
from chassis.auth import Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.inputs import Aware, NoNul, Text
from chassis.problems import invalid_field, register_error

from ..codes import CodeVault
from ..routes import request_settings
from . import repository
from .domain import PING_EVENT, AddressRefused, UnknownEvents, WebhookNotFound, check_events, new_secret
from .transport import check_destination

register_error(WebhookNotFound, 404, "webhook_not_found")
register_error(UnknownEvents, 422, "unknown_events")
register_error(AddressRefused, 422, "webhook_url_refused")

Manager = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPS))]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul]
Topic = Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class NewWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url = Field(description="https://… (http and private addresses only in development)")
    events: list[Topic] = Field(min_length=1, max_length=50, description="status topic names")
    description: Text | None = None


class Webhook(BaseModel):
    webhook_id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_until: datetime | None = Field(
        description="until then the previous secret signs next to the current one"
    )
    created_by: str
    created_at: datetime
    pending: int | None = Field(default=None, description="events not yet delivered")


class WebhookWithSecret(Webhook):
    secret: str = Field(description="shown only in this answer: keep it to verify signatures")


class WebhookList(BaseModel):
    items: list[Webhook]


class WebhookDelivery(BaseModel):
    seq: int
    event_id: uuid.UUID
    event_type: str
    aggregate_key: str
    occurred_at: datetime
    status: str = Field(description="`pending`, `sending` or `delivered`")
    attempts: int
    replays: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(BaseModel):
    items: list[WebhookDelivery]
    next_cursor: str | None


class RotatedSecret(BaseModel):
    webhook_id: uuid.UUID
    secret: str = Field(description="the new secret, shown only in this answer")
    previous_secret_until: datetime | None


class Replay(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: Aware = Field(description="events that occurred at or after this time (RFC 3339 with an offset)")


class ReplayAnswer(BaseModel):
    webhook_id: uuid.UUID
    requeued: int


class PingAnswer(BaseModel):
    webhook_id: uuid.UUID
    event_id: uuid.UUID


def _webhook(row: asyncpg.Record) -> dict[str, Any]:
    return {k: row[k] for k in Webhook.model_fields if k in row.keys()}  # noqa: SIM118


async def _audit(conn: Any, principal: Principal, action: str, webhook_id: uuid.UUID, **details: Any) -> None:
    await append_audit(
        conn,
        actor=principal.actor,
        action=f"webhook.{action}",
        subject_type="webhook",
        subject_id=str(webhook_id),
        details=details,
    )


@router.post("", status_code=201, response_model=WebhookWithSecret, summary="Register a webhook")
async def create_webhook(
    request: Request, pool: DbPool, body: NewWebhook, principal: Manager
) -> dict[str, Any]:
    settings = request_settings(request)
    events = check_events(body.events)
    await check_destination(body.url, dev=settings.is_dev)
    secret = new_secret()
    webhook_id = uuid.uuid4()
    sealed = CodeVault(settings.code_key).seal(SecretStr(secret))
    async with pool.acquire() as conn, conn.transaction():
        row = await repository.create(
            conn, webhook_id, body.url, events, body.description, sealed, principal.actor
        )
        await _audit(conn, principal, "created", webhook_id, url=body.url, events=events)
        await repository.announce_change(conn)
    return {**_webhook(row), "secret": secret}


@router.get("", response_model=WebhookList, summary="Webhooks")
async def list_webhooks(pool: DbPool, _: Manager) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await repository.list_all(conn)
    return {"items": [{**_webhook(r), "pending": r["pending"]} for r in rows]}


async def _existing(conn: Any, webhook_id: uuid.UUID) -> asyncpg.Record:
    row = await repository.get(conn, webhook_id)
    if row is None:
        raise WebhookNotFound(f"No webhook {webhook_id}.")
    return row


@router.get("/{webhook_id}", response_model=Webhook, summary="A webhook")
async def get_webhook(pool: DbPool, webhook_id: uuid.UUID, _: Manager) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return _webhook(await _existing(conn, webhook_id))


@router.delete("/{webhook_id}", status_code=204, summary="Remove a webhook and its delivery log")
async def delete_webhook(pool: DbPool, webhook_id: uuid.UUID, principal: Manager) -> Response:
    async with pool.acquire() as conn, conn.transaction():
        if not await repository.delete(conn, webhook_id):
            raise WebhookNotFound(f"No webhook {webhook_id}.")
        await _audit(conn, principal, "deleted", webhook_id)
        await repository.announce_change(conn)
    return Response(status_code=204)


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode()


def _parse_cursor(cursor: str) -> int:
    try:
        value = int(base64.urlsafe_b64decode(cursor.encode()).decode())
        if not 0 < value < 2**63:
            raise ValueError(cursor)
        return value
    except ValueError as exc:
        raise invalid_field("query.cursor", "invalid", "not a cursor from this API") from exc


@router.get(
    "/{webhook_id}/deliveries", response_model=DeliveryPage, summary="A webhook's delivery log, newest first"
)
async def list_deliveries(
    pool: DbPool,
    webhook_id: uuid.UUID,
    _: Manager,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = None,
) -> dict[str, Any]:
    before = _parse_cursor(cursor) if cursor else None
    async with pool.acquire() as conn:
        await _existing(conn, webhook_id)
        rows = await repository.deliveries(conn, webhook_id, limit, before)
    return {
        "items": [dict(r.items()) for r in rows],
        "next_cursor": _cursor(rows[-1]["seq"]) if len(rows) == limit else None,
    }


@router.post("/{webhook_id}/secret", response_model=RotatedSecret, summary="Rotate the signing secret")
async def rotate_secret(
    request: Request, pool: DbPool, webhook_id: uuid.UUID, principal: Manager
) -> dict[str, Any]:
    settings = request_settings(request)
    secret = new_secret()
    sealed = CodeVault(settings.code_key).seal(SecretStr(secret))
    async with pool.acquire() as conn, conn.transaction():
        row = await repository.rotate_secret(conn, webhook_id, sealed, settings.webhook_rotation_overlap_s)
        if row is None:
            raise WebhookNotFound(f"No webhook {webhook_id}.")
        await _audit(conn, principal, "secret_rotated", webhook_id)
    return {"webhook_id": webhook_id, "secret": secret, "previous_secret_until": row["previous_secret_until"]}


@router.post("/{webhook_id}/ping", status_code=202, response_model=PingAnswer, summary="Send a test event")
async def ping(pool: DbPool, webhook_id: uuid.UUID, principal: Manager) -> dict[str, Any]:
    event_id = uuid.uuid4()
    now = datetime.now(UTC)
    body = {
        "event_id": str(event_id),
        "event_type": PING_EVENT,
        "schema_version": 1,
        "occurred_at": now.isoformat().replace("+00:00", "Z"),
        "producer": "delivery",
        "correlation_id": str(event_id),
        "causation_id": None,
        "data": {"webhook_id": str(webhook_id)},
    }
    async with pool.acquire() as conn, conn.transaction():
        await _existing(conn, webhook_id)
        await repository.record_ping(
            conn,
            webhook_id,
            repository.NewDelivery(event_id, PING_EVENT, str(webhook_id), now, json.dumps(body).encode()),
        )
        await _audit(conn, principal, "pinged", webhook_id, event_id=str(event_id))
    return {"webhook_id": webhook_id, "event_id": event_id}


async def _switch(
    pool: asyncpg.Pool, webhook_id: uuid.UUID, principal: Manager, enabled: bool
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        reason = None if enabled else f"disabled by {principal.actor}"
        row = await repository.set_enabled(conn, webhook_id, enabled, reason)
        if row is None:
            raise WebhookNotFound(f"No webhook {webhook_id}.")
        await _audit(conn, principal, "enabled" if enabled else "disabled", webhook_id)
        await repository.announce_change(conn)
    return _webhook(row)


@router.post("/{webhook_id}/disable", response_model=Webhook, summary="Stop sending to a webhook")
async def disable(pool: DbPool, webhook_id: uuid.UUID, principal: Manager) -> dict[str, Any]:
    return await _switch(pool, webhook_id, principal, False)


@router.post(
    "/{webhook_id}/enable",
    response_model=Webhook,
    summary="Send to a webhook again (its events left pending go first)",
)
async def enable(pool: DbPool, webhook_id: uuid.UUID, principal: Manager) -> dict[str, Any]:
    return await _switch(pool, webhook_id, principal, True)


@router.post(
    "/{webhook_id}/replay",
    status_code=202,
    response_model=ReplayAnswer,
    summary="Send a webhook's delivered events again from a given time",
)
async def replay(pool: DbPool, webhook_id: uuid.UUID, body: Replay, principal: Manager) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        await _existing(conn, webhook_id)
        count = await repository.replay(conn, webhook_id, body.since)
        await _audit(conn, principal, "replayed", webhook_id, since=body.since.isoformat(), requeued=count)
    return {"webhook_id": webhook_id, "requeued": count}
