"""Tickets, comments and agent actions refuse NUL bytes naming the field, before any query runs (a
database error names no field)."""

import pytest
from pydantic import BaseModel

from chassis.validation_refusals import refused_fields
from services.support.api.portal import GoodwillBody, ResendBody
from services.support.api.tickets import CommentRequest, TicketCreate, TicketUpdate, TransitionRequest

TICKET = {"category": "other", "description": "my voucher never arrived"}
CASES = [
    (TicketCreate, TICKET, "description"),
    (TicketCreate, TICKET, "booking_id"),
    (TicketCreate, TICKET, "member_id"),
    (TicketCreate, TICKET, "assignee"),
    (TransitionRequest, {"to": "open"}, "note"),
    (CommentRequest, {"body": "hello"}, "body"),
    (TicketUpdate, {}, "assignee"),
    (ResendBody, {}, "reason"),
    (GoodwillBody, {"points": 10}, "ticket_id"),
    (GoodwillBody, {"points": 10}, "idempotency_key"),
]


@pytest.mark.parametrize(("model", "body", "field"), CASES)
def test_a_nul_byte_is_refused_naming_the_field(
    model: type[BaseModel], body: dict[str, object], field: str
) -> None:
    assert refused_fields(model, {**body, field: "a\x00b"}) == [(field,)]
