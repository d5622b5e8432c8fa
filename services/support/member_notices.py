"""A member is told when staff update their ticket (a move, or a comment that is not an internal note):
`delivery.message_requested` with notice `ticket_updated`, through the outbox in the transaction of the
change. Delivery skips it when the member opted out of ticket updates and picks their preferred channel."""

from __future__ import annotations

import uuid
from typing import Final

from chassis.db import Connection
from chassis.outbox import add_event
from contracts.delivery import DeliveryMessageRequested
from contracts.envelope import Envelope
from contracts.members import NotificationKind
from contracts.topics import Topics
from contracts.values import Channel

from . import ticket_repository as repo
from .context import PRODUCER

MESSAGE_LIMIT: Final = 2000
"""A template parameter's limit: a longer comment is cut, the member reads the rest in the portal."""


async def tell_member(conn: Connection, ticket: repo.TicketRow, *, message: str | None = None) -> None:
    """Queue the notice for `ticket` as it is now; nothing for a ticket that names no member."""
    if ticket.member_id is None:
        return
    kind = NotificationKind.TICKET_UPDATED
    data = DeliveryMessageRequested(
        message_id=uuid.uuid4(),
        member_id=ticket.member_id,
        channel=Channel.EMAIL,
        template=kind.value,
        notice=kind,
        ticket_id=ticket.ticket_id,
        order_id=ticket.order_id,
        params={
            "ticket_id": ticket.ticket_id,
            "status": ticket.state.value.replace("_", " "),
            "message": (message or "")[:MESSAGE_LIMIT],
        },
    )
    envelope = Envelope.new(event_type=Topics.DELIVERY_MESSAGE_REQUESTED, producer=PRODUCER, data=data)
    await add_event(conn, envelope, key=ticket.member_id)
