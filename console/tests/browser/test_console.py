"""People sign in through the real identity provider and do their main jobs in a real browser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from console.tests.browser.conftest import (
    BULK_CAMPAIGN,
    EMPTY_CAMPAIGN,
    ConsoleStack,
    SignIn,
    create_campaign,
    place_order,
    shot,
)
from deploy.demo import VOUCHER_CAMPAIGN


def test_ops_sees_exact_counts_and_cancels_a_pending_order_with_a_reason(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page = sign_in("ops")
    expect(page.get_by_test_id("who")).to_contain_text("ops")
    shot(page, "home-ops")
    summary = console_stack.read("order", "/v1/orders/summary")

    page.get_by_role("link", name="Orders").first.click()
    expect(page.get_by_role("heading", name="Orders", exact=True)).to_be_visible()
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

    truth = console_stack.read("order", f"/v1/orders/{console_stack.pending_order_id}")
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


def _failed_delivery_queue(
    sign_in: SignIn, console_stack: ConsoleStack, order_id: str
) -> tuple[Any, Any, dict[str, Any]]:
    """An agent's failed-delivery queue, once it shows the order's failed delivery."""
    order = console_stack.read("order", f"/v1/orders/{order_id}")
    page = sign_in("agent")
    page.get_by_role("link", name="Deliveries").first.click()
    queue = page.get_by_test_id("failed-deliveries")
    _reload_until(page, lambda: order["booking_id"] in queue.inner_text())
    return page, queue, order


def test_an_agent_corrects_a_failed_delivery_and_it_is_delivered_exactly_once(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page, queue, order = _failed_delivery_queue(sign_in, console_stack, console_stack.bouncing_order_id)
    shot(page, "deliveries")

    queue.get_by_role("link", name=order["booking_id"]).click()
    expect(page.get_by_test_id("delivery-status")).to_have_text("failed")
    page.get_by_label("E-mail").fill("fixed-03@example.com")
    page.get_by_label("Note").fill("Typo in the address, confirmed by phone")
    page.get_by_role("button", name="Correct and resend").click()
    expect(page.get_by_role("status")).to_contain_text("Recipient corrected")
    _reload_until(page, lambda: page.get_by_test_id("delivery-status").inner_text() == "sent")
    shot(page, "delivery-resent")

    def mails_to_fixed_address() -> list[Path]:
        return [p for p in console_stack.mail_dir.glob("*.eml") if "fixed-03@example.com" in p.read_text()]

    _reload_until(page, lambda: bool(mails_to_fixed_address()))
    assert len(mails_to_fixed_address()) == 1


def test_ops_uploads_a_csv_and_watches_it_reach_orders(
    sign_in: SignIn, console_stack: ConsoleStack, tmp_path: Path
) -> None:
    header = "external_ref,member_id,name,email,channel,campaign_id,reward_type,amount,currency,reason"
    rows = [
        f"console-up-{n},demo-member-1{n},Upload Member {n},upload{n}@example.com,email,{VOUCHER_CAMPAIGN},"
        f"voucher,25.00,EUR,Console upload"
        for n in range(1, 4)
    ]
    rows.append(
        f"console-up-bad,demo-member-19,Bad Row,not-an-email,email,{VOUCHER_CAMPAIGN},voucher,25.00,EUR,x"
    )
    upload = tmp_path / "allocations.csv"
    upload.write_text("\n".join([header, *rows]) + "\n")

    page = sign_in("ops")
    page.get_by_role("link", name="Intake").first.click()
    shot(page, "intake")
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_label("Accept the valid rows").check()
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_test_id("batch-status")).to_have_text("completed", timeout=90_000)
    expect(page.get_by_text("3 accepted")).to_be_visible()
    expect(page.get_by_role("link", name="Download errors.csv")).to_be_visible()
    expect(page.get_by_test_id("batch-orders")).to_contain_text("Orders:")
    shot(page, "intake-batch-completed")


def test_finance_sees_campaign_stock(sign_in: SignIn, console_stack: ConsoleStack) -> None:
    page = sign_in("finance")
    page.get_by_role("link", name="Campaigns").first.click()
    table = page.get_by_test_id("campaigns")
    expect(table).to_contain_text(VOUCHER_CAMPAIGN)
    expect(table).to_contain_text(EMPTY_CAMPAIGN)
    shot(page, "campaigns")


def test_a_member_opens_a_ticket_and_an_agent_takes_it_up(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    member = sign_in("member")
    member.get_by_role("link", name="Support").first.click()
    member.get_by_label("Category").select_option("missing_delivery")
    member.get_by_label("What happened").fill("My coffee voucher never arrived")
    member.get_by_role("button", name="Open ticket").click()
    expect(member.get_by_role("status")).to_contain_text("Ticket opened")
    expect(member.get_by_test_id("tickets")).to_contain_text("demo-member-01")
    shot(member, "member-tickets")

    agent = sign_in("agent")
    agent.get_by_role("link", name="Support").first.click()
    tickets = agent.get_by_test_id("tickets")
    row = tickets.locator("tr", has_text="demo-member-01").first
    expect(row).to_contain_text("missing delivery")
    shot(agent, "support-queue")
    row.get_by_role("link").first.click()
    agent.get_by_role("button", name="Move to in progress").click()
    expect(agent.get_by_test_id("ticket-state")).to_have_text("in progress")
    agent.get_by_label("Comment").fill("Looking into the delivery now")
    agent.get_by_role("button", name="Add comment").click()
    expect(agent.get_by_test_id("ticket-timeline")).to_contain_text("Looking into the delivery now")
    shot(agent, "ticket")


def test_a_partner_sees_its_own_refused_redemption_and_finance_sees_the_dashboard(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    partner = sign_in("partner")
    expect(partner.get_by_role("link", name="Orders")).to_have_count(0)
    partner.get_by_role("link", name="Redemptions").first.click()
    records = partner.get_by_test_id("redemption-records")
    _reload_until(partner, lambda: "failed" in records.inner_text())
    expect(partner.get_by_label("Partner", exact=True)).to_have_count(0)
    expect(partner.get_by_test_id("offers")).to_be_visible()
    shot(partner, "redemptions-partner")

    finance = sign_in("finance")
    finance.get_by_role("link", name="Redemptions").first.click()
    expect(finance.get_by_test_id("redemption-records")).to_contain_text("demo-partner")
    expect(finance.get_by_role("img", name="Per partner")).to_be_visible()
    shot(finance, "redemptions-finance")


def test_a_member_reveals_their_code_and_the_reveal_is_audited(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page = sign_in("member")
    page.get_by_role("link", name="My wallet").first.click()
    rewards = page.get_by_test_id("rewards")
    _reload_until(page, lambda: rewards.get_by_role("button", name="Reveal code").count() > 0)
    shot(page, "member-rewards")
    rewards.get_by_role("button", name="Reveal code").first.click()
    code = page.get_by_test_id("revealed-code")
    expect(code).not_to_be_empty()
    shot(page, "member-code-revealed")

    audit = console_stack.read("wallet", "/v1/members/demo-member-01/audit")
    assert any("reveal" in entry["action"] for entry in audit["entries"])
    page.get_by_role("link", name="My wallet").first.click()
    expect(page.get_by_test_id("audit")).to_contain_text("reveal")
    expect(page.get_by_test_id("audit-verified")).to_have_text("chain verified")


def test_ops_pauses_and_resumes_a_campaign(sign_in: SignIn, console_stack: ConsoleStack) -> None:
    page = sign_in("ops")
    page.get_by_role("link", name="Campaigns").first.click()
    page.get_by_role("button", name=f"Pause {EMPTY_CAMPAIGN}").click()
    expect(page.get_by_role("status")).to_contain_text("paused")
    row = page.get_by_test_id("campaigns").locator("tr", has_text=EMPTY_CAMPAIGN)
    expect(row).to_contain_text("paused")
    shot(page, "campaign-paused")
    page.get_by_role("button", name=f"Resume {EMPTY_CAMPAIGN}").click()
    expect(row).to_contain_text("active")


def test_an_agent_looks_up_a_booking_and_credits_goodwill(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    orders = console_stack.read("order", "/v1/orders", member_id="demo-member-05")["items"]
    booking = orders[0]["booking_id"]
    page = sign_in("agent")
    page.get_by_role("link", name="Members").first.click()
    page.get_by_label("Booking id").fill(booking)
    page.get_by_role("button", name="Look up order").click()
    expect(page.get_by_test_id("lookup")).to_contain_text("demo-member-05")
    expect(page.get_by_test_id("masked-code")).to_contain_text("*")
    page.get_by_label("Points").fill("50")
    page.get_by_label("Reason", exact=True).first.fill("Voucher arrived late")
    page.get_by_role("button", name="Credit goodwill").click()
    expect(page.get_by_role("status")).to_contain_text("50 goodwill points credited")
    shot(page, "lookup-goodwill")
    page.get_by_role("link", name="demo-member-05").click()
    _reload_until(page, lambda: "50" in page.get_by_test_id("balance").inner_text())
    shot(page, "member-wallet-staff")


def test_ops_previews_a_bulk_cancel_with_a_dry_run_then_confirms_it(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page = sign_in("ops")
    page.goto(f"{console_stack.console_url}/orders?state=pending&campaign_id={BULK_CAMPAIGN}")
    expect(page.get_by_test_id("orders-total")).to_contain_text("2 pending orders match")
    page.get_by_label("Reason for the bulk cancel").fill("Campaign withdrawn, raised by the browser suite")
    page.get_by_role("button", name="Preview bulk cancel").click()
    expect(page.get_by_test_id("preview")).to_contain_text("2 pending orders would be cancelled")
    shot(page, "orders-bulk-cancel-preview")
    still = console_stack.read("order", "/v1/orders/summary", campaign_id=BULK_CAMPAIGN)
    assert still["by_state"]["pending"] == 2  # the preview changed nothing

    page.get_by_role("button", name="Confirm: cancel 2 orders").click()
    expect(page.get_by_role("status")).to_contain_text("2 orders cancelled")
    expect(page.get_by_test_id("orders-total")).to_contain_text("0 pending orders match")
    after = console_stack.read("order", "/v1/orders/summary", campaign_id=BULK_CAMPAIGN)
    assert (after["by_state"]["pending"], after["by_state"]["cancelled"]) == (0, 2)


def test_finance_reads_orders_with_the_hourly_chart_by_state_and_is_offered_no_cancel(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page = sign_in("finance")
    page.get_by_role("link", name="Orders").first.click()
    chart = page.get_by_test_id("orders-per-hour")
    expect(chart.get_by_role("img")).to_be_visible()
    expect(chart.get_by_role("img")).to_have_attribute("aria-label", re.compile(r"pending [1-9]"))
    expect(page.get_by_test_id("bulk-cancel")).to_have_count(0)
    shot(page, "orders-finance-chart")


def test_an_agent_reads_the_sla_compliance_report(sign_in: SignIn, console_stack: ConsoleStack) -> None:
    page = sign_in("agent")
    page.get_by_role("link", name="Support").first.click()
    page.get_by_role("link", name="SLA compliance report").click()
    expect(page.get_by_role("heading", name="SLA compliance")).to_be_visible()
    expect(page.get_by_test_id("sla-priority")).to_be_visible()
    shot(page, "support-sla-report")


def test_ops_creates_a_campaign_and_stocks_it_with_generated_imported_and_uat_test_codes(
    sign_in: SignIn, console_stack: ConsoleStack, tmp_path: Path
) -> None:
    page = sign_in("ops")
    page.get_by_role("link", name="Campaigns").first.click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Campaign id").fill("console-made")
    page.get_by_label("Name").fill("Made in the console")
    page.get_by_label("Face value").fill("5.00")
    page.get_by_label("Currency").fill("EUR")
    page.get_by_label("Budget").fill("1000.00")
    page.get_by_label("Limit per record").fill("100.00")
    page.get_by_label("Low-stock warning at").fill("5")
    shot(page, "campaign-new")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_role("status")).to_contain_text("Campaign created")
    expect(page.get_by_test_id("low-stock")).to_be_visible()
    shot(page, "campaign-low-stock")

    page.get_by_label("How many").fill("10")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("status")).to_contain_text("10 codes generated")
    expect(page.get_by_test_id("low-stock")).to_have_count(0)
    page.get_by_label("How many").fill("3")
    page.get_by_label("UAT test codes").check()
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("status")).to_contain_text("3 UAT test codes generated")
    codes = tmp_path / "codes.csv"
    codes.write_text("code,expires_at,value\nPARTNER-AAA-0001,2030-06-30,\nPARTNER-AAA-0002,2030-06-30,\n")
    page.get_by_label("CSV of codes").set_input_files(str(codes))
    page.get_by_role("button", name="Import codes").click()
    expect(page.get_by_role("status")).to_contain_text("2 codes imported")
    stock = page.get_by_test_id("code-stock").locator("tr", has_text="available")
    expect(stock).to_contain_text("12")
    expect(stock).to_contain_text("3")
    shot(page, "campaign")

    page.get_by_role("link", name="Edit campaign").click()
    page.get_by_label("Name").fill("Made and renamed in the console")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", name="Made and renamed in the console")).to_be_visible()


def test_ops_extends_expiry_and_recovers_a_code_each_after_a_dry_run(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    campaign, voucher = "console-codes", console_stack.urls["voucher"]
    create_campaign(console_stack.urls, console_stack.admin(), campaign)
    codes = "code,expires_at,value\nEXTEND-AAA-0001,2030-06-30,\nEXTEND-AAA-0002,2030-06-30,\n"
    with httpx.Client(headers=console_stack.admin(), timeout=30) as client:
        client.post(
            f"{voucher}/v1/campaigns/{campaign}/codes/import", files={"file": ("c.csv", codes, "text/csv")}
        ).raise_for_status()
    page = sign_in("ops")
    page.goto(f"{console_stack.console_url}/campaigns/{campaign}")
    page.get_by_label("New expiry date").fill("2031-01-31")
    page.get_by_label("Reason for extending").fill("Partner extended the offer")
    page.get_by_role("button", name="Preview extension").click()
    expect(page.get_by_test_id("preview")).to_contain_text(f"2 codes of {campaign} would expire")
    shot(page, "campaign-extend-preview")
    page.get_by_role("button", name="Confirm: extend 2 codes").click()
    expect(page.get_by_role("status")).to_contain_text("2 codes extended")

    place_order(
        console_stack.urls, console_stack.admin(), campaign, "demo-member-08", "m08@example.com", "10.00"
    )
    stock = page.get_by_test_id("code-stock")
    _reload_until(page, lambda: "issued" in stock.inner_text())
    page.get_by_label("Codes in status").select_option("issued")
    page.get_by_label("Reason for recovering").fill("Sent to the wrong member")
    page.get_by_role("button", name="Preview recovery").click()
    expect(page.get_by_test_id("preview")).to_contain_text(f"1 code of {campaign} would be recovered")
    shot(page, "campaign-recover-preview")
    page.get_by_role("button", name="Confirm: recover 1 code").click()
    expect(page.get_by_role("status")).to_contain_text("1 code recovered")


def test_an_agent_resends_failed_deliveries_in_bulk_and_sees_success_by_channel(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page, _, order = _failed_delivery_queue(sign_in, console_stack, console_stack.resend_order_id)
    email = page.get_by_test_id("delivery-success").get_by_role("row", name=re.compile(r"^email"))
    expect(email.get_by_role("cell").nth(2)).to_have_text(re.compile(r"[1-9]"))  # failed, from its table
    outcomes = page.get_by_test_id("delivery-outcomes").get_by_role("img")
    expect(outcomes).to_have_attribute("aria-label", re.compile(r"email: .*failed [1-9]"))
    shot(page, "deliveries-by-channel")
    page.get_by_label(f"Select {order['booking_id']}").check()
    page.get_by_role("button", name="Resend selected").click()
    expect(page.get_by_role("status")).to_contain_text("1 delivery queued to be sent again")


def test_staff_see_points_earned_and_burned_per_day_on_a_wallet(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page = sign_in("finance")
    page.goto(f"{console_stack.console_url}/members/demo-member-01")
    chart = page.get_by_test_id("points-per-day").get_by_role("img")
    _reload_until(page, lambda: chart.count() > 0)
    expect(chart).to_have_attribute("aria-label", re.compile(r"earned [1-9]"))
    shot(page, "member-points-chart")


def test_a_partner_exports_its_own_redemptions_for_settlement_and_downloads_the_file(
    sign_in: SignIn, console_stack: ConsoleStack
) -> None:
    page = sign_in("partner")
    page.get_by_role("link", name="Redemptions").first.click()
    expect(page.get_by_role("heading", name="Your offers, redemptions and exports")).to_be_visible()
    expect(page.get_by_test_id("offers")).to_contain_text("Free dessert")
    expect(page.get_by_label("Purpose").locator("option")).to_have_count(1)
    page.get_by_label("Why the data is needed").fill("December settlement")
    page.get_by_role("button", name="Request export").click()
    expect(page.get_by_role("status")).to_contain_text("Export requested for partner settlement")
    exports = page.get_by_test_id("exports")
    expect(exports).to_contain_text("December settlement")
    download = exports.get_by_role("link", name="Download partner settlement")
    _reload_until(page, lambda: download.count() > 0)
    shot(page, "partner-view-exports")
    with page.expect_download() as started:
        download.click()
    saved = started.value.path()
    assert saved is not None
    assert "demo-partner" in Path(saved).read_text()


def test_finance_requests_a_reconciliation_export(sign_in: SignIn, console_stack: ConsoleStack) -> None:
    page = sign_in("finance")
    page.get_by_role("link", name="Redemptions").first.click()
    page.get_by_label("Purpose").select_option("finance_reconciliation")
    page.get_by_label("Why the data is needed").fill("Month-end close")
    page.get_by_role("button", name="Request export").click()
    expect(page.get_by_test_id("exports")).to_contain_text("Finance reconciliation")
    shot(page, "redemptions-exports-finance")
