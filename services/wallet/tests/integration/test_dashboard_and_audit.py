"""Member dashboard, staff adjustments, reports and the member audit log through HTTP, fed by events
published on the real broker."""

from __future__ import annotations

import csv
import io
import json
import uuid

import asyncpg

from chassis.sealed_codes import dev_sealer
from chassis.testing import delivery_outcome, read_topic, wait_until
from contracts.orders import FulfilmentStatus, OrderSource, OrderState, OrderStateChanged
from contracts.redemption import RedemptionKind, RedemptionRecorded, RedemptionStatus
from contracts.support import SupportResendRequested
from contracts.topics import Topics
from contracts.values import Channel
from contracts.vouchers import VoucherIssued
from services.wallet.tests.integration.test_points_flow import (
    debit_request,
    entries_of,
    ipa_points,
    member_id,
    publish,
    send,
)
from services.wallet.tests.support import event

CLEAR_CODE = "QX7M-4T9K-2W8P"


def order_event(member: str, order_id: uuid.UUID, state: OrderState, previous: OrderState | None, **kw):
    return event(
        Topics.ORDER_STATE_CHANGED,
        OrderStateChanged(
            order_id=order_id,
            booking_id=f"BK-{order_id.hex[:10].upper()}",
            member_id=member,
            campaign_id="spring-thanks",
            source=OrderSource.IPA,
            state=state,
            previous_state=previous,
            **kw,
        ),
        producer="order",
    )


async def credited(wallet, member: str, amount: str) -> None:
    before = await entries_of(wallet, member)
    await send(wallet.bootstrap, ipa_points(member, amount), key=member)

    async def more() -> bool:
        return await entries_of(wallet, member) > before

    await wait_until(more, what="credit applied")


async def test_the_member_sees_every_reward_order_with_its_delivery_status_and_only_a_masked_code(wallet):
    member = member_id()
    delivered, failing, waiting = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    code_id = uuid.uuid4()
    # Voucher and delivery news for `delivered` arrive before the order says whose it is.
    issued = VoucherIssued(
        order_id=delivered,
        campaign_id="spring-thanks",
        code_id=code_id,
        sealed_code=dev_sealer().seal(CLEAR_CODE, code_id),
        masked_code="****-****-2W8P",
        face_value="25.00",
        currency="EUR",
    )
    await publish(wallet.bootstrap, issued, producer="voucher", key=str(delivered))
    succeeded = delivery_outcome(delivered, ok=True, channel=Channel.EMAIL)
    await publish(wallet.bootstrap, succeeded, producer="delivery", key=str(delivered))
    failed = delivery_outcome(failing, 3, ok=False)
    await publish(wallet.bootstrap, failed, producer="delivery", key=str(failing))
    await send(
        wallet.bootstrap,
        order_event(
            member, delivered, OrderState.PENDING, None, fulfilment_status=FulfilmentStatus.DELIVERING
        ),
        order_event(member, delivered, OrderState.COMPLETED, OrderState.PENDING),
        order_event(member, failing, OrderState.PENDING, None, fulfilment_status=FulfilmentStatus.DELIVERING),
        order_event(member, waiting, OrderState.PENDING, None, fulfilment_status=FulfilmentStatus.ON_HOLD),
        key=member,
    )
    await credited(wallet, member, "300")

    async def three_orders() -> bool:
        response = await wallet.http.get(
            f"/v1/members/{member}/history", headers=wallet.auth("member", member)
        )
        orders = response.json()["orders"]
        statuses = sorted(o["delivery_status"] for o in orders)
        # voucher.issued is read by a consumer group of its own: its code may land after the statuses.
        coded = any(o["masked_code"] for o in orders if o["order_id"] == str(delivered))
        return statuses == ["delivered", "failed", "pending"] and coded

    await wait_until(three_orders, what="the three orders in the history, each with its status and code")
    response = await wallet.http.get(f"/v1/members/{member}/history", headers=wallet.auth("member", member))
    body = response.json()
    by_id = {o["order_id"]: o for o in body["orders"]}
    assert by_id[str(delivered)]["delivery_status"] == "delivered"
    assert by_id[str(delivered)]["masked_code"] == "****-****-2W8P"
    assert by_id[str(delivered)]["reveal"]["path"] == f"/v1/codes/{code_id}/reveal"
    assert by_id[str(delivered)]["reward"] == {
        "campaign_id": "spring-thanks",
        "value": "25.00",
        "currency": "EUR",
    }
    assert by_id[str(delivered)]["booking_id"].startswith("BK-")
    assert by_id[str(failing)]["delivery_status"] == "failed"
    assert by_id[str(failing)]["masked_code"] is None
    assert by_id[str(waiting)]["delivery_status"] == "pending"
    assert [e["entry_type"] for e in body["entries"]] == ["milestone_award"]

    other = await wallet.http.get(
        f"/v1/members/{member}/history", headers=wallet.auth("member", "someone-else")
    )
    assert other.status_code == 403
    agent = await wallet.http.get(f"/v1/members/{member}/history", headers=wallet.auth("support_agent"))
    assert agent.status_code == 200
    reveal = await wallet.http.post(
        f"/v1/members/{member}/orders/{delivered}/reveal", headers=wallet.auth("member", member)
    )
    not_delivered = await wallet.http.post(
        f"/v1/members/{member}/orders/{failing}/reveal", headers=wallet.auth("member", member)
    )
    not_theirs = await wallet.http.post(
        f"/v1/members/{member}/orders/{delivered}/reveal", headers=wallet.auth("member", "someone-else")
    )
    assert reveal.status_code == 200
    assert reveal.json()["reveal"] == {
        "service": "voucher",
        "method": "POST",
        "path": f"/v1/codes/{code_id}/reveal",
    }
    assert not_delivered.status_code == 404
    assert not_theirs.status_code == 403
    audit = await wallet.http.get(f"/v1/members/{member}/audit", headers=wallet.auth("member", member))
    revealed = [e for e in audit.json()["entries"] if e["action"] == "code_reveal_requested"]
    assert [(e["actor"], e["details"]["order_id"]) for e in revealed] == [
        (f"member:{member}", str(delivered))
    ]
    # The clear code was on the wire but is stored nowhere.
    dump = await wallet.runtime.pool.fetchval(
        "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM reward_orders) t"
    )
    audit_dump = await wallet.runtime.pool.fetchval("SELECT string_agg(details::text, ' ') FROM member_audit")
    assert CLEAR_CODE not in dump
    assert CLEAR_CODE not in audit_dump


