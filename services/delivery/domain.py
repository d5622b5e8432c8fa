"""Delivery rules, free of I/O: when a delivery may be sent, how a failed attempt is classified and
what follows it (retry with backoff, fallback to another channel, or a final failure), and when a
resend is allowed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from contracts.values import Channel


class DeliveryStatus(StrEnum):
    WAITING = "waiting"
    """Only one half of the join is here (recipient details or the code)."""
    QUEUED = "queued"
    """Both halves are here; due at `next_attempt_at`."""
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    """Final failure: waits for review (corrected details, resend)."""
    CANCELLED = "cancelled"


class AttemptOutcome(StrEnum):
    PENDING = "pending"
    """Claimed, not yet started: nothing has left."""
    IN_FLIGHT = "in_flight"
    """Started: the provider call is under way (or the worker vanished during it)."""
    SUCCEEDED = "succeeded"
    REPEAT = "repeat"
    """The provider took it, but another attempt of the same message (same idempotency key: send
    round and channel) had already been recorded as succeeded: a late recording of a lapsed claim,
    or the re-send that followed it. The provider answered with the one message it holds."""
    FAILED = "failed"
    UNKNOWN = "unknown"
    """The process stopped between sending and recording: the message may or may not have left."""
    SKIPPED = "skipped"
    """The order was cancelled between claiming and sending: nothing was sent."""


class ReasonCode(StrEnum):
    INVALID_NUMBER = "invalid_number"
    WHATSAPP_UNREACHABLE = "whatsapp_unreachable"
    BOUNCED = "bounced"
    PROVIDER_REJECTED = "provider_rejected"
    PROVIDER_AUTH_FAILED = "provider_auth_failed"
    RATE_LIMITED = "rate_limited"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_TIMEOUT = "provider_timeout"
    PROVIDER_UNREACHABLE = "provider_unreachable"
    SMTP_DEFERRED = "smtp_deferred"
    OUTCOME_UNKNOWN = "outcome_unknown"
    NO_CONTACT = "no_contact"
    CODE_UNAVAILABLE = "code_unavailable"
    TEMPLATE_ERROR = "template_error"


TRANSIENT_REASONS = frozenset(
    {
        ReasonCode.RATE_LIMITED,
        ReasonCode.PROVIDER_ERROR,
        ReasonCode.PROVIDER_TIMEOUT,
        ReasonCode.PROVIDER_UNREACHABLE,
        ReasonCode.SMTP_DEFERRED,
        ReasonCode.OUTCOME_UNKNOWN,
    }
)


@dataclass(frozen=True)
class SendResult:
    """What a channel adapter reports about one attempt. `response` is a short summary of the
    provider's answer, safe to store and show: no contact details, no code."""

    ok: bool
    response: str
    provider_message_id: str | None = None
    reason_code: ReasonCode | None = None
    retry_after_s: float | None = None
    """The provider asked for this pause (HTTP Retry-After)."""

    @property
    def retryable(self) -> bool:
        return self.reason_code in TRANSIENT_REASONS

    @classmethod
    def success(cls, response: str, provider_message_id: str | None) -> SendResult:
        return cls(True, response, provider_message_id)

    @classmethod
    def failure(cls, reason: ReasonCode, response: str, retry_after_s: float | None = None) -> SendResult:
        return cls(False, response, None, reason, retry_after_s)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    """Attempts per channel (per send round) before a transient failure becomes final."""
    base_delay_s: float = 2.0
    max_delay_s: float = 300.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """Exponential backoff with full jitter after the `attempt`-th failure (1-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** max(attempt - 1, 0))
        return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))


FALLBACK_ORDER: tuple[Channel, ...] = (Channel.WHATSAPP, Channel.SMS, Channel.EMAIL)


@dataclass(frozen=True)
class Contacts:
    email: str | None
    phone: str | None

    def reaches(self, channel: Channel) -> bool:
        return bool(self.email) if channel is Channel.EMAIL else bool(self.phone)


def fallback_channel(
    current: Channel, tried: frozenset[Channel], contacts: Contacts, allowed: bool
) -> Channel | None:
    """The next channel after a permanent failure on `current` (WhatsApp → SMS → email), or None."""
    if not allowed:
        return None
    after = FALLBACK_ORDER[FALLBACK_ORDER.index(current) + 1 :]
    for channel in after:
        if channel not in tried and channel != current and contacts.reaches(channel):
            return channel
    return None


@dataclass(frozen=True)
class Retry:
    at: datetime


@dataclass(frozen=True)
class Fallback:
    channel: Channel


@dataclass(frozen=True)
class GiveUp:
    pass


Next = Retry | Fallback | GiveUp


def after_failure(
    result: SendResult,
    *,
    channel_attempts: int,
    policy: RetryPolicy,
    now: datetime,
    current: Channel,
    tried: frozenset[Channel],
    contacts: Contacts,
    fallback_allowed: bool,
    rng: random.Random | None = None,
) -> Next:
    """What follows a failed attempt: transient failures retry until the limit, permanent ones stop
    at once and fall back to the next channel when the campaign allows it and a contact is known."""
    if result.retryable and channel_attempts < policy.max_attempts:
        delay = policy.delay(channel_attempts, rng)
        asked = timedelta(seconds=min(result.retry_after_s or 0.0, policy.max_delay_s))
        return Retry(now + max(delay, asked))
    if not result.retryable:
        channel = fallback_channel(current, tried, contacts, fallback_allowed)
        if channel is not None:
            return Fallback(channel)
    return GiveUp()


RESEND_INTERVAL = timedelta(minutes=1)


class DeliveryError(Exception):
    """Base of the delivery service's typed errors (mapped to HTTP problems once)."""


class DeliveryNotFound(DeliveryError):
    pass


class ResendTooSoon(DeliveryError):
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(
            f"This delivery was resent less than a minute ago; try again in {retry_after.seconds}s."
        )
        self.retry_after = retry_after


class NotResendable(DeliveryError):
    """Cancelled, still in flight, or without its code or recipient."""


def check_resend(
    *, status: DeliveryStatus, has_code: bool, last_resend_at: datetime | None, now: datetime
) -> None:
    """Raise unless a resend may start now: at most one per minute per delivery."""
    if status is DeliveryStatus.CANCELLED:
        raise NotResendable("The order was cancelled: its voucher is never sent.")
    if status in (DeliveryStatus.WAITING,):
        raise NotResendable("This delivery has not got both its recipient and its code yet.")
    if status in (DeliveryStatus.QUEUED, DeliveryStatus.SENDING):
        raise NotResendable("This delivery is being sent right now.")
    if not has_code:
        raise NotResendable("The voucher code is no longer held for this delivery.")
    if last_resend_at is not None and now - last_resend_at < RESEND_INTERVAL:
        raise ResendTooSoon(RESEND_INTERVAL - (now - last_resend_at))
