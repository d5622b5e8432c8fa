import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.values import Channel
from services.delivery.domain import (
    Contacts,
    DeliveryStatus,
    Fallback,
    GiveUp,
    Next,
    NotResendable,
    ReasonCode,
    ResendTooSoon,
    Retry,
    RetryPolicy,
    SendResult,
    after_failure,
    check_resend,
    fallback_channel,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BOTH = Contacts(email="a@example.com", phone="+447700900123")


def decide_after(
    result: SendResult,
    current: Channel,
    *,
    policy: RetryPolicy,
    channel_attempts: int = 1,
    fallback_allowed: bool = True,
) -> Next:
    """`after_failure` now, nothing tried before and both contacts known."""
    return after_failure(
        result,
        channel_attempts=channel_attempts,
        policy=policy,
        now=NOW,
        current=current,
        tried=frozenset(),
        contacts=BOTH,
        fallback_allowed=fallback_allowed,
    )


@given(attempt=st.integers(min_value=1, max_value=40), seed=st.integers())
def test_backoff_grows_exponentially_with_jitter_and_never_passes_the_cap(attempt, seed):
    policy = RetryPolicy(max_attempts=50, base_delay_s=2.0, max_delay_s=300.0)
    ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))

    delay = policy.delay(attempt, random.Random(seed)).total_seconds()

    assert ceiling / 2 <= delay <= ceiling


def test_two_retries_of_the_same_attempt_do_not_wait_the_same_time():
    policy = RetryPolicy()
    rng = random.Random(7)
    assert len({policy.delay(3, rng) for _ in range(20)}) > 1


@pytest.mark.parametrize(
    "reason",
    [
        ReasonCode.RATE_LIMITED,
        ReasonCode.PROVIDER_ERROR,
        ReasonCode.PROVIDER_TIMEOUT,
        ReasonCode.SMTP_DEFERRED,
    ],
)
def test_transient_failures_retry_until_the_limit_then_give_up(reason):
    policy = RetryPolicy(max_attempts=3)
    result = SendResult.failure(reason, "x")
    decide = lambda n: decide_after(result, Channel.SMS, policy=policy, channel_attempts=n)  # noqa: E731

    assert isinstance(decide(1), Retry)
    assert decide(1).at > NOW
    assert isinstance(decide(2), Retry)
    assert isinstance(decide(3), GiveUp)


@pytest.mark.parametrize(
    "reason", [ReasonCode.INVALID_NUMBER, ReasonCode.BOUNCED, ReasonCode.WHATSAPP_UNREACHABLE]
)
def test_permanent_failures_never_retry(reason):
    decision = decide_after(
        SendResult.failure(reason, "x"), Channel.EMAIL, policy=RetryPolicy(max_attempts=5)
    )
    assert isinstance(decision, GiveUp)


def test_fallback_goes_whatsapp_then_sms_then_email_skipping_unknown_contacts():
    assert fallback_channel(Channel.WHATSAPP, frozenset(), BOTH, True) is Channel.SMS
    assert fallback_channel(Channel.SMS, frozenset({Channel.WHATSAPP}), BOTH, True) is Channel.EMAIL
    assert (
        fallback_channel(Channel.WHATSAPP, frozenset(), Contacts("a@example.com", None), True)
        is Channel.EMAIL
    )
    assert fallback_channel(Channel.EMAIL, frozenset(), BOTH, True) is None
    assert fallback_channel(Channel.WHATSAPP, frozenset(), BOTH, False) is None


@given(
    start=st.sampled_from(list(Channel)),
    email=st.booleans(),
    phone=st.booleans(),
)
def test_a_fallback_chain_never_revisits_a_channel_and_ends(start, email, phone):
    contacts = Contacts("a@example.com" if email else None, "+447700900123" if phone else None)
    tried: set[Channel] = set()
    current = start
    for _ in range(5):
        nxt = fallback_channel(current, frozenset(tried), contacts, True)
        if nxt is None:
            break
        assert nxt not in tried
        assert nxt != current
        assert contacts.reaches(nxt)
        tried.add(current)
        current = nxt
    assert len(tried) <= 2


def test_a_permanent_failure_with_consent_and_another_contact_falls_back():
    decision = decide_after(
        SendResult.failure(ReasonCode.WHATSAPP_UNREACHABLE, "x"), Channel.WHATSAPP, policy=RetryPolicy()
    )
    assert decision == Fallback(Channel.SMS)


def test_a_resend_is_allowed_once_a_minute_and_never_for_a_cancelled_order():
    check_resend(status=DeliveryStatus.FAILED, has_code=True, last_resend_at=None, now=NOW)
    check_resend(
        status=DeliveryStatus.SENT, has_code=True, last_resend_at=NOW - timedelta(seconds=61), now=NOW
    )
    with pytest.raises(ResendTooSoon):
        check_resend(
            status=DeliveryStatus.SENT, has_code=True, last_resend_at=NOW - timedelta(seconds=30), now=NOW
        )
    with pytest.raises(NotResendable):
        check_resend(status=DeliveryStatus.CANCELLED, has_code=False, last_resend_at=None, now=NOW)
    with pytest.raises(NotResendable):
        check_resend(status=DeliveryStatus.SENDING, has_code=True, last_resend_at=None, now=NOW)
    with pytest.raises(NotResendable):
        check_resend(status=DeliveryStatus.SENT, has_code=False, last_resend_at=None, now=NOW)


def test_a_rate_limited_retry_waits_at_least_as_long_as_the_provider_asked():
    decision = decide_after(
        SendResult.failure(ReasonCode.RATE_LIMITED, "HTTP 429", retry_after_s=30),
        Channel.SMS,
        policy=RetryPolicy(base_delay_s=0.1, max_delay_s=300),
        fallback_allowed=False,
    )
    assert isinstance(decision, Retry)
    assert decision.at >= NOW + timedelta(seconds=30)
