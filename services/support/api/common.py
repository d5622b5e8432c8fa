"""What every support route shares: callers from tokens, error mappings, views."""

from __future__ import annotations

from typing import Annotated, Any, Final, cast

from fastapi import Depends, Request

from chassis.auth import Principal, Role, require_roles
from chassis.problems import register_error
from services.support.context import SupportContext
from services.support.domain.goodwill import GoodwillNotAllowed, JustificationRequired
from services.support.domain.sla import NoSlaPolicy, SlaConfigError, TargetStatus
from services.support.domain.tickets import InvalidTransition, TransitionNotAllowedForMember
from services.support.portal import OrderNotActionable, OrderNotFound, TicketConcernsAnotherOrder
from services.support.tickets import Caller, InternalNoteNotAllowed, TicketNotFound, TicketView

STAFF: Final = (Role.ADMIN, Role.OPS, Role.SUPPORT_AGENT)
STAFF_READ: Final = (*STAFF, Role.AUDITOR)
_ACTOR_ROLE_ORDER: Final = (Role.ADMIN, Role.OPS, Role.SUPPORT_AGENT, Role.AUDITOR, Role.FINANCE)


def support_context(request: Request) -> SupportContext:
    """The running service's context (settings, clock), as `build_spec` made it."""
    return cast(SupportContext, request.app.state.runtime.spec.context)


Ctx = Annotated[SupportContext, Depends(support_context)]
Staff = Annotated[Principal, Depends(require_roles(*STAFF))]
StaffReader = Annotated[Principal, Depends(require_roles(*STAFF_READ))]

register_error(InvalidTransition, 409, "invalid_transition")
register_error(TransitionNotAllowedForMember, 403, "transition_not_allowed")
register_error(TicketNotFound, 404, "ticket_not_found")
register_error(InternalNoteNotAllowed, 403, "internal_note_not_allowed")
register_error(NoSlaPolicy, 409, "no_sla_policy")
register_error(SlaConfigError, 422, "invalid_sla_configuration")
register_error(OrderNotFound, 404, "order_not_found")
register_error(OrderNotActionable, 409, "order_not_actionable")
register_error(TicketConcernsAnotherOrder, 409, "ticket_concerns_another_order")
register_error(GoodwillNotAllowed, 403, "goodwill_not_allowed")
register_error(JustificationRequired, 422, "justification_required")


def caller_of(principal: Principal) -> Caller:
    """Staff act as `role:sub`; a caller holding only the member role acts for their own account."""
    for role in _ACTOR_ROLE_ORDER:
        if role in principal.roles:
            return Caller(actor=f"{role}:{principal.sub}")
    return Caller(actor=f"member:{principal.sub}", member_id=principal.sub)


def target_view(status: TargetStatus) -> dict[str, Any]:
    left = round(status.seconds_left)
    return {
        "status": status.phase.value,
        "target_s": status.target_s,
        "elapsed_s": round(status.elapsed_s),
        "seconds_left": max(left, 0),
        "overdue_s": max(-left, 0),
        "paused": status.paused,
        "due_at": status.due_at,
        "warn_at": status.warn_at,
        "met_at": status.met_at,
    }


def ticket_view(view: TicketView) -> dict[str, Any]:
    t = view.ticket
    first_response, resolution = view.sla
    return {
        "ticket_id": t.ticket_id,
        "member_id": t.member_id,
        "category": t.category,
        "order_id": t.order_id,
        "booking_id": t.booking_id,
        "description": t.description,
        "priority": t.priority,
        "queue": t.queue,
        "assignee": t.assignee,
        "state": t.state,
        "origin": t.origin,
        "opened_by": t.opened_by,
        "opened_at": t.opened_at,
        "updated_at": t.updated_at,
        "first_response_at": t.first_response_at,
        "resolved_at": t.resolved_at,
        "closed_at": t.closed_at,
        "sla": {
            "policy": {
                "priority": t.sla_priority,
                "first_response_s": t.fr_target_s,
                "resolution_s": t.res_target_s,
                "calendar_id": t.calendar_id,
            },
            "first_response": target_view(first_response),
            "resolution": target_view(resolution),
        },
    }
