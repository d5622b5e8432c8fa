"""Agent actions under the portal: goodwill limits and the ticket-or-reason rule. No I/O."""

from __future__ import annotations

from dataclasses import dataclass


class AgentActionError(Exception):
    """An agent action the rules refuse; the message is written for the caller."""


class JustificationRequired(AgentActionError):
    def __init__(self) -> None:
        super().__init__("an agent action needs a ticket_id or a reason")


class GoodwillNotAllowed(AgentActionError):
    def __init__(self, roles: str) -> None:
        super().__init__(f"none of the roles {roles} may make goodwill adjustments")


class GoodwillLimitExceeded(AgentActionError):
    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class GoodwillLimit:
    """At most `per_adjustment` points at once and `per_day` points per agent and day."""

    per_adjustment: int
    per_day: int

    def __post_init__(self) -> None:
        if self.per_adjustment <= 0 or self.per_day < self.per_adjustment:
            raise ValueError(
                "goodwill limits are positive and the daily one is at least the per-adjustment one"
            )


def require_justification(ticket_id: str | None, reason: str | None) -> None:
    if not ticket_id and not (reason and reason.strip()):
        raise JustificationRequired()


def most_generous(limits: dict[str, GoodwillLimit], roles: list[str]) -> GoodwillLimit:
    """The largest limit any of the caller's roles grants (a token may carry several roles)."""
    granted = [limits[role] for role in roles if role in limits]
    if not granted:
        raise GoodwillNotAllowed(", ".join(sorted(roles)))
    return max(granted, key=lambda limit: (limit.per_day, limit.per_adjustment))


def check_goodwill(limit: GoodwillLimit, *, points: int, granted_today: int) -> None:
    """Refuse an adjustment above the per-adjustment limit or one that would pass the daily limit."""
    if points <= 0:
        raise GoodwillLimitExceeded("a goodwill adjustment is a positive number of points", limit=0)
    if points > limit.per_adjustment:
        raise GoodwillLimitExceeded(
            f"{points} points is above the limit of {limit.per_adjustment} per adjustment",
            limit=limit.per_adjustment,
        )
    if granted_today + points > limit.per_day:
        left = max(limit.per_day - granted_today, 0)
        raise GoodwillLimitExceeded(
            f"{points} points would pass the daily limit of {limit.per_day} ({left} left today)",
            limit=limit.per_day,
        )
