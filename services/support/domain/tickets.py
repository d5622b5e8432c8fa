"""Tickets: the state machine, who may move a ticket where, and priority escalation. No I/O."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from contracts.support import TicketCategory, TicketPriority


class TicketState(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    WAITING_ON_CUSTOMER = "waiting_on_customer"
    RESOLVED = "resolved"
    CLOSED = "closed"


class TicketQueue(StrEnum):
    STANDARD = "standard"
    ESCALATION = "escalation"


class TicketError(Exception):
    """A request about a ticket that the rules refuse; the message is written for the caller."""


class InvalidTransition(TicketError):
    def __init__(self, current: TicketState, target: TicketState) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none"
        super().__init__(f"a ticket cannot move from {current} to {target} (allowed: {allowed})")
        self.current = current
        self.target = target


class TransitionNotAllowedForMember(TicketError):
    def __init__(self, target: TicketState) -> None:
        super().__init__(
            f"members may only reopen or close their resolved tickets, not move them to {target}"
        )
        self.target = target


TRANSITIONS: Final[dict[TicketState, frozenset[TicketState]]] = {
    TicketState.OPEN: frozenset(
        {TicketState.IN_PROGRESS, TicketState.WAITING_ON_CUSTOMER, TicketState.RESOLVED}
    ),
    TicketState.IN_PROGRESS: frozenset({TicketState.WAITING_ON_CUSTOMER, TicketState.RESOLVED}),
    TicketState.WAITING_ON_CUSTOMER: frozenset({TicketState.IN_PROGRESS, TicketState.RESOLVED}),
    # Moving a resolved or closed ticket back to `open` is the reopen.
    TicketState.RESOLVED: frozenset({TicketState.CLOSED, TicketState.OPEN}),
    TicketState.CLOSED: frozenset({TicketState.OPEN}),
}

MEMBER_TRANSITIONS: Final[frozenset[tuple[TicketState, TicketState]]] = frozenset(
    {
        (TicketState.RESOLVED, TicketState.OPEN),
        (TicketState.CLOSED, TicketState.OPEN),
        (TicketState.RESOLVED, TicketState.CLOSED),
    }
)

# The SLA clock stands still while the ball is in the customer's court or the ticket is done.
PAUSED_STATES: Final = frozenset({TicketState.WAITING_ON_CUSTOMER, TicketState.RESOLVED, TicketState.CLOSED})
ACTIVE_STATES: Final = frozenset({TicketState.OPEN, TicketState.IN_PROGRESS, TicketState.WAITING_ON_CUSTOMER})

_PRIORITY_ORDER: Final = (
    TicketPriority.LOW,
    TicketPriority.MEDIUM,
    TicketPriority.HIGH,
    TicketPriority.URGENT,
)


def transition(current: TicketState, target: TicketState, *, by_member: bool = False) -> TicketState:
    """The state after moving `current` to `target`; raises when the rules refuse it."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(current, target)
    if by_member and (current, target) not in MEMBER_TRANSITIONS:
        raise TransitionNotAllowedForMember(target)
    return target


def is_reopen(current: TicketState, target: TicketState) -> bool:
    return current in (TicketState.RESOLVED, TicketState.CLOSED) and target is TicketState.OPEN


def state_after_customer_reply(current: TicketState) -> TicketState:
    """A member answering a ticket that waited on them hands it back to the agents."""
    return TicketState.IN_PROGRESS if current is TicketState.WAITING_ON_CUSTOMER else current


def escalated_priority(priority: TicketPriority) -> TicketPriority:
    """One level up, `urgent` staying `urgent`."""
    index = _PRIORITY_ORDER.index(priority)
    return _PRIORITY_ORDER[min(index + 1, len(_PRIORITY_ORDER) - 1)]


def counts_as_first_response(*, by_staff: bool, internal: bool = False) -> bool:
    """A staff member's visible comment or state change is the first response; a note to colleagues is not."""
    return by_staff and not internal


AUTO_TICKET_CATEGORY: Final = TicketCategory.MISSING_DELIVERY
