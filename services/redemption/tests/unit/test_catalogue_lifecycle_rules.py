from __future__ import annotations

import pytest

from services.redemption.lifecycle import (
    CatalogueStatus,
    LifecycleAction,
    LifecycleRefused,
    after,
    check_editable,
)

ACTIVE, PAUSED, ENDED = CatalogueStatus.ACTIVE, CatalogueStatus.PAUSED, CatalogueStatus.ENDED


@pytest.mark.parametrize(
    ("status", "action", "expected"),
    [
        (ACTIVE, LifecycleAction.PAUSE, PAUSED),
        (PAUSED, LifecycleAction.RESUME, ACTIVE),
        (ACTIVE, LifecycleAction.END, ENDED),
        (PAUSED, LifecycleAction.END, ENDED),
    ],
)
def test_an_entry_pauses_resumes_and_ends_from_the_states_that_allow_it(
    status: CatalogueStatus, action: LifecycleAction, expected: CatalogueStatus
) -> None:
    assert after(status, action, "offer o-1") is expected


@pytest.mark.parametrize(
    ("status", "action", "code"),
    [
        (ACTIVE, LifecycleAction.RESUME, "already_active"),
        (PAUSED, LifecycleAction.PAUSE, "already_paused"),
        (ENDED, LifecycleAction.RESUME, "ended"),
        (ENDED, LifecycleAction.PAUSE, "ended"),
        (ENDED, LifecycleAction.END, "ended"),
    ],
)
def test_a_change_the_status_does_not_allow_is_refused_with_its_reason(
    status: CatalogueStatus, action: LifecycleAction, code: str
) -> None:
    with pytest.raises(LifecycleRefused) as refused:
        after(status, action, "offer o-1")
    assert refused.value.code == code


def test_only_an_ended_entry_cannot_be_edited() -> None:
    check_editable(ACTIVE, "reward r-1")
    check_editable(PAUSED, "reward r-1")
    with pytest.raises(LifecycleRefused):
        check_editable(ENDED, "reward r-1")