async def test_staff_adjust_and_reverse_with_a_reason_and_members_may_not(wallet):
    member = member_id()
    await credited(wallet, member, "100")
    url = f"/v1/members/{member}/adjustments"

    refused = await wallet.http.post(
        url, json={"amount": "50", "reason_code": "x", "reason": "me"}, headers=wallet.auth("member", member)
    )
    no_reason = await wallet.http.post(
        url, json={"amount": "50", "reason_code": "x"}, headers=wallet.auth("admin")
    )
    body = {"amount": "50", "reason_code": "goodwill", "reason": "late delivery", "idempotency_key": "adj-1"}
    first = await wallet.http.post(url, json=body, headers=wallet.auth("finance", "fiona"))
    again = await wallet.http.post(url, json=body, headers=wallet.auth("finance", "fiona"))

    anonymous = await wallet.http.post(url, json={"amount": "50", "reason_code": "x", "reason": "y"})
    unknown_field = await wallet.http.post(
        url,
        json={"amount": "50", "reason_code": "x", "reason": "y", "balance": "1"},
        headers=wallet.auth("admin"),
    )
    negative = await wallet.http.post(
        url, json={"amount": "-5", "reason_code": "x", "reason": "y"}, headers=wallet.auth("admin")
    )
    assert anonymous.status_code == 401
    assert unknown_field.status_code == 422
    assert unknown_field.json()["errors"][0]["field"] == "body.balance"
    assert negative.status_code == 422
    assert negative.json()["errors"][0]["field"] == "body.amount"
    assert refused.status_code == 403
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "body.reason"
    assert first.status_code == 201
    assert first.json()["actor"] == "finance:fiona"
    assert again.status_code == 200
    assert again.json()["entry_id"] == first.json()["entry_id"]

    credit_id = first.json()["entry_id"]
    reversal = {
        "entry_type": "reversal",
        "reverses_entry_id": credit_id,
        "reason_code": "error",
        "reason": "typo",
    }
    too_big = await wallet.http.post(url, json={**reversal, "amount": "51"}, headers=wallet.auth("admin"))
    reversed_ = await wallet.http.post(url, json=reversal, headers=wallet.auth("admin", "alice"))
    twice = await wallet.http.post(url, json=reversal, headers=wallet.auth("admin", "alice"))

    assert too_big.status_code == 422
    assert too_big.json()["code"] == "reversal_exceeds_entry"
    assert reversed_.status_code == 201
    assert reversed_.json()["amount"] == "50"
    assert reversed_.json()["balance_after"] == "100"
    assert twice.status_code == 409
    assert twice.json()["code"] == "already_reversed"

    async def recorded() -> list[str]:
        return [
            json.loads(r.value)["data"]["entry_type"]
            for r in await read_topic(wallet.bootstrap, Topics.WALLET_TRANSACTION_RECORDED)
            if r.key == member.encode()
        ]

    async def all_three_published() -> bool:  # the relay publishes after the request has answered
        return len(await recorded()) >= 3

    await wait_until(all_three_published, what="the three entries' events on the topic")
    assert await recorded() == ["milestone_award", "manual_adjustment", "reversal"]


