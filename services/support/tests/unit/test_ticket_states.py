"""The ticket state machine, as properties over any sequence of requested moves."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.support import TicketPriority
from services.support.domain.tickets import (
    PAUSED_STATES,
    TRANSITIONS,
    InvalidTransition,
    TicketState,
    TransitionNotAllowedForMember,
    escalated_priority,
    is_reopen,
    state_after_customer_reply,
    transition,
)

moves = st.lists(st.tuples(st.sampled_from(TicketState), st.booleans()), max_size=40)


@given(moves)
def test_any_sequence_of_moves_follows_the_graph_and_refusals_change_nothing(requests):
    state = TicketState.OPEN
    history = [state]
    for target, by_member in requests:
        try:
            new_state = transition(state, target, by_member=by_member)
        except InvalidTransition:
            assert target not in TRANSITIONS[state]
            continue
        except TransitionNotAllowedForMember:
            assert by_member
            assert target in TRANSITIONS[state]
            continue
        assert new_state is target
        assert target in TRANSITIONS[state]
        state = new_state
        history.append(state)
    for before, after in itertools.pairwise(history):
        if after is TicketState.CLOSED:
            assert before is TicketState.RESOLVED
        if after is TicketState.OPEN:
            assert is_reopen(before, after)


@given(st.sampled_from(TicketState), st.sampled_from(TicketState))
def test_a_member_can_only_reopen_or_confirm_a_resolved_ticket(current, target):
    try:
        transition(current, target, by_member=True)
    except (InvalidTransition, TransitionNotAllowedForMember):
        return
    assert current in (TicketState.RESOLVED, TicketState.CLOSED)
    assert target in (TicketState.OPEN, TicketState.CLOSED)


@given(st.sampled_from(TicketState))
def test_every_state_can_reach_closed(start):
    seen = {start}
    frontier = [start]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert TicketState.CLOSED in seen or start is TicketState.CLOSED


def test_moving_to_the_same_state_is_refused_with_the_allowed_moves_named():
    with pytest.raises(InvalidTransition, match="allowed: in_progress, resolved"):
        transition(TicketState.WAITING_ON_CUSTOMER, TicketState.WAITING_ON_CUSTOMER)


def test_a_closed_ticket_can_only_be_reopened():
    assert TRANSITIONS[TicketState.CLOSED] == {TicketState.OPEN}


def test_the_clock_pauses_only_off_the_agents_desk():
    assert {TicketState.WAITING_ON_CUSTOMER, TicketState.RESOLVED, TicketState.CLOSED} == PAUSED_STATES


def test_a_customer_reply_hands_a_waiting_ticket_back_to_the_agents():
    assert state_after_customer_reply(TicketState.WAITING_ON_CUSTOMER) is TicketState.IN_PROGRESS
    assert state_after_customer_reply(TicketState.OPEN) is TicketState.OPEN


@given(st.lists(st.just(None), max_size=6))
def test_escalation_raises_priority_one_level_and_stops_at_urgent(steps):
    priority = TicketPriority.LOW
    order = list(TicketPriority)
    for _ in steps:
        raised = escalated_priority(priority)
        assert order.index(raised) == min(order.index(priority) + 1, len(order) - 1)
        priority = raised
    assert escalated_priority(TicketPriority.URGENT) is TicketPriority.URGENT
