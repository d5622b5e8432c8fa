"""The answers of the support service's HTTP API, as its OpenAPI document describes them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chassis.inputs import LocalTime
from chassis.money import MoneyText
from contracts.support import TicketCategory, TicketPriority


class TargetView(BaseModel):
    """One SLA target of a ticket: working seconds allowed, used and left, and its instants."""

    status: str
    target_s: int
    elapsed_s: int
    seconds_left: int
    overdue_s: int
    paused: bool
    due_at: datetime | None
    warn_at: datetime | None
    met_at: datetime | None


class AppliedPolicy(BaseModel):
    priority: str
    first_response_s: int
    resolution_s: int
    calendar_id: str | None


class TicketSla(BaseModel):
    policy: AppliedPolicy
    first_response: TargetView
    resolution: TargetView


class TicketOut(BaseModel):
    ticket_id: str
    member_id: str | None
    category: str
    order_id: uuid.UUID | None
    booking_id: str | None
    description: str
    priority: str
    queue: str
    assignee: str | None
    state: str
    origin: str
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    sla: TicketSla


class TicketEvent(BaseModel):
    event_seq: int
    occurred_at: datetime
    actor: str
    kind: str
    from_state: str | None
    to_state: str | None
    body: str | None
    internal: bool
    details: dict[str, Any]


class TicketDetail(TicketOut):
    """A ticket with its timeline (members do not see internal notes)."""

    timeline: list[TicketEvent]


class TicketPage(BaseModel):
    items: list[TicketOut]
    next_cursor: str | None


class PolicyOut(BaseModel):
    priority: TicketPriority
    first_response_s: int
    resolution_s: int
    category: TicketCategory | None
    calendar_id: str | None


class CalendarOut(BaseModel):
    calendar_id: str
    timezone: str
    working_days: list[int]
    day_start: LocalTime
    day_end: LocalTime
    holidays: list[date]


class TargetOutcome(BaseModel):
    met: int
    missed: int
    share_met: float | None = Field(description="met / (met + missed); null while none is settled")


class Outcome(BaseModel):
    tickets: int
    first_response: TargetOutcome
    resolution: TargetOutcome


class ReportRow(Outcome):
    priority: str
    category: str
    week: date


class PriorityOutcome(Outcome):
    priority: str


class CategoryOutcome(Outcome):
    category: str


class WeekOutcome(Outcome):
    week: date
    week_end: date


class SlaReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    since: date | None = Field(alias="from")
    until: date | None = Field(alias="to")
    rows: list[ReportRow]
    by_priority: list[PriorityOutcome]
    by_category: list[CategoryOutcome]
    by_week: list[WeekOutcome]


class ReplacedCode(BaseModel):
    code_id: uuid.UUID
    masked_code: str | None
    status: str | None = Field(description="its last status, e.g. `void` or `recovered`")


class PortalVoucher(BaseModel):
    """The order's current code (a replacement's, after a recovery) with its latest status."""

    code_id: uuid.UUID
    masked_code: str | None
    face_value: MoneyText | None
    currency: str | None
    status: str = Field(description="`issued`, `partially_redeemed`, `redeemed`, `expired`, …")
    remaining_value: MoneyText | None = Field(description="value left on the code, once a status named it")
    expires_at: datetime | None = Field(description="after an extension, the new expiry")
    replaced_codes: list[ReplacedCode] = Field(description="codes the order held before, oldest first")


class PortalTicket(BaseModel):
    ticket_id: str
    state: str
    category: str
    priority: str


class PortalOrder(BaseModel):
    """An order as support sees it: state, voucher (masked), deliveries, tickets and agent actions."""

    order_id: uuid.UUID
    booking_id: str | None
    member_id: str | None
    campaign_id: str | None
    external_ref: str | None
    source: str | None
    state: str | None
    fulfilment_status: str | None
    voucher: PortalVoucher | None
    timeline: list[dict[str, Any]]
    delivery_attempts: list[dict[str, Any]]
    tickets: list[PortalTicket]
    agent_actions: list[dict[str, Any]]


class AgentAction(BaseModel):
    action_id: uuid.UUID
    kind: str
    actor: str
    order_id: uuid.UUID | None
    member_id: str | None
    ticket_id: str | None
    reason: str | None
    points: int | None
    requested_at: datetime
    applied_at: datetime | None
