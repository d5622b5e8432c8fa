"""The voucher rules, free of I/O: code generation, masking, expiry, campaign lifecycle, redemption."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from contracts.vouchers import CampaignStatus, CodeStatus, ExpiryKind, ExpiryPolicy

# Digits and capitals without the characters people confuse: 0/O/D/Q, 1/I/L, 5/S, 2/Z, 8/B, U/V.
DEFAULT_ALPHABET = "34679ACEFGHJKMNPRTWXY"
LOOKALIKES = frozenset("0O1IL5S2Z8BUVDQ")
MIN_LENGTH = 6
MAX_LENGTH = 32
MAX_PREFIX = 16


class VoucherError(Exception):
    """Base of every rule the voucher service refuses by."""


class CampaignNotFound(VoucherError):
    pass


class CampaignExists(VoucherError):
    pass


class CampaignStateError(VoucherError):
    """The campaign's status does not allow this change."""


class CampaignRuleError(VoucherError):
    """A change that would break a campaign rule (e.g. budget below what is already used)."""


class CodeNotFound(VoucherError):
    pass


class CodeOperationRefused(VoucherError):
    """An operation not allowed for a code in its current status."""


class PointsCampaignHasNoCodes(VoucherError):
    pass


class InvalidGeneration(VoucherError):
    pass


class IssueFailure(StrEnum):
    """Why an order could not get a code (`voucher.issue_failed` reason)."""

    OUT_OF_STOCK = "out_of_stock"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CAMPAIGN_PAUSED = "campaign_paused"
    CAMPAIGN_ENDED = "campaign_ended"
    UNKNOWN_CAMPAIGN = "unknown_campaign"
    POINTS_CAMPAIGN = "points_campaign"


class Refusal(StrEnum):
    """Why a partner's redemption was refused: stable machine-readable reason codes."""

    UNKNOWN_CODE = "unknown_code"
    EXPIRED = "code_expired"
    FLAGGED = "code_flagged"
    FULLY_REDEEMED = "code_fully_redeemed"
    NOT_ISSUED = "code_not_issued"
    TEST_CODE_IN_LIVE = "test_code_in_live_mode"
    LIVE_CODE_IN_TEST = "live_code_in_test_mode"
    PARTIAL_NOT_ALLOWED = "partial_redemption_not_allowed"
    AMOUNT_EXCEEDS_REMAINING = "amount_exceeds_remaining_value"
    NOT_YOUR_CAMPAIGN = "partner_not_allowed"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"


class RedemptionRefused(VoucherError):
    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- code generation -------------------------------------------------------------------------------


def validate_alphabet(alphabet: str) -> str:
    if len(alphabet) < 10 or len(set(alphabet)) != len(alphabet):
        raise InvalidGeneration("the alphabet needs at least 10 distinct characters")
    if not alphabet.isascii() or not alphabet.isalnum():
        raise InvalidGeneration("the alphabet may hold only ASCII letters and digits")
    confusing = sorted(LOOKALIKES.intersection(alphabet.upper()))
    if confusing:
        raise InvalidGeneration(f"the alphabet holds look-alike characters: {''.join(confusing)}")
    return alphabet


def validate_generation(count: int, length: int, prefix: str, alphabet: str) -> None:
    if count < 1:
        raise InvalidGeneration("count must be at least 1")
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise InvalidGeneration(f"length must be between {MIN_LENGTH} and {MAX_LENGTH}")
    if len(prefix) > MAX_PREFIX or not all(c.isascii() and (c.isalnum() or c == "-") for c in prefix):
        raise InvalidGeneration(f"prefix: up to {MAX_PREFIX} ASCII letters, digits or '-'")
    validate_alphabet(alphabet)
    # Random part's space must dwarf the request, or uniqueness would take endless retries.
    if len(alphabet) ** length < count * 1000:
        raise InvalidGeneration("too many codes for this length and alphabet: make them longer")


