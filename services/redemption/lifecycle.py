"""The life of a catalogue entry (a partner offer, a storefront reward): editable and redeemable while
`active`, held while `paused`, and `ended` for good. Pure, no I/O."""

from __future__ import annotations

from enum import StrEnum


class CatalogueStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


class LifecycleAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    END = "end"


class LifecycleRefused(Exception):
    """A change the entry's status does not allow; `code` is its stable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_NEXT = {
    (CatalogueStatus.ACTIVE, LifecycleAction.PAUSE): CatalogueStatus.PAUSED,
    (CatalogueStatus.PAUSED, LifecycleAction.RESUME): CatalogueStatus.ACTIVE,
    (CatalogueStatus.ACTIVE, LifecycleAction.END): CatalogueStatus.ENDED,
    (CatalogueStatus.PAUSED, LifecycleAction.END): CatalogueStatus.ENDED,
}

PAST_TENSE = {
    LifecycleAction.PAUSE: "paused",
    LifecycleAction.RESUME: "resumed",
    LifecycleAction.END: "ended",
}


def after(status: CatalogueStatus, action: LifecycleAction, what: str) -> CatalogueStatus:
    """The status `action` leads to, or why it is refused. Repeating a pause, a resume or an end is
    refused too, so that a caller learns the state it assumed was not the one there."""
    if status is CatalogueStatus.ENDED:
        raise LifecycleRefused("ended", f"{what} has ended; it can no longer change")
    try:
        return _NEXT[(status, action)]
    except KeyError:
        raise LifecycleRefused(f"already_{status.value}", f"{what} is already {status.value}") from None


def check_editable(status: CatalogueStatus, what: str) -> None:
    if status is CatalogueStatus.ENDED:
        raise LifecycleRefused("ended", f"{what} has ended; it can no longer be edited")
