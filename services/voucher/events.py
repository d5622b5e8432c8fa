"""Writing the voucher service's events to the outbox, in the caller's transaction."""

from __future__ import annotations

from typing import Any

import structlog

from chassis.db import Connection
from chassis.outbox import OutgoingEvent, add_to_outbox
from contracts.envelope import Envelope, EventData
from contracts.registry import for_payload

PRODUCER = "voucher"


def envelope_for(
    data: EventData, cause: Envelope[Any] | None = None, correlation_id: str | None = None
) -> Envelope[Any]:
    spec = for_payload(data)
    if cause is not None:
        return cause.caused(event_type=spec.name, producer=PRODUCER, data=data)
    correlation = correlation_id or structlog.contextvars.get_contextvars().get("correlation_id")
    return Envelope.new(event_type=spec.name, producer=PRODUCER, data=data, correlation_id=correlation)


async def publish(
    conn: Connection,
    items: list[EventData],
    *,
    cause: Envelope[Any] | None = None,
    correlation_id: str | None = None,
) -> None:
    await add_to_outbox(
        conn,
        [
            OutgoingEvent(key=for_payload(d).key_of(d), envelope=envelope_for(d, cause, correlation_id))
            for d in items
        ],
    )


async def publish_each(
    conn: Connection, items: list[tuple[EventData, Envelope[Any] | None, str | None]]
) -> None:
    """Events of several orders at once, each caused by (and correlated with) its own order's event."""
    await add_to_outbox(
        conn,
        [
            OutgoingEvent(key=for_payload(d).key_of(d), envelope=envelope_for(d, cause, correlation_id))
            for d, cause, correlation_id in items
        ],
    )