def random_characters(count: int, alphabet: str, randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """`count` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias)."""
    size = len(alphabet)
    usable = 256 - 256 % size  # bytes below this map evenly onto the alphabet
    table = bytes(ord(alphabet[b % size]) if b < usable else 0 for b in range(256))
    rejected = bytes(range(usable, 256))
    out = bytearray()
    while len(out) < count:
        need = count - len(out)
        chunk = randbytes(need + need // 4 + 16).translate(table, rejected)
        out += chunk[:need]
    return out.decode("ascii")


def generate_codes(
    count: int,
    *,
    length: int,
    prefix: str = "",
    alphabet: str = DEFAULT_ALPHABET,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> list[str]:
    """`count` distinct codes: `prefix` + `length` random characters of `alphabet`."""
    validate_generation(count, length, prefix, alphabet)
    codes: dict[str, None] = {}
    while len(codes) < count:
        need = count - len(codes)
        chars = random_characters(need * length, alphabet, randbytes)
        for i in range(0, need * length, length):
            codes[prefix + chars[i : i + length]] = None
    return list(codes)


def mask(code: str) -> str:
    """What may be shown and logged: the last four characters only."""
    return "****-" + code[-4:] if len(code) > 4 else "****"


# --- expiry --------------------------------------------------------------------------------------


def expiry_on_issue(
    policy: ExpiryPolicy, issued_at: datetime, own_expiry: datetime | None
) -> datetime | None:
    """A code's expiry once issued: the earliest of its own (imported/fixed) and the campaign's policy."""
    candidates = [own_expiry] if own_expiry is not None else []
    if policy.kind is ExpiryKind.FIXED_DATE and policy.expires_at is not None:
        candidates.append(policy.expires_at)
    elif policy.kind is ExpiryKind.DAYS_AFTER_ISSUE and policy.days is not None:
        candidates.append(issued_at + timedelta(days=policy.days))
    return min(candidates) if candidates else None


EXTENDABLE = frozenset(
    {
        CodeStatus.AVAILABLE,
        CodeStatus.RECOVERED,
        CodeStatus.ISSUED,
        CodeStatus.PARTIALLY_REDEEMED,
        CodeStatus.EXPIRED,
    }
)
RECOVERABLE = frozenset({CodeStatus.ISSUED, CodeStatus.EXPIRED})
ISSUABLE = frozenset({CodeStatus.AVAILABLE, CodeStatus.RECOVERED})


# --- campaign lifecycle --------------------------------------------------------------------------

_TRANSITIONS: dict[str, tuple[frozenset[CampaignStatus], CampaignStatus]] = {
    "pause": (frozenset({CampaignStatus.ACTIVE}), CampaignStatus.PAUSED),
    "resume": (frozenset({CampaignStatus.PAUSED}), CampaignStatus.ACTIVE),
    "end": (frozenset({CampaignStatus.ACTIVE, CampaignStatus.PAUSED}), CampaignStatus.ENDED),
}


def next_campaign_status(current: CampaignStatus, action: str) -> CampaignStatus:
    allowed, target = _TRANSITIONS[action]
    if current not in allowed:
        raise CampaignStateError(f"a {current} campaign cannot {action}")
    return target


def issue_blocker(status: CampaignStatus) -> IssueFailure | None:
    if status is CampaignStatus.PAUSED:
        return IssueFailure.CAMPAIGN_PAUSED
    if status is CampaignStatus.ENDED:
        return IssueFailure.CAMPAIGN_ENDED
    return None


# --- redemption ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeForRedemption:
    status: CodeStatus
    test: bool
    remaining_value: Decimal
    expires_at: datetime | None


@dataclass(frozen=True)
class RedemptionDecision:
    amount: Decimal
    remaining_value: Decimal
    status: CodeStatus

    @property
    def partial(self) -> bool:
        return self.remaining_value > 0


def decide_redemption(
    code: CodeForRedemption, *, amount: Decimal | None, allow_partial: bool, test_mode: bool, now: datetime
) -> RedemptionDecision:
    """Redeem `amount` (default: all that is left) or raise `RedemptionRefused` with its reason."""
    if code.test and not test_mode:
        raise RedemptionRefused(Refusal.TEST_CODE_IN_LIVE, "a test code is redeemable only in test mode")
    if not code.test and test_mode:
        raise RedemptionRefused(Refusal.LIVE_CODE_IN_TEST, "test mode accepts only test codes")
    if code.status is CodeStatus.FLAGGED:
        raise RedemptionRefused(Refusal.FLAGGED, "the code is flagged and cannot be redeemed")
    if code.status is CodeStatus.REDEEMED or code.remaining_value <= 0:
        raise RedemptionRefused(Refusal.FULLY_REDEEMED, "the code was already fully redeemed")
    if code.status is CodeStatus.EXPIRED or (code.expires_at is not None and code.expires_at <= now):
        raise RedemptionRefused(Refusal.EXPIRED, "the code has expired")
    redeemable = {CodeStatus.ISSUED, CodeStatus.PARTIALLY_REDEEMED}
    if code.test:
        redeemable |= ISSUABLE
    if code.status not in redeemable:
        raise RedemptionRefused(Refusal.NOT_ISSUED, "the code was not issued to anyone")
    wanted = code.remaining_value if amount is None else amount
    if wanted > code.remaining_value:
        raise RedemptionRefused(
            Refusal.AMOUNT_EXCEEDS_REMAINING, f"only {code.remaining_value} is left on the code"
        )
    if wanted < code.remaining_value and not allow_partial:
        raise RedemptionRefused(
            Refusal.PARTIAL_NOT_ALLOWED, "this campaign's codes are redeemed in full only"
        )
    remaining = code.remaining_value - wanted
    return RedemptionDecision(
        amount=wanted,
        remaining_value=remaining,
        status=CodeStatus.PARTIALLY_REDEEMED if remaining > 0 else CodeStatus.REDEEMED,
    )
