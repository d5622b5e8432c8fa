"""The operations API every service serves about its own messaging (issue 19, "Operations").

- `GET /v1/ops/consumers`: each of the service's subscriptions with its consumer group
  (`orchard.<service>.<subscription>`), topic, and per partition the committed offset, end offset and lag.
- `GET /v1/ops/outbox`: unpublished events and the age of the oldest, parked events (no payload) and who
  holds the relay's lease; `POST /v1/ops/outbox/retry` un-parks them, as `orchard outbox retry` does.
- `GET /v1/ops/dlq`: the dead letters this service's groups failed, newest first, paged; never their
  payload (a `delivery.requested` letter carries contact details), only what `orchard dlq list` shows,
  and when and by whom a letter was replayed through this API (the audit entry names the letters'
  positions: one that failed again is a new letter, not shown as replayed).
- `POST /v1/ops/dlq/replay`: replays one group's dead letters (given event ids, or all not replayed
  before, optionally at most `limit`), tagged for that group exactly as `orchard dlq replay --group`
  does; `dry_run` answers what would be sent and sends nothing.

Only `admin` and `ops` may call them. Both actions are audited in the service's own audit log with the
caller as actor. The runtime (pool, settings, subscriptions, relay) is `app.state.runtime`.

Under the broker's ACLs (deploy/kafka_acls.py) a service's principal may write its dead-letter topics
but not read them, nor write the topics it consumes: there the DLQ routes answer 503 `kafka_refused`
and dead letters are listed and replayed with `orchard dlq`, as an operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Final

from aiokafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from chassis.audit import append_audit
from chassis.auth import Principal, Role, require_roles
from chassis.consumer import Subscription
from chassis.consumer_lag import read_lag
from chassis.db import Connection
from chassis.dlq import DeadLetter, list_dead_letters, replay_letters
from chassis.inputs import Identifier, NonNegativeInt32, PositiveInt64
from chassis.models import model_from
from chassis.outbox import list_parked, retry_parked
from chassis.problems import Problem

if TYPE_CHECKING:
    from chassis.service import ServiceRuntime

OPS_ROLES: Final = (Role.ADMIN, Role.OPS)
KAFKA_TIMEOUT_S: Final = 20.0
MAX_PAGE: Final = 500
MAX_IDS: Final = 1000


class PartitionLagView(BaseModel):
    partition: int
    committed_offset: int | None = Field(description="null while the group has committed nothing here")
    end_offset: int
    lag: int = Field(description="messages on the partition the group has not committed yet")


class ConsumerGroupLag(BaseModel):
    group: str = Field(description="the consumer group, `orchard.<service>.<subscription>`")
    subscription: str
    topic: str
    lag: int = Field(description="the sum over the topic's partitions")
    partitions: list[PartitionLagView]


class ConsumerLagReport(BaseModel):
    service: str
    total_lag: int
    groups: list[ConsumerGroupLag]


class ParkedOutboxEvent(BaseModel):
    id: int
    topic: str
    key: str
    attempts: int
    last_error: str | None
    parked_at: datetime


class RelayLease(BaseModel):
    holder: str | None = Field(description="the process holding the relay's lease; null when none does")
    epoch: int = Field(description="bumped at every takeover")
    expires_at: datetime | None
    this_process_leads: bool = Field(description="whether the process answering runs the relay")


class OutboxStatus(BaseModel):
    service: str
    unpublished: int = Field(description="events written but not yet published (parked ones aside)")
    oldest_unpublished_age_s: float = Field(description="0 when nothing waits: the relay's lag")
    parked: int = Field(description="events the relay gave up publishing; each needs a decision")
    parked_events: list[ParkedOutboxEvent] = Field(description="oldest first, never the payload")
    relay: RelayLease


class OutboxRetryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[PositiveInt64] | None = Field(
        default=None, max_length=MAX_IDS, description="the parked rows to retry; all when left out"
    )


class OutboxRetryResult(BaseModel):
    retried: list[int] = Field(description="the row ids un-parked; the relay publishes them again")


class DeadLetterView(BaseModel):
    dlq_topic: str
    partition: int
    offset: int
    original_topic: str
    group: str = Field(description="the consumer group that failed it")
    subscription: str
    event_id: str | None
    key: str | None
    error_code: str
    error: str
    attempts: int
    failed_at: str
    replayed_at: datetime | None = Field(
        default=None, description="when it was last replayed through this API after it failed (audited)"
    )
    replayed_by: str | None = None


class DeadLetterPage(BaseModel):
    items: list[DeadLetterView] = Field(description="newest first; the payload is never shown")
    total: int = Field(description="all the dead letters matching the filter")
    next_offset: int | None = Field(description="pass as `offset` for the next page; null on the last")


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: Identifier = Field(description="the consumer group whose dead letters to replay")
    event_ids: list[Identifier] | None = Field(
        default=None, max_length=MAX_IDS, description="exactly these; else all not replayed before"
    )
    limit: int | None = Field(default=None, ge=1, le=10_000, description="replay at most this many")
    dry_run: bool = Field(default=False, description="answer what would be replayed, send nothing")


class ReplayResult(BaseModel):
    group: str
    dlq_topic: str
    dry_run: bool
    replayed: int = Field(description="letters sent back (or that would be, in a dry run)")
    letters: list[DeadLetterView]


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    if runtime.pool is None or runtime.consumer is None:
        raise Problem(503, "not_started", detail="The service is still starting; try again shortly.")
    return runtime


def _groups(runtime: ServiceRuntime) -> dict[str, Subscription]:
    """This service's consumer groups, each with its subscription."""
    assert runtime.consumer is not None
    return {runtime.consumer.group_id(sub): sub for sub in runtime.spec.subscriptions}


