"""Offer rules and member validation (one-time codes, PINs): pure, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


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

    def is_open_at(self, at: datetime) -> bool:
        return self.valid_from <= at < self.valid_until

    def check_redeemable(self, *, at: datetime, segment_token: str | None) -> None:
        """Raise the reason a redemption at `at` by a member with this token is refused."""
        if not self.is_open_at(at):
            raise OutsideValidityWindow(
                f"offer {self.offer_id} is valid from {self.valid_from} to {self.valid_until}"
            )
        allowed = {*self.eligible_tiers, *self.eligible_segments}
        if allowed and segment_token not in allowed:
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

PIN_PATTERN = re.compile(r"^[0-9]{4,8}$")
_hasher = PasswordHasher()


class WeakPin(ValueError):
    """A PIN that is too easy to guess."""


def check_new_pin(pin: str) -> None:
    if not PIN_PATTERN.fullmatch(pin):
        raise WeakPin("a PIN is 4 to 8 digits")
    if len(set(pin)) == 1 or pin in "0123456789" or pin in "9876543210":
        raise WeakPin("a PIN may not be one repeated digit or a straight run")


def hash_pin(pin: str) -> str:
    return _hasher.hash(pin)


def pin_matches(pin_hash: str, pin: str) -> bool:
    try:
        return _hasher.verify(pin_hash, pin)
    except (VerificationError, InvalidHashError):
        return False


class PinOutcome(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"
    LOCKED = "locked"


@dataclass(frozen=True)
class PinState:
    failed_attempts: int = 0
    locked_until: datetime | None = None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def after_pin_attempt(
    state: PinState, *, matched: bool, now: datetime, max_attempts: int, lockout: timedelta
) -> tuple[PinState, PinOutcome]:
    """Count wrong PINs; the last allowed wrong one locks the PIN for `lockout`. A lock ignores the PIN."""
    if state.locked_at(now):
        return state, PinOutcome.LOCKED
    if matched:
        return PinState(), PinOutcome.VERIFIED
    failed = state.failed_attempts + 1
    if failed >= max_attempts:
        return PinState(0, now + lockout), PinOutcome.LOCKED
    return PinState(failed, None), PinOutcome.WRONG
