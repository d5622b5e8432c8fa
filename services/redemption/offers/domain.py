"""Offer rules and member validation (one-time codes, PINs): pure, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.redemption.lifecycle import CatalogueStatus


class OfferChannel(StrEnum):
    IN_STORE = "in_store"
    ONLINE = "online"
    APP = "app"


class OfferValidation(StrEnum):
    ONE_TIME_CODE = "one_time_code"
    PIN = "pin"


class OfferError(Exception):
    """An offer redemption that cannot go ahead; `code` is its stable reason."""

    code = "offer_refused"


class OutsideValidityWindow(OfferError):
    code = "outside_validity_window"


class OfferPaused(OfferError):
    code = "offer_paused"


class OfferEnded(OfferError):
    code = "offer_ended"


class NotEligible(OfferError):
    code = "segment_not_eligible"


class MemberLimitReached(OfferError):
    code = "member_limit_reached"


class OfferCapReached(OfferError):
    code = "offer_cap_reached"


@dataclass(frozen=True)
class Offer:
    offer_id: str
    partner_id: str
    title: str
    valid_from: datetime
    valid_until: datetime
    validation_method: OfferValidation
    eligible_tiers: tuple[str, ...] = ()
    eligible_segments: tuple[str, ...] = ()
    limit_per_member: int | None = None
    total_cap: int | None = None
    used: int = 0
    description: str | None = None
    status: CatalogueStatus = CatalogueStatus.ACTIVE

    def is_open_at(self, at: datetime) -> bool:
        return self.valid_from <= at < self.valid_until

    def check_redeemable(self, *, at: datetime, member_tokens: tuple[str, ...]) -> None:
        """Raise the reason a redemption at `at` by a member with these tier/segment tokens is refused."""
        if self.status is CatalogueStatus.ENDED:
            raise OfferEnded(f"offer {self.offer_id} has ended")
        if self.status is CatalogueStatus.PAUSED:
            raise OfferPaused(f"offer {self.offer_id} is paused by its partner or operations")
        if not self.is_open_at(at):
            raise OutsideValidityWindow(
                f"offer {self.offer_id} is valid from {self.valid_from} to {self.valid_until}"
            )
        allowed = {*self.eligible_tiers, *self.eligible_segments}
        if allowed and not allowed.intersection(member_tokens):
            raise NotEligible(f"offer {self.offer_id} is for other tiers or segments")


# One-time codes ------------------------------------------------------------------------------------

OTP_DIGITS = 6


def new_otp() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(OTP_DIGITS))


def otp_hash(key: bytes, record_id: uuid.UUID, code: str) -> str:
    """Keyed and bound to its redemption: a leaked table does not let anyone test six-digit guesses."""
    return hmac.new(key, f"{record_id}:{code}".encode(), hashlib.sha256).hexdigest()


class OtpOutcome(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"
    LOCKED = "locked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class OtpChallenge:
    record_id: uuid.UUID
    code_hash: str
    expires_at: datetime
    attempts: int = 0
    status: str = "open"

    def attempts_left(self, max_attempts: int) -> int:
        return max(max_attempts - self.attempts, 0)


def verify_otp(
    challenge: OtpChallenge, code: str, *, key: bytes, now: datetime, max_attempts: int
) -> tuple[OtpChallenge, OtpOutcome]:
    """The challenge after one attempt, and how the attempt went. Locked and expired stay so."""
    if challenge.status == "locked":
        return challenge, OtpOutcome.LOCKED
    if challenge.status == "expired" or now >= challenge.expires_at:
        return replace(challenge, status="expired"), OtpOutcome.EXPIRED
    if challenge.status == "verified":
        return challenge, OtpOutcome.VERIFIED
    if hmac.compare_digest(challenge.code_hash, otp_hash(key, challenge.record_id, code)):
        return replace(challenge, status="verified", attempts=challenge.attempts + 1), OtpOutcome.VERIFIED
    attempts = challenge.attempts + 1
    if attempts >= max_attempts:
        return replace(challenge, attempts=attempts, status="locked"), OtpOutcome.LOCKED
    return replace(challenge, attempts=attempts), OtpOutcome.WRONG


# PINs ----------------------------------------------------------------------------------------------

PIN_MIN_DIGITS = 6
PIN_MAX_DIGITS = 12
NEW_PIN_PATTERN = re.compile(rf"[0-9]{{{PIN_MIN_DIGITS},{PIN_MAX_DIGITS}}}")
_hasher = PasswordHasher()


class WeakPin(ValueError):
    """A PIN that is too easy to guess."""


def check_new_pin(pin: str) -> None:
    """Refuse a new PIN shorter than six digits, or one a guesser tries first. PINs set before the
    six-digit rule (four or five digits) keep verifying: only their hash is stored, so they cannot be
    checked or upgraded until the member changes them."""
    if not NEW_PIN_PATTERN.fullmatch(pin):
        raise WeakPin(f"a PIN is {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits")
    if len(set(pin)) == 1:
        raise WeakPin("a PIN may not be one repeated digit")
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    if steps in ({1}, {9}):
        raise WeakPin("a PIN may not be a straight run of digits, up or down")
    if pin == (pin[:2] * len(pin))[: len(pin)]:
        raise WeakPin("a PIN may not alternate two digits")


PEPPERED = "peppered$"
"""Prefix of a hash made from the PIN keyed with the pepper; hashes without it predate the pepper."""


def _peppered(pin: str, pepper: bytes) -> str:
    # The pepper lives outside the database: a dump of the hashes alone cannot be brute-forced.
    return hmac.new(pepper, pin.encode(), hashlib.sha256).hexdigest()


def hash_pin(pin: str, pepper: bytes | None = None) -> str:
    """An argon2 hash of the PIN, keyed with the pepper when one is given."""
    if pepper is None:
        return _hasher.hash(pin)
    return PEPPERED + _hasher.hash(_peppered(pin, pepper))


def pin_matches(pin_hash: str, pin: str, pepper: bytes | None = None) -> bool:
    """Whether `pin` is the one hashed; a hash from before the pepper is checked without it."""
    secret = pin
    if pin_hash.startswith(PEPPERED):
        if pepper is None:
            return False
        pin_hash, secret = pin_hash.removeprefix(PEPPERED), _peppered(pin, pepper)
    try:
        return _hasher.verify(pin_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


class PinOutcome(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"
    LOCKED = "locked"
    NOT_SET = "not_set"


# What a partner is told about any PIN failure: whether the member has a PIN, whether it is locked and
# whether the guess was wrong all look the same from outside. The precise outcome is audited.
PIN_REJECTED = "pin_rejected"


@dataclass(frozen=True)
class PinLockoutPolicy:
    max_attempts: int
    """Wrong PINs in a row that lock the PIN."""
    first_lockout: timedelta
    longest_lockout: timedelta
    """Each further lockout doubles the one before, up to this."""

    def lockout_after(self, lockouts: int) -> timedelta:
        """How long the `lockouts`-th lock lasts (1 is the first)."""
        doublings = min(max(lockouts - 1, 0), 32)
        return min(self.first_lockout * (1 << doublings), self.longest_lockout)


@dataclass(frozen=True)
class PinState:
    failed_attempts: int = 0
    locked_until: datetime | None = None
    lockouts: int = 0
    """Locks so far; an expired lock does not forget them, only a right PIN or the member does."""

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def after_pin_attempt(
    state: PinState, *, matched: bool, now: datetime, policy: PinLockoutPolicy
) -> tuple[PinState, PinOutcome]:
    """Count wrong PINs; the last allowed wrong one locks the PIN, each lock longer than the one before.
    A lock ignores the PIN. A right PIN clears the count and the lockouts."""
    if state.locked_at(now):
        return state, PinOutcome.LOCKED
    if matched:
        return PinState(), PinOutcome.VERIFIED
    failed = state.failed_attempts + 1
    if failed >= policy.max_attempts:
        lockouts = state.lockouts + 1
        return PinState(0, now + policy.lockout_after(lockouts), lockouts), PinOutcome.LOCKED
    return PinState(failed, None, state.lockouts), PinOutcome.WRONG


# Redemption time -----------------------------------------------------------------------------------


class ClaimedTimeRefused(ValueError):
    """A partner's `redeemed_at` outside what the service accepts; `code` says which way."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_claimed_time(
    claimed: datetime, *, now: datetime, max_backdate: timedelta, max_ahead: timedelta
) -> None:
    """A partner may say when the redemption happened (a till that was offline), but only a little in
    the past and hardly in the future; the service's own clock decides everything else."""
    if claimed > now + max_ahead:
        raise ClaimedTimeRefused("future", "redeemed_at is in the future")
    if claimed < now - max_backdate:
        raise ClaimedTimeRefused(
            "too_old", f"redeemed_at may be at most {int(max_backdate.total_seconds())} seconds ago"
        )


