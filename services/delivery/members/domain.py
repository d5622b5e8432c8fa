"""Directory rules, no I/O: which fields a change touches, and which channel reaches a member."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from chassis.inputs import NUL
from contracts.members import NotificationKind
from contracts.values import Channel

CONTACT_FIELDS: Final = ("name", "email", "phone")
FIELDS: Final = (*CONTACT_FIELDS, "locale", "preferred_channel", "opted_out", "employment_status")
"""The directory fields a change may set, in the order they are shown."""


class DirectoryError(Exception):
    """A change the directory refuses."""


class NulInEntry(DirectoryError):
    def __init__(self, field: str) -> None:
        super().__init__(f"{field} must not contain a NUL byte")
        self.field = field


def normalised(given: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a change sets (absent and null fields keep what the directory holds), as stored:
    enums as their values, opt-outs as a sorted list without repeats."""
    out: dict[str, Any] = {}
    for field in FIELDS:
        value = given.get(field)
        if value is None:
            continue
        if field == "opted_out":
            value = sorted({NotificationKind(kind).value for kind in value})
        elif hasattr(value, "value"):
            value = value.value
        if isinstance(value, str) and NUL in value:
            raise NulInEntry(field)
        out[field] = value
    return out


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The fields whose value `wanted` changes, in `FIELDS` order."""

    def held(field: str) -> Any:
        value = current[field]
        return sorted(value) if field == "opted_out" else value

    return [field for field in FIELDS if field in wanted and wanted[field] != held(field)]


def is_stale(changed_at: datetime | None, applied_at: datetime | None) -> bool:
    """An HR change older than the one already applied: the directory keeps the newer one."""
    return changed_at is not None and applied_at is not None and changed_at < applied_at


def address_for(channel: Channel, email: str | None, phone: str | None) -> str | None:
    return email if channel is Channel.EMAIL else phone


def reaching_channel(
    preferences: Sequence[Channel | None], email: str | None, phone: str | None
) -> Channel | None:
    """The first of `preferences` the member can be reached on, else any channel with an address on
    file (e-mail first); None when there is none."""
    for channel in (*preferences, Channel.EMAIL, Channel.SMS):
        if channel is not None and address_for(channel, email, phone):
            return channel
    return None


def wants(opted_out: Sequence[str] | None, kind: NotificationKind) -> bool:
    return kind.value not in (opted_out or ())
