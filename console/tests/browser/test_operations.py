"""The Operations screen in a real browser against the real stack: an operator signed in through the
provider sees every service's consumer lag, finds a poison message among the dead letters, previews
its replay and replays it to the consumer group that failed it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from chassis.auth import issue_token
from chassis.testing import produce

from .conftest import EMPTY_CAMPAIGN, ConsoleStack, SignIn, shot

CANCEL_GROUP = "orchard.order.cancel-requests"


def _poison(bootstrap: str) -> str:
    """An `order.cancel_requested` naming no order: it breaks its contract, so the order service
    dead-letters it. Sent from a thread of its own: Playwright's loop runs in this one."""
    event_id = str(uuid.uuid4())
    envelope = {
        "event_id": event_id,
        "event_type": "order.cancel_requested",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "browser-suite",
        "correlation_id": event_id,
        "causation_id": None,
        "data": {"reason": "names no order"},
    }
    message: list[tuple[bytes | None, bytes | None]] = [(b"poison", json.dumps(envelope).encode())]
    sender = threading.Thread(
        target=asyncio.run, args=(produce(bootstrap, "order.cancel_requested", message),)
    )
    sender.start()
    sender.join()
    return event_id


def _dead_lettered(console_stack: ConsoleStack, event_id: str) -> dict[str, Any]:
    """The letter as the order service lists it, once it has dead-lettered the event."""
    headers = {"Authorization": f"Bearer {issue_token(role='ops', sub='browser-suite')}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{console_stack.urls['order']}/v1/ops/dlq",
            params={"group": CANCEL_GROUP, "limit": 500},
            headers=headers,
            timeout=30,
        )
        answer.raise_for_status()
        found = [d for d in answer.json()["items"] if d["event_id"] == event_id]
        if found:
            return dict(found[0])
        time.sleep(0.5)
    raise AssertionError(f"the order service never dead-lettered {event_id}")


def test_ops_sees_consumer_lag_and_replays_a_dead_letter_after_its_preview(
    console_stack: ConsoleStack, sign_in: SignIn
) -> None:
    event_id = _poison(console_stack.config.bootstrap_servers)
    letter = _dead_lettered(console_stack, event_id)
    assert letter["error_code"] == "contract_violation"

    page = sign_in("ops")
    page.goto(console_stack.console_url + "/operations")
    lag = page.get_by_test_id("consumer-lag")
    assert lag.locator("tbody tr", has_text=CANCEL_GROUP).count() == 1
    assert lag.locator("tbody tr", has_text="orchard.voucher.").count() >= 1
    assert page.get_by_test_id("outbox").locator("tbody tr").count() == 6
    row = page.get_by_test_id("dead-letters").locator("tbody tr", has_text="order.cancel_requested").first
    assert "contract_violation" in row.inner_text()
    shot(page, "operations")

    page.get_by_role("button", name=f"Replay {event_id}").click()
    preview = page.get_by_test_id("replay-preview")
    assert f"1 dead letter would be replayed to {CANCEL_GROUP}" in preview.inner_text()
    assert event_id in preview.inner_text()
    shot(page, "operations-replay-preview")

    page.get_by_role("button", name="Confirm: replay 1").click()
    page.wait_for_url(console_stack.console_url + "/operations")
    assert f"Replayed 1 dead letter to {CANCEL_GROUP}." in page.locator(".flash.ok").inner_text()
    replayed = page.get_by_test_id("dead-letters").locator("tbody tr", has_text="replayed")
    assert replayed.count() == 1
    shot(page, "operations-replayed")


def test_an_admin_approves_a_budget_increase_another_person_asked_for(
    console_stack: ConsoleStack, sign_in: SignIn
) -> None:
    maker = {"Authorization": f"Bearer {issue_token(role='ops', sub='browser-suite-maker')}"}
    asked = httpx.patch(
        f"{console_stack.urls['voucher']}/v1/campaigns/{EMPTY_CAMPAIGN}",
        json={"budget": "2000.00"},
        headers=maker,
        timeout=30,
    )
    assert asked.status_code == 202, asked.text
    approval_id = asked.json()["approval_id"]

    page = sign_in("admin")
    page.goto(console_stack.console_url + "/operations")
    row = page.get_by_test_id("approvals").locator("tbody tr", has_text="browser-suite-maker")
    assert "voucher" in row.inner_text()
    shot(page, "operations-approvals")
    row.get_by_role("button", name="Approve").click()
    page.wait_for_url(console_stack.console_url + "/operations")
    assert f"Approval {approval_id}: approved." in page.locator(".flash.ok").inner_text()
    assert page.get_by_test_id("approvals").locator("tbody tr", has_text="browser-suite-maker").count() == 0
    campaign = httpx.get(
        f"{console_stack.urls['voucher']}/v1/campaigns/{EMPTY_CAMPAIGN}", headers=maker, timeout=30
    )
    assert campaign.json()["budget"] == "2000.00"
