"""Log lines are JSON with correlation ids, and never carry contact details or secrets."""

from __future__ import annotations

import logging

import structlog
from hypothesis import given
from hypothesis import strategies as st

from chassis.logging import (
    MASK,
    bind_correlation,
    current_correlation_id,
    redact,
    redact_text,
)
from chassis.tests.unit.conftest import LogCapture


def test_a_log_line_is_json_with_utc_timestamp_level_service_and_event(logs: LogCapture) -> None:
    structlog.get_logger("orders").info("order_created", order_id="o-1")

    [line] = logs.lines()
    assert line["event"] == "order_created"
    assert line["level"] == "info"
    assert line["service"] == "wallet"
    assert line["order_id"] == "o-1"
    assert line["timestamp"].endswith("Z")


def test_bound_correlation_ids_appear_on_every_line_and_go_away_after_the_block(
    logs: LogCapture,
) -> None:
    log = structlog.get_logger()
    with bind_correlation("corr-1", causation_id="cause-1", event_id="evt-1"):
        log.info("inside")
        assert current_correlation_id() == "corr-1"
    log.info("outside")

    inside, outside = logs.lines()
    assert (inside["correlation_id"], inside["causation_id"], inside["event_id"]) == (
        "corr-1",
        "cause-1",
        "evt-1",
    )
    assert "correlation_id" not in outside
    assert current_correlation_id() is None


def test_nested_correlation_restores_the_outer_ids(logs: LogCapture) -> None:
    with bind_correlation("outer"):
        with bind_correlation("inner", causation_id="x"):
            assert current_correlation_id() == "inner"
        assert current_correlation_id() == "outer"


def test_stdlib_library_logs_come_out_as_redacted_json(logs: LogCapture) -> None:
    logging.getLogger("uvicorn.error").warning("could not reach %s", "ops@example.com")

    [line] = logs.lines()
    assert line["logger"] == "uvicorn.error"
    assert line["event"] == f"could not reach o{MASK}@example.com"
    assert line["service"] == "wallet"


def test_sensitive_keys_are_fully_masked_at_any_depth(logs: LogCapture) -> None:
    structlog.get_logger().info(
        "delivery_requested",
        email="jane@example.com",
        phone="+447700900123",
        code="GIFT-ABCD-1234",
        recipient={"Authorization": "Bearer abc", "access_token": "t0k3n", "name": "Jane"},
        attempts=[{"password": "hunter2"}],
        status_code=200,
        reason_code="bounced",
    )

    [line] = logs.lines()
    assert line["email"] == line["phone"] == line["code"] == MASK
    assert line["recipient"] == {"Authorization": MASK, "access_token": MASK, "name": "Jane"}
    assert line["attempts"] == [{"password": MASK}]
    assert line["status_code"] == 200
    assert line["reason_code"] == "bounced"


def test_exception_tracebacks_are_redacted_too(logs: LogCapture) -> None:
    try:
        raise ValueError("no account for jane@example.com")
    except ValueError:
        structlog.get_logger().exception("lookup_failed")

    [line] = logs.lines()
    assert "jane@example.com" not in line["exception"]
    assert f"j{MASK}@example.com" in line["exception"]


def test_phone_numbers_keep_country_code_and_last_four_digits() -> None:
    assert redact_text("call +447700901234 now") == "call +44******1234 now"
    assert redact_text("call +44 7700 901234 now") == "call +44******1234 now"


def test_a_jwt_in_free_text_is_masked() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtLTEifQ.c2lnbmF0dXJl"
    assert token not in redact_text(f"Authorization: Bearer {token}")


def test_timestamps_and_ids_are_not_mistaken_for_phone_numbers() -> None:
    text = "at 2024-05-01T10:00:00+00:00 order 550e8400-e29b-41d4-a716-446655440000 took 1234567 us"
    assert redact_text(text) == text


def test_none_values_under_sensitive_keys_stay_visible() -> None:
    assert redact({"phone": None, "email": "a@b.co"}) == {"phone": None, "email": MASK}


# Filler text that can hold no address, number or token of its own: no "@", "+" or ".".
_filler = st.lists(
    st.text(alphabet=st.characters(categories=["L", "Nd"], max_codepoint=0x2FF) | st.sampled_from(",!?-()")),
    max_size=4,
).map(" ".join)
_e164 = st.builds(
    lambda first, rest: f"+{first}{rest}",
    st.sampled_from("123456789"),
    st.text(alphabet="0123456789", min_size=9, max_size=14),
)


def masked_email(email: str) -> str:
    local, domain = email.rsplit("@", 1)
    shown = local[0] if len(local) > 1 else ""
    return f"{shown}{MASK}@{domain}"


def masked_phone(phone: str) -> str:
    digits = phone[1:]
    return f"+{digits[:2]}{'*' * (len(digits) - 6)}{digits[-4:]}"


@given(email=st.emails(), before=_filler, after=_filler)
def test_an_email_anywhere_in_free_text_is_masked_and_nothing_else_changes(
    email: str, before: str, after: str
) -> None:
    assert redact_text(f"{before} <{email}> {after}") == f"{before} <{masked_email(email)}> {after}"


@given(phone=_e164, before=_filler, after=_filler)
def test_an_e164_number_anywhere_in_free_text_is_masked_and_nothing_else_changes(
    phone: str, before: str, after: str
) -> None:
    assert redact_text(f"{before} {phone}; {after}") == f"{before} {masked_phone(phone)}; {after}"


@given(phone=_e164, email=st.emails(), key=st.sampled_from(["note", "message", "detail"]))
def test_contact_details_nested_in_structures_are_masked(phone: str, email: str, key: str) -> None:
    redacted = redact({"outer": [{key: f"{email} / {phone}"}], "numbers": (phone,)})

    assert redacted == {
        "outer": [{key: f"{masked_email(email)} / {masked_phone(phone)}"}],
        "numbers": [masked_phone(phone)],
    }


def test_ids_bound_as_none_are_left_out_of_the_line(logs: LogCapture) -> None:
    with bind_correlation("corr-1"):
        structlog.get_logger().info("no_cause")

    [line] = logs.lines()
    assert line["correlation_id"] == "corr-1"
    assert "causation_id" not in line