@contextlib.asynccontextmanager
async def _kafka() -> AsyncIterator[None]:
    """Bounded broker work; a broker that does not answer is a 503, not a hung request."""
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            yield
    except (TopicAuthorizationFailedError, GroupAuthorizationFailedError) as exc:
        raise Problem(
            503,
            "kafka_refused",
            detail=f"The broker refused this service's principal ({type(exc).__name__}); an operator's "
            "principal can do it with `orchard dlq list|replay`.",
        ) from exc
    except (KafkaError, OSError, TimeoutError) as exc:
        raise Problem(503, "kafka_unavailable", detail=f"The broker did not answer: {exc!r}") from exc


def _unknown_group(group: str, known: dict[str, Subscription], field: str) -> Problem:
    return Problem(
        422,
        "unknown_group",
        detail=f"{group!r} is not one of this service's consumer groups.",
        errors=[{"field": field, "code": "unknown_group", "message": f"one of: {', '.join(sorted(known))}"}],
    )


@dataclass(frozen=True)
class _Replay:
    at: datetime
    by: str


def _position(letter: DeadLetter) -> str:
    """Where a letter sits: a replay that fails again is a new letter, elsewhere."""
    return f"{letter.topic}@{letter.partition}:{letter.offset}"


def _view(
    letter: DeadLetter, groups: dict[str, Subscription], replays: Mapping[str, _Replay] | None = None
) -> DeadLetterView:
    replay = (replays or {}).get(_position(letter))
    return model_from(
        DeadLetterView,
        letter,
        dlq_topic=letter.topic,
        group=letter.consumer,
        subscription=groups[letter.consumer].name,
        replayed_at=replay.at if replay else None,
        replayed_by=replay.by if replay else None,
    )


async def _replays(conn: Connection, letters: Sequence[DeadLetter]) -> dict[str, _Replay]:
    """The last audited replay of each of these letters, by position."""
    if not letters:
        return {}
    positions = [_position(d) for d in letters]
    rows = await conn.fetch(
        "SELECT occurred_at, actor, details->'letters' AS letters FROM audit_log"
        " WHERE subject_type = 'consumer_group' AND subject_id = ANY($1::text[])"
        " AND action = 'dlq.replayed' AND details->'letters' ?| $2::text[] ORDER BY seq",
        sorted({d.consumer for d in letters}),
        positions,
    )
    found: dict[str, _Replay] = {}
    for row in rows:
        for position in json.loads(row["letters"]):
            found[str(position)] = _Replay(row["occurred_at"], row["actor"])
    return found


async def _outbox_status(conn: Connection, runtime: ServiceRuntime) -> OutboxStatus:
    counts = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE parked_at IS NULL) AS unpublished,"
        " EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL)) AS oldest,"
        " count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked"
        " FROM outbox WHERE published_at IS NULL"
    )
    lease = await conn.fetchrow(
        "SELECT CASE WHEN expires_at > clock_timestamp() THEN NULLIF(holder, '') END AS holder, epoch,"
        " CASE WHEN isfinite(expires_at) THEN expires_at END AS expires_at FROM outbox_relay_lease"
    )
    assert counts is not None
    parked = await list_parked(conn)
    return OutboxStatus(
        service=runtime.settings.service_name,
        unpublished=counts["unpublished"],
        oldest_unpublished_age_s=round(max(0.0, float(counts["oldest"] or 0.0)), 3),
        parked=counts["parked"],
        parked_events=[ParkedOutboxEvent(**vars(p)) for p in parked],
        relay=RelayLease(
            holder=lease["holder"] if lease else None,
            epoch=lease["epoch"] if lease else 0,
            expires_at=lease["expires_at"] if lease else None,
            this_process_leads=runtime.relay is not None and runtime.relay.is_leader,
        ),
    )