# Member tier and segments --------------------------------------------------------------------------


class SegmentContradicted(OfferError):
    code = "segment_mismatch"


@dataclass(frozen=True)
class MemberSegments:
    """The tier and segments Orchard itself holds for a member."""

    member_id: str
    tier: str | None = None
    segments: tuple[str, ...] = ()

    @property
    def tokens(self) -> tuple[str, ...]:
        return (*((self.tier,) if self.tier else ()), *self.segments)


def resolve_segment(
    offer: Offer, *, claimed: str | None, known: MemberSegments | None
) -> tuple[str | None, tuple[str, ...]]:
    """The token to record and the tokens eligibility is judged on. What Orchard knows about the member
    wins: a partner's claim it contradicts is refused, and without a claim the known tokens are used.
    Only for members Orchard knows nothing about does the partner's claim stand on its own."""
    if known is None or not known.tokens:
        return claimed, (claimed,) if claimed else ()
    if claimed is not None and claimed not in known.tokens:
        raise SegmentContradicted(f"the member's tier and segments do not include {claimed}")
    if claimed is not None:
        return claimed, known.tokens
    allowed = {*offer.eligible_tiers, *offer.eligible_segments}
    matching = [t for t in known.tokens if t in allowed]
    return (matching[0] if matching else known.tokens[0]), known.tokens