async def test_reports_filter_total_and_export_safely(wallet):
    member = member_id()
    await credited(wallet, member, "500")
    await wallet.http.post(
        f"/v1/members/{member}/adjustments",
        json={"amount": "5", "reason_code": "goodwill", "reason": '=HYPERLINK("http://evil")'},
        headers=wallet.auth("admin"),
    )
    await send(wallet.bootstrap, debit_request(member, 120), key=member)

    async def three() -> bool:
        return await entries_of(wallet, member) == 3

    await wait_until(three, what="three entries")
    forbidden = await wallet.http.get("/v1/wallet/transactions", headers=wallet.auth("member", member))
    page = await wallet.http.get(
        "/v1/wallet/transactions", params={"member_id": member}, headers=wallet.auth("auditor")
    )
    debits = await wallet.http.get(
        "/v1/wallet/transactions",
        params={"member_id": member, "entry_type": "redemption"},
        headers=wallet.auth("finance"),
    )
    exported = await wallet.http.get(
        "/v1/wallet/transactions",
        params={"member_id": member, "format": "csv"},
        headers=wallet.auth("finance"),
    )
    lines = await wallet.http.get(
        "/v1/wallet/transactions",
        params={"member_id": member, "format": "jsonl"},
        headers=wallet.auth("admin"),
    )

    assert forbidden.status_code == 403
    totals = page.json()["totals"]
    assert totals["milestone_award"]["points"] == "500"
    assert totals["redemption"] == {"direction": "debit", "entries": 1, "points": "120"}
    assert page.json()["net"] == "385"
    assert [i["entry_type"] for i in debits.json()["items"]] == ["redemption"]
    assert debits.json()["items"][0]["redemption_id"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert exported.headers["content-type"].startswith("text/csv")
    assert len(rows) == 3
    assert rows[1]["reason"].startswith("'=HYPERLINK")
    assert [json.loads(line)["entry_type"] for line in lines.text.splitlines()] == [
        r["entry_type"] for r in rows
    ]


async def test_the_member_audit_log_chains_every_action_and_names_a_tampered_entry(wallet, service_db):
    member = member_id()
    order_id = uuid.uuid4()
    await credited(wallet, member, "200")
    await send(
        wallet.bootstrap,
        order_event(
            member, order_id, OrderState.PENDING, None, fulfilment_status=FulfilmentStatus.DELIVERING
        ),
        key=member,
    )
    resend = SupportResendRequested(
        order_id=order_id, reason="member lost the email", requested_by="support_agent:bob"
    )
    await publish(wallet.bootstrap, resend, producer="support", key=str(order_id))
    redeemed = RedemptionRecorded(
        record_id=uuid.uuid4(),
        kind=RedemptionKind.OFFER,
        status=RedemptionStatus.SUCCESSFUL,
        redeemed_at=wallet.clock.now(),
        member_id=member,
        partner_id="cafe-42",
        offer_id="coffee",
    )
    await publish(wallet.bootstrap, redeemed, producer="redemption", key=member)
    await send(wallet.bootstrap, debit_request(member, 50), key=member)
    wanted = {
        "points_credited",
        "order_created",
        "voucher_resend_requested",
        "redemption_successful",
        "points_redeemed",
    }

    async def all_there() -> bool:
        response = await wallet.http.get(f"/v1/members/{member}/audit", headers=wallet.auth("auditor"))
        return wanted <= {e["action"] for e in response.json()["entries"]}

    await wait_until(all_there, what="every action in the member's audit log")
    verified = await wallet.http.get(
        f"/v1/members/{member}/audit/verify", headers=wallet.auth("member", member)
    )
    assert verified.json()["ok"] is True
    assert verified.json()["entries_verified"] == 5

    # Someone with the owner's DDL rights edits the log behind the triggers' back.
    admin = await asyncpg.connect(service_db.admin_dsn)
    try:
        table = f'"{service_db.schema}".member_audit'
        await admin.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        await admin.execute(
            f"UPDATE {table} SET details = details || $2::jsonb WHERE member_id = $1 AND seq = 3",
            member,
            '{"amount": "9999"}',
        )
        await admin.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    finally:
        await admin.close()
    broken = await wallet.http.get(f"/v1/members/{member}/audit/verify", headers=wallet.auth("auditor"))
    assert broken.json()["ok"] is False
    assert broken.json()["first_broken_seq"] == 3
    assert broken.json()["entries_verified"] == 2


async def test_the_expiry_job_expires_due_points_publishes_them_and_members_see_what_expires_when(wallet):
    member = member_id()
    await credited(wallet, member, "80")
    wallet.clock.advance(days=100)
    await credited(wallet, member, "20")

    shown = await wallet.http.get(f"/v1/members/{member}/wallet", headers=wallet.auth("member", member))
    assert [(e["expires_at"][:10], e["points"]) for e in shown.json()["expiries"]] == [
        ("2027-01-15", "80"),
        ("2027-04-25", "20"),
    ]
    assert shown.json()["expiring_soon"]["points"] == "0"
    wallet.clock.advance(days=250)  # 2026-12-31: the first lot expires within 30 days
    soon = await wallet.http.get(f"/v1/members/{member}/wallet", headers=wallet.auth("member", member))
    assert soon.json()["expiring_soon"]["points"] == "80"

    wallet.clock.advance(days=20)  # 2027-01-20: the job (every 0.2 s on the leader) expires the lot

    async def expired() -> bool:
        response = await wallet.http.get(
            f"/v1/members/{member}/wallet", headers=wallet.auth("member", member)
        )
        return response.json()["balance"] == "20"

    await wait_until(expired, what="the expiry job's entry")

    async def published() -> bool:
        records = await read_topic(wallet.bootstrap, Topics.WALLET_TRANSACTION_RECORDED)
        return any(
            json.loads(r.value)["data"]["entry_type"] == "expiry" for r in records if r.key == member.encode()
        )

    await wait_until(published, what="the expiry published")
    assert wallet.runtime.jobs is not None
    assert wallet.runtime.jobs.is_leader("wallet-points-expiry")
    assert (
        await wallet.runtime.pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE member_id = $1 AND entry_type = 'expiry'", member
        )
        == 1
    )


