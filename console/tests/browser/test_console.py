"""People sign in through the real identity provider and do their main jobs in a real browser."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from console.tests.browser.conftest import EMPTY_CAMPAIGN, ConsoleStack, SignIn, shot


def test_ops_sees_exact_counts_and_cancels_a_pending_order_with_a_reason(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page = sign_in("ops")
    expect(page.get_by_test_id("who")).to_contain_text("ops")
    shot(page, "home-ops")
    summary = httpx.get(
        f"{console_stack.urls['order']}/v1/orders/summary", headers=console_stack.admin()
    ).json()

    page.get_by_role("link", name="Orders").first.click()
    expect(page.get_by_role("heading", name="Orders")).to_be_visible()
    pending = summary["by_state"]["pending"]
    expect(page.get_by_test_id("tab-pending")).to_contain_text(str(pending))
    shot(page, "orders")

    page.get_by_label("Campaign").fill(EMPTY_CAMPAIGN)
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("orders-total")).to_contain_text("1 pending order match")
    page.locator("table a").first.click()
    expect(page.get_by_test_id("order-state")).to_have_text("pending")
    shot(page, "order")

    page.get_by_label("Reason").fill("Duplicate allocation, raised by the browser suite")
    page.get_by_role("button", name="Cancel order").click()
    expect(page.get_by_test_id("order-state")).to_have_text("cancelled")
    expect(page.get_by_role("status")).to_contain_text("cancelled")
    expect(page.get_by_test_id("timeline")).to_contain_text("Duplicate allocation")
    shot(page, "order-cancelled")

    truth = httpx.get(
        f"{console_stack.urls['order']}/v1/orders/{console_stack.pending_order_id}",
        headers=console_stack.admin(),
    ).json()
    assert truth["state"] == "cancelled"


def test_a_support_agent_reads_orders_but_is_offered_no_cancel(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page = sign_in("agent")
    page.goto(f"{console_stack.console_url}/orders/{console_stack.pending_order_id}")
    expect(page.get_by_test_id("timeline")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel order")).to_have_count(0)
    expect(page.get_by_role("link", name="Operations")).to_have_count(0)


def test_a_member_sees_their_own_wallet_and_cannot_open_another_members(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page = sign_in("member")
    expect(page.get_by_role("link", name="Orders")).to_have_count(0)
    page.get_by_role("link", name="My wallet").first.click()
    expect(page.get_by_role("heading", name="My wallet")).to_be_visible()
    _reload_until(page, lambda: "500" in page.get_by_test_id("balance").inner_text())
    shot(page, "member-wallet")

    answer = page.goto(f"{console_stack.console_url}/members/demo-member-02")
    assert answer is not None
    assert answer.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    shot(page, "member-other-wallet-refused")

    refused = page.goto(f"{console_stack.console_url}/orders")
    assert refused is not None
    assert refused.status == 403


def test_admin_sees_every_service_healthy(sign_in: SignIn, console_stack: ConsoleStack) -> None:
    page = sign_in("admin")
    page.get_by_role("link", name="Operations").first.click()
    rows = page.get_by_test_id("health").locator("tbody tr")
    expect(rows).to_have_count(6)
    expect(page.get_by_test_id("health")).not_to_contain_text("no answer")
    shot(page, "operations")


def test_orders_work_at_phone_width(sign_in: SignIn, console_stack: ConsoleStack) -> None:
    page = sign_in("auditor", width=390)
    page.goto(f"{console_stack.console_url}/orders?state=completed")
    expect(page.get_by_test_id("tab-completed")).to_have_attribute("aria-selected", "true")
    shot(page, "orders-phone")


def test_signing_out_ends_the_session(sign_in: SignIn, console_stack: ConsoleStack) -> None:
    page = sign_in("finance")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{console_stack.console_url}/signed-out")
    expect(page.get_by_role("status")).to_contain_text("signed out")
    page.goto(f"{console_stack.console_url}/members")
    expect(page.locator("#username")).to_be_visible()  # back at the provider's sign-in form


def _reload_until(page: Any, condition: Any, attempts: int = 60) -> None:
    """Reload until `condition()` holds: the wallet learns points from Kafka, a moment after the award."""
    for _ in range(attempts):
        if condition():
            return
        page.wait_for_timeout(500)
        page.reload()
    assert condition()
