"""One-time code and PIN rules: expiry, attempt counting, lockout, hashing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.redemption.offers import domain as d

KEY = b"test-key"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RID = uuid.UUID(int=7)


def _challenge(code: str = "123456", *, ttl: timedelta = timedelta(minutes=5)) -> d.OtpChallenge:
    return d.OtpChallenge(RID, d.otp_hash(KEY, RID, code), NOW + ttl)


def test_the_right_code_before_expiry_verifies() -> None:
    _, outcome = d.verify_otp(_challenge(), "123456", key=KEY, now=NOW, max_attempts=3)
    assert outcome is d.OtpOutcome.VERIFIED


def test_a_code_after_its_expiry_is_refused_even_when_right() -> None:
    after, outcome = d.verify_otp(
        _challenge(), "123456", key=KEY, now=NOW + timedelta(minutes=5), max_attempts=3
    )
    assert outcome is d.OtpOutcome.EXPIRED
    assert after.status == "expired"


@given(st.lists(st.text(alphabet="0123456789", min_size=6, max_size=6), min_size=1, max_size=10))
def test_the_code_locks_at_the_last_allowed_wrong_attempt_and_stays_locked(guesses: list[str]) -> None:
    challenge = _challenge()
    outcomes = []
    for guess in guesses:
        challenge, outcome = d.verify_otp(challenge, guess, key=KEY, now=NOW, max_attempts=3)
        outcomes.append(outcome)
        if outcome is d.OtpOutcome.VERIFIED:
            break
    wrong_before_lock = 0
    for outcome in outcomes:
        if outcome is d.OtpOutcome.LOCKED:
            break
        if outcome is d.OtpOutcome.WRONG:
            wrong_before_lock += 1
    assert wrong_before_lock <= 2
    if d.OtpOutcome.LOCKED in outcomes:
        first = outcomes.index(d.OtpOutcome.LOCKED)
        assert all(o is d.OtpOutcome.LOCKED for o in outcomes[first:])
        _, late = d.verify_otp(challenge, "123456", key=KEY, now=NOW, max_attempts=3)
        assert late is d.OtpOutcome.LOCKED


def test_the_stored_hash_is_keyed_and_bound_to_its_redemption() -> None:
    assert d.otp_hash(KEY, RID, "123456") != d.otp_hash(b"other", RID, "123456")
    assert d.otp_hash(KEY, RID, "123456") != d.otp_hash(KEY, uuid.UUID(int=8), "123456")
    assert "123456" not in d.otp_hash(KEY, RID, "123456")


def test_new_codes_are_six_digits() -> None:
    codes = {d.new_otp() for _ in range(50)}
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) > 1


def test_a_pin_is_hashed_with_argon2id_and_verified_against_the_hash() -> None:
    hashed = d.hash_pin("4831")
    assert hashed.startswith("$argon2id$")
    assert d.pin_matches(hashed, "4831")
    assert not d.pin_matches(hashed, "4832")
    assert not d.pin_matches("not a hash", "4831")


def test_weak_pins_are_refused() -> None:
    for pin in ("123", "1111", "1234", "9876", "12a4", "123456789"):
        try:
            d.check_new_pin(pin)
        except d.WeakPin:
            continue
        raise AssertionError(f"{pin} was accepted")
    d.check_new_pin("4831")


def test_wrong_pins_lock_for_the_lockout_then_a_right_pin_works_again() -> None:
    state = d.PinState()
    lockout = timedelta(minutes=15)
    outcomes = []
    for _ in range(3):
        state, outcome = d.after_pin_attempt(state, matched=False, now=NOW, max_attempts=3, lockout=lockout)
        outcomes.append(outcome)
    assert outcomes == [d.PinOutcome.WRONG, d.PinOutcome.WRONG, d.PinOutcome.LOCKED]
    _, during = d.after_pin_attempt(
        state, matched=True, now=NOW + timedelta(minutes=14), max_attempts=3, lockout=lockout
    )
    assert during is d.PinOutcome.LOCKED
    after, later = d.after_pin_attempt(
        state, matched=True, now=NOW + lockout, max_attempts=3, lockout=lockout
    )
    assert later is d.PinOutcome.VERIFIED
    assert after == d.PinState()


def test_a_right_pin_resets_the_count_of_wrong_ones() -> None:
    state, _ = d.after_pin_attempt(d.PinState(), matched=False, now=NOW, max_attempts=3, lockout=timedelta(1))
    state, _ = d.after_pin_attempt(state, matched=True, now=NOW, max_attempts=3, lockout=timedelta(1))
    assert state.failed_attempts == 0