async def test_a_storefront_order_shows_the_points_it_cost(wallet):
    member = member_id()
    await credited(wallet, member, "300")
    spend = debit_request(member, 120)
    await send(wallet.bootstrap, spend, key=member)
    order_id = uuid.uuid4()
    storefront = order_event(
        member,
        order_id,
        OrderState.PENDING,
        None,
        fulfilment_status=FulfilmentStatus.AWAITING_VOUCHER,
        redemption_id=spend.data.reference.redemption_id,
    )
    storefront = event(
        Topics.ORDER_STATE_CHANGED,
        storefront.data.model_copy(update={"source": OrderSource.STOREFRONT}),
        producer="order",
    )
    await send(wallet.bootstrap, storefront, key=member)

    async def shown() -> bool:
        response = await wallet.http.get(
            f"/v1/members/{member}/history", headers=wallet.auth("member", member)
        )
        orders = response.json()["orders"]
        return bool(orders) and orders[0]["points_spent"] == "120"

    await wait_until(shown, what="the storefront order with the points it cost")


async def test_a_paging_cursor_past_the_int64_range_is_refused_with_422_naming_the_parameter(wallet):
    member = member_id()
    await credited(wallet, member, "200")
    before = await wallet.http.get(f"/v1/members/{member}/audit", headers=wallet.auth("auditor"))
    huge = str(10**30)
    cases = [
        (f"/v1/members/{member}/audit", {"after_seq": huge}, "query.after_seq"),
        (f"/v1/members/{member}/audit", {"after_seq": str(2**63)}, "query.after_seq"),
        (f"/v1/members/{member}/history", {"before_seq": huge}, "query.before_seq"),
        ("/v1/wallet/transactions", {"after_seq": huge}, "query.after_seq"),
    ]
    for path, params, field in cases:
        response = await wallet.http.get(path, params=params, headers=wallet.auth("auditor"))
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == [field]
    last = await wallet.http.get(
        f"/v1/members/{member}/audit", params={"after_seq": str(2**63 - 1)}, headers=wallet.auth("auditor")
    )
    assert last.status_code == 200
    assert last.json()["entries"] == []
    after = await wallet.http.get(f"/v1/members/{member}/audit", headers=wallet.auth("auditor"))
    assert after.json()["entries"] == before.json()["entries"]