router = APIRouter(prefix="/v1/ops", tags=["ops"])
"""The ops routes; the service runtime mounts them on every service."""
_operator = Depends(require_roles(*OPS_ROLES))


@router.get(
    "/consumers",
    summary="Consumer lag of each of this service's subscriptions, per partition",
    response_model=ConsumerLagReport,
)
async def consumers(request: Request, _: Principal = _operator) -> ConsumerLagReport:
    runtime = _runtime(request)
    groups = _groups(runtime)
    async with _kafka():
        lags = await read_lag(
            runtime.settings.kafka_bootstrap_servers, {g: sub.topic for g, sub in groups.items()}
        )
    views = [
        model_from(
            ConsumerGroupLag,
            lag,
            subscription=groups[lag.group].name,
            partitions=[
                model_from(PartitionLagView, p, committed_offset=p.committed, end_offset=p.end)
                for p in lag.partitions
            ],
        )
        for lag in lags
    ]
    return ConsumerLagReport(
        service=runtime.settings.service_name, total_lag=sum(v.lag for v in views), groups=views
    )


@router.get(
    "/outbox",
    summary="Unpublished and parked outbox events, the relay's lag and its leader",
    response_model=OutboxStatus,
)
async def outbox(request: Request, _: Principal = _operator) -> OutboxStatus:
    runtime = _runtime(request)
    assert runtime.pool is not None
    async with runtime.pool.acquire() as conn:
        return await _outbox_status(conn, runtime)


@router.post(
    "/outbox/retry",
    summary="Un-park parked outbox events (all, or the given ids) so the relay publishes them",
    response_model=OutboxRetryResult,
)
async def outbox_retry(
    request: Request, body: OutboxRetryBody, principal: Principal = _operator
) -> OutboxRetryResult:
    runtime = _runtime(request)
    assert runtime.pool is not None
    async with runtime.pool.acquire() as conn, conn.transaction():
        retried = await retry_parked(conn, body.ids)
        if retried:
            await append_audit(
                conn,
                actor=principal.sub,
                action="outbox.retried",
                subject_type="outbox",
                subject_id=runtime.settings.service_name,
                details={"ids": retried},
            )
    return OutboxRetryResult(retried=retried)


@router.get(
    "/dlq",
    summary="Dead letters this service's consumer groups failed, newest first (never the payload)",
    response_model=DeadLetterPage,
)
async def dead_letters(
    request: Request,
    group: Annotated[Identifier | None, Query(description="only the letters this group failed")] = None,
    offset: Annotated[NonNegativeInt32, Query(description="letters to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    _: Principal = _operator,
) -> DeadLetterPage:
    runtime = _runtime(request)
    groups = _groups(runtime)
    if group is not None and group not in groups:
        raise _unknown_group(group, groups, "query.group")
    topics = sorted({groups[group].dlq_topic} if group else {s.dlq_topic for s in groups.values()})
    async with _kafka():
        letters = await list_dead_letters(runtime.settings.kafka_bootstrap_servers, topics, limit=0)
    mine = [d for d in letters if d.consumer in groups and (group is None or d.consumer == group)]
    mine.sort(key=lambda d: (d.failed_at, d.topic, d.partition, d.offset), reverse=True)
    page = mine[offset : offset + limit]
    assert runtime.pool is not None
    async with runtime.pool.acquire() as conn:
        replays = await _replays(conn, page)
    return DeadLetterPage(
        items=[_view(d, groups, replays) for d in page],
        total=len(mine),
        next_offset=offset + limit if offset + limit < len(mine) else None,
    )


@router.post(
    "/dlq/replay",
    summary="Replay one consumer group's dead letters to it alone (dry run: only answer them)",
    response_model=ReplayResult,
)
async def replay(request: Request, body: ReplayBody, principal: Principal = _operator) -> ReplayResult:
    runtime = _runtime(request)
    groups = _groups(runtime)
    if body.group not in groups:
        raise _unknown_group(body.group, groups, "body.group")
    dlq_topic = groups[body.group].dlq_topic
    async with _kafka():
        letters = await replay_letters(
            runtime.settings.kafka_bootstrap_servers,
            dlq_topic,
            event_ids=body.event_ids,
            group=body.group,
            limit=body.limit,
            dry_run=body.dry_run,
        )
    if letters and not body.dry_run:
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            await append_audit(
                conn,
                actor=principal.sub,
                action="dlq.replayed",
                subject_type="consumer_group",
                subject_id=body.group,
                details={
                    "dlq_topic": dlq_topic,
                    "event_ids": [d.event_id for d in letters],
                    "letters": [_position(d) for d in letters],
                },
            )
    return ReplayResult(
        group=body.group,
        dlq_topic=dlq_topic,
        dry_run=body.dry_run,
        replayed=len(letters),
        letters=[_view(d, groups) for d in letters],
    )
