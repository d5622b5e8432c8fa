"""Per-partner and per-member rate limits on offer validations and one-time code sends.

Counters are fixed-window rows in Postgres (`rate_limit_windows`), so every replica of the service
counts against the same limit. A refused request is answered 429 with `Retry-After`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chassis.db import Connection
from chassis.problems import Problem
from services.redemption.offers import repository as repo
from services.redemption.settings import RedemptionSettings


@dataclass(frozen=True)
class RateLimit:
    scope: str
    limit: int
    window_s: int
    what: str
    """What is counted, for the refusal's message."""


def partner_validations(cfg: RedemptionSettings) -> RateLimit:
    """Redemption attempts and code checks by one partner (each one tests a PIN or a code)."""
    return RateLimit("partner_validations", cfg.partner_validations_per_minute, 60, "validations")


def partner_otp_sends(cfg: RedemptionSettings) -> RateLimit:
    return RateLimit("partner_otp_sends", cfg.partner_otp_sends_per_minute, 60, "one-time codes sent")


def member_otp_sends(cfg: RedemptionSettings) -> RateLimit:
    """Codes sent to one member, whichever partners ask: nobody floods a member's phone."""
    return RateLimit(
        "member_otp_sends", cfg.member_otp_sends_per_hour, 3600, "one-time codes sent to the member"
    )


async def enforce(conn: Connection, rate: RateLimit, subject: str) -> None:
    """Count one hit for `subject`, or raise a 429 when its window is full. Inside a transaction the
    hit is given back if the transaction rolls back."""
    wait_s = await repo.take_rate_limit_hit(
        conn, scope=rate.scope, subject=subject, limit=rate.limit, window_s=rate.window_s
    )
    if wait_s is None:
        return
    retry_after = max(math.ceil(wait_s), 1)
    raise Problem(
        429,
        "rate_limited",
        detail=f"Too many {rate.what} (at most {rate.limit} per {rate.window_s} s);"
        f" retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )
