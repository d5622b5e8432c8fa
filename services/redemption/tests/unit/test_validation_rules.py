"""One-time code and PIN rules: expiry, attempt counting, lockout, hashing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
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
    hashed = d.hash_pin("480317")
    assert hashed.startswith("$argon2id$")
    assert d.pin_matches(hashed, "480317")
    assert not d.pin_matches(hashed, "480318")
    assert not d.pin_matches("not a hash", "480317")


def test_a_four_digit_pin_set_before_the_six_digit_rule_still_verifies() -> None:
    hashed = d.hash_pin("4831")
    assert d.pin_matches(hashed, "4831")
    assert not d.pin_matches(hashed, "4830")


def test_new_pins_shorter_than_six_digits_or_trivially_guessable_are_refused() -> None:
    weak = (
        "4831",
        "48317",
        "111111",
        "123456",
        "654321",
        "234567",
        "890123",
        "121212",
        "9090909",
        "12345a",
        " 480317",
        "1234567890123",
        "",
    )
    for pin in weak:
        try:
            d.check_new_pin(pin)
        except d.WeakPin:
            continue
        raise AssertionError(f"{pin!r} was accepted")
    for pin in ("480317", "20251994", "123123", "135790"):
        d.check_new_pin(pin)


POLICY = d.PinLockoutPolicy(
    max_attempts=3, first_lockout=timedelta(minutes=15), longest_lockout=timedelta(hours=4)
)


def _wrong(state: d.PinState, now: datetime, times: int) -> tuple[d.PinState, list[d.PinOutcome]]:
    outcomes = []
    for _ in range(times):
        state, outcome = d.after_pin_attempt(state, matched=False, now=now, policy=POLICY)
        outcomes.append(outcome)
    return state, outcomes


def test_wrong_pins_lock_for_the_lockout_then_a_right_pin_works_again() -> None:
    state, outcomes = _wrong(d.PinState(), NOW, 3)
    assert outcomes == [d.PinOutcome.WRONG, d.PinOutcome.WRONG, d.PinOutcome.LOCKED]
    _, during = d.after_pin_attempt(state, matched=True, now=NOW + timedelta(minutes=14), policy=POLICY)
    assert during is d.PinOutcome.LOCKED
    after, later = d.after_pin_attempt(state, matched=True, now=NOW + timedelta(minutes=15), policy=POLICY)
    assert later is d.PinOutcome.VERIFIED
    assert after == d.PinState()


def test_a_locked_pin_stays_locked_longer_after_each_lockout() -> None:
    state, now, lengths = d.PinState(), NOW, []
    for _ in range(6):
        state, _ = _wrong(state, now, 3)
        assert state.locked_until is not None
        lengths.append(state.locked_until - now)
        now = state.locked_until
    minutes = [int(length.total_seconds() // 60) for length in lengths]
    assert minutes == [15, 30, 60, 120, 240, 240]
    assert state.lockouts == 6


def test_the_count_of_lockouts_survives_the_lock_expiring_and_a_right_pin_clears_it() -> None:
    state, _ = _wrong(d.PinState(), NOW, 3)
    after_expiry = NOW + timedelta(minutes=15)
    state, outcomes = _wrong(state, after_expiry, 2)
    assert outcomes == [d.PinOutcome.WRONG, d.PinOutcome.WRONG]
    assert state.lockouts == 1
    state, outcome = d.after_pin_attempt(state, matched=True, now=after_expiry, policy=POLICY)
    assert outcome is d.PinOutcome.VERIFIED
    assert state == d.PinState()


def test_attempts_during_a_lock_are_not_counted() -> None:
    locked, _ = _wrong(d.PinState(), NOW, 3)
    still, outcomes = _wrong(locked, NOW + timedelta(minutes=1), 10)
    assert still == locked
    assert set(outcomes) == {d.PinOutcome.LOCKED}


def test_a_right_pin_resets_the_count_of_wrong_ones() -> None:
    state, _ = _wrong(d.PinState(), NOW, 1)
    state, _ = d.after_pin_attempt(state, matched=True, now=NOW, policy=POLICY)
    assert state.failed_attempts == 0


def test_a_claimed_redemption_time_is_kept_only_a_bounded_time_back_and_hardly_ahead() -> None:
    bounds = {"now": NOW, "max_backdate": timedelta(minutes=15), "max_ahead": timedelta(minutes=1)}
    d.check_claimed_time(NOW - timedelta(minutes=15), **bounds)
    d.check_claimed_time(NOW + timedelta(seconds=59), **bounds)
    for claimed, code in (
        (NOW - timedelta(minutes=15, seconds=1), "too_old"),
        (NOW - timedelta(days=30), "too_old"),
        (NOW + timedelta(minutes=2), "future"),
    ):
        with pytest.raises(d.ClaimedTimeRefused) as refused:
            d.check_claimed_time(claimed, **bounds)
        assert refused.value.code == code


def _offer(**overrides: object) -> d.Offer:
    values: dict[str, object] = {
        "offer_id": "of-1",
        "partner_id": "p-1",
        "title": "Free dessert",
        "valid_from": NOW - timedelta(days=1),
        "valid_until": NOW + timedelta(days=1),
        "validation_method": d.OfferValidation.PIN,
        "eligible_tiers": ("gold",),
        "eligible_segments": ("students",),
        **overrides,
    }
    return d.Offer(**values)  # type: ignore[arg-type]


def test_a_partner_claim_stands_alone_only_for_members_orchard_knows_nothing_about() -> None:
    token, tokens = d.resolve_segment(_offer(), claimed="gold", known=None)
    assert (token, tokens) == ("gold", ("gold",))
    token, tokens = d.resolve_segment(_offer(), claimed=None, known=d.MemberSegments("m-1"))
    assert (token, tokens) == (None, ())


def test_a_claimed_tier_contradicting_the_members_known_tier_is_refused() -> None:
    known = d.MemberSegments("m-1", tier="silver", segments=("seniors",))
    with pytest.raises(d.SegmentContradicted) as refused:
        d.resolve_segment(_offer(), claimed="gold", known=known)
    assert refused.value.code == "segment_mismatch"


def test_eligibility_is_judged_on_the_members_known_tier_and_segments() -> None:
    known = d.MemberSegments("m-1", tier="silver", segments=("students",))
    token, tokens = d.resolve_segment(_offer(), claimed=None, known=known)
    assert token == "students"
    _offer().check_redeemable(at=NOW, member_tokens=tokens)
    silver_only = d.MemberSegments("m-2", tier="silver")
    token, tokens = d.resolve_segment(_offer(), claimed="silver", known=silver_only)
    assert token == "silver"
    with pytest.raises(d.NotEligible):
        _offer().check_redeemable(at=NOW, member_tokens=tokens)


def test_a_peppered_pin_hash_is_useless_without_the_pepper():
    hashed = d.hash_pin("480317", b"the-pepper")

    assert hashed.startswith(d.PEPPERED)
    assert d.pin_matches(hashed, "480317", b"the-pepper")
    assert not d.pin_matches(hashed, "480317", b"another-pepper")
    assert not d.pin_matches(hashed, "480317")
    assert not d.pin_matches(hashed.removeprefix(d.PEPPERED), "480317"), "the argon2 hash is of the keyed PIN"


def test_a_pin_hashed_before_the_pepper_keeps_verifying_with_it():
    hashed = d.hash_pin("480317")

    assert d.pin_matches(hashed, "480317", b"the-pepper")
    assert not d.pin_matches(hashed, "480318", b"the-pepper")
