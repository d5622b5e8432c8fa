"""Order flows through the whole running system, by its public contract only (HTTP and Kafka topics):
a big IPA intake with bad rows and HRIS records, out of stock and first-in first-out, cancellation
midway, and a permanent delivery failure corrected by an admin.

Every scenario has its own campaign and its own recipients, so what reached the SMTP sink and the fake
provider can be attributed to it (and the demo module's system is another one: the fixture is per
module)."""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import httpx

from chassis.testing import wait_until
from contracts.ipa import IpaRecordSubmitted
from contracts.orders import OrderCancelRequested
from tests import pipeline as p
from tests.pipeline import RUN
from tests.system import System

INVALID_NUMBER = "+15005550001"
RUN_DIGITS = f"{int(RUN, 16) % 1000:03d}"


# ---------------------------------------------------------------------------------------------- 1. intake


async def test_a_thousand_row_upload_and_hris_records_end_as_one_delivered_code_each(system: System) -> None:
    async with p.clients(system) as (order, voucher):
        campaign_id = await p.campaign(voucher, order, "intake", codes=1100)
        rows: list[dict[str, str]] = []
        invalid: dict[str, str] = {}  # external_ref -> the error code its row must get
        for n in range(1, 996):
            ref = f"intake-{RUN}-{n:04d}"
            row = p.record(campaign_id, ref, n)
            kind = n % 20
            if kind == 1:
                row["email"] = f"not-an-email-{n}"
                invalid[ref] = "invalid_email"
            elif kind == 2:
                row.update(channel="sms", phone=f"07700{n:06d}")
                invalid[ref] = "invalid_phone"
            elif kind == 3:
                row["campaign_id"] = f"no-such-campaign-{RUN}"
                invalid[ref] = "unknown_campaign"
            elif kind == 4:
                row["amount"] = "100.01"
                invalid[ref] = "amount_over_limit"
            rows.append(row)
        valid_rows = [r for r in rows if r["external_ref"] not in invalid]
        # five valid rows repeated later in the same file (another address, so a send would show)
        duplicates = [
            dict(rows[n - 1], email=f"dup-{n}@{campaign_id}.example.com") for n in (10, 30, 50, 70, 90)
        ]
        rows += duplicates
        assert len(rows) == 1000

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        uploaded = await order.post(
            "/v1/ipa/batches",
            params={"mode": "accept_valid"},
            files={"file": ("allocations.csv", buffer.getvalue().encode(), "text/csv")},
        )
        assert uploaded.status_code == 202, uploaded.text
        batch_id = uploaded.json()["batch_id"]

        hris = [
            p.record(campaign_id, f"hris-{RUN}-{n:02d}", n, channel="sms", phone=f"+44771{RUN_DIGITS}{n:04d}")
            for n in range(1, 21)
        ]
        await p.from_hris(system, *(IpaRecordSubmitted.model_validate(r) for r in hris))
        expected = len(valid_rows) + len(hris)

        async def all_completed() -> bool:
            return (await p.summary(order, campaign_id))["by_state"].get("completed", 0) >= expected

        await wait_until(all_completed, timeout=240, interval=1.0, what=f"{expected} completed orders")

        summary = await p.summary(order, campaign_id)
        assert summary["by_state"] == {"pending": 0, "completed": expected, "cancelled": 0}
        orders = await p.orders(order, campaign_id)
        assert len(orders) == expected
        refs = Counter(o["external_ref"] for o in orders)
        assert refs == Counter([r["external_ref"] for r in valid_rows] + [r["external_ref"] for r in hris])

        issued = await p.issued(system, campaign_id)
        codes_by_order: dict[str, set[str]] = {}
        for envelope in issued:
            codes_by_order.setdefault(envelope["data"]["order_id"], set()).add(envelope["data"]["code_id"])
        assert set(codes_by_order) == {o["order_id"] for o in orders}
        assert all(len(codes) == 1 for codes in codes_by_order.values()), "one code per order"
        all_codes = [next(iter(codes)) for codes in codes_by_order.values()]
        assert len(set(all_codes)) == len(all_codes), "no code in two orders"
        counts = await p.code_counts(voucher, campaign_id)
        assert counts.get("issued", 0) == expected

        emails = p.emails_by_recipient(system)
        mine = {a: c for a, c in emails.items() if a.endswith(f"@{campaign_id}.example.com")}
        assert mine == {r["email"].lower(): 1 for r in valid_rows}, "each email recipient got exactly one"
        messages = p.messages_by_recipient(system)
        assert {r["phone"]: messages[r["phone"]] for r in hris} == {r["phone"]: 1 for r in hris}

        progress = (await order.get(f"/v1/ipa/batches/{batch_id}")).json()
        errors_csv = await order.get(f"/v1/ipa/batches/{batch_id}/errors.csv")
        assert errors_csv.status_code == 200, errors_csv.text
    rejected = list(csv.DictReader(io.StringIO(errors_csv.text)))
    expected_errors = dict(invalid)
    duplicate_refs = [d["external_ref"] for d in duplicates]
    reported = {r["external_ref"]: r for r in rejected if r["external_ref"] not in duplicate_refs}
    assert set(reported) == set(expected_errors)
    for ref, code in expected_errors.items():
        assert code in reported[ref]["errors"], (ref, reported[ref]["errors"])
    duplicate_lines = [r for r in rejected if r["external_ref"] in duplicate_refs]
    assert len(duplicate_lines) == len(duplicates)
    assert all("duplicate_in_file" in r["errors"] for r in duplicate_lines)
    assert len(rejected) == len(invalid) + len(duplicates)

    assert progress["status"] == "completed"
    assert progress["received"] == 1000
    assert progress["accepted"] == len(valid_rows)
    assert progress["rejected"] == len(invalid) + len(duplicates)
    assert progress["accepted"] + progress["rejected"] == progress["received"]
    assert progress["validated"] == progress["received"]
    assert progress["orders"] == {"pending": 0, "completed": len(valid_rows), "cancelled": 0}
    assert progress["points_accepted"] == 0


# ---------------------------------------------------------------------------------------------- 2. stock


async def test_held_orders_complete_first_in_first_out_when_codes_are_imported(system: System) -> None:
    async with p.clients(system) as (order, voucher):
        campaign_id = await p.campaign(voucher, order, "stock", codes=5)
        first = [await p.place(order, p.record(campaign_id, f"stock-{RUN}-{n:02d}", n)) for n in range(1, 6)]

        async def served() -> bool:
            return (await p.summary(order, campaign_id))["by_state"].get("completed", 0) == 5

        await wait_until(served, timeout=120, interval=0.5, what="the first five orders to complete")

        held: list[dict[str, Any]] = []
        for n in range(6, 13):
            placed = await p.place(order, p.record(campaign_id, f"stock-{RUN}-{n:02d}", n))

            async def on_hold(order_id: str = placed["order_id"]) -> bool:
                return (await p.order(order, order_id))["fulfilment_status"] == "on_hold"

            # one by one, so the order in which they were held is the order in which they were created
            await wait_until(on_hold, timeout=60, interval=0.3, what=f"order {n} to go on hold")
            held.append(placed)
        assert len(first) + len(held) == 12
        on_hold_now = await p.orders(order, campaign_id, fulfilment_status="on_hold")
        assert {o["order_id"] for o in on_hold_now} == {h["order_id"] for h in held}
        assert len(on_hold_now) == 7

        codes_csv = "code\n" + "".join(f"IMP{RUN.upper()}{uuid.uuid4().hex[:10].upper()}\n" for _ in range(7))
        imported = await voucher.post(
            f"/v1/campaigns/{campaign_id}/codes/import",
            files={"file": ("codes.csv", codes_csv.encode(), "text/csv")},
        )
        assert imported.status_code in (200, 201), imported.text

        async def all_served() -> bool:
            return (await p.summary(order, campaign_id))["by_state"].get("completed", 0) == 12

        await wait_until(all_served, timeout=120, interval=0.5, what="the held orders to complete")

    issued = await p.issued(system, campaign_id)
    issue_time = {e["data"]["order_id"]: datetime.fromisoformat(e["occurred_at"]) for e in issued}
    assert len(issue_time) == 12
    held_ids = [h["order_id"] for h in held]
    assert sorted(held_ids, key=lambda order_id: issue_time[order_id]) == held_ids, "first in, first out"
    assert max(issue_time[o["order_id"]] for o in first) < min(issue_time[i] for i in held_ids)


# ---------------------------------------------------------------------------------------------- 3. cancel


async def test_a_cancelled_order_is_never_sent_and_its_code_returns_to_the_pool(system: System) -> None:
    provider = p.provider_url(system)
    async with (
        p.clients(system) as (order, voucher),
        httpx.AsyncClient(base_url=provider) as sink,
        httpx.AsyncClient(base_url=system.urls["delivery"], headers=system.headers(), timeout=60) as delivery,
    ):
        campaign_id = await p.campaign(voucher, order, "cancel", codes=0)
        by_http = await p.place(order, p.record(campaign_id, f"cancel-{RUN}-http", 1))
        by_topic = await p.place(order, p.record(campaign_id, f"cancel-{RUN}-topic", 2))
        blocked_phone = f"+44772{RUN_DIGITS}0003"
        in_delivery = await p.place(
            order, p.record(campaign_id, f"cancel-{RUN}-delivering", 3, channel="sms", phone=blocked_phone)
        )

        async def held() -> bool:
            states = [(await p.order(order, o["order_id"]))["fulfilment_status"] for o in (by_http, by_topic)]
            return states == ["on_hold", "on_hold"]

        await wait_until(held, timeout=60, interval=0.3, what="the orders to go on hold")

        # the provider refuses (rate limited, a transient failure) everything for this number until told
        blocked = await sink.post(
            "/_control/failures", json={"to": blocked_phone, "mode": "rate_limited", "times": 0}
        )
        assert blocked.status_code in (200, 201, 204), blocked.text

        cancelled = await order.post(
            f"/v1/orders/{by_http['order_id']}/cancel", json={"reason": "policy change"}
        )
        assert cancelled.status_code == 200, cancelled.text
        await p.from_hris(
            system, OrderCancelRequested(external_ref=by_topic["external_ref"], reason="eligibility change")
        )

        async def both_cancelled() -> bool:
            return (await p.summary(order, campaign_id))["by_state"].get("cancelled", 0) == 2

        await wait_until(both_cancelled, timeout=60, interval=0.3, what="the held orders to be cancelled")

        async def voucher_dropped_their_holds() -> bool:
            # The voucher service learns of the cancellations from order.state_changed a moment later; until
            # then a code generated now could still be issued to one of them (and returned on the cancel).
            overview = (await voucher.get(f"/v1/campaigns/{campaign_id}")).json()
            return int(overview["held_orders"]) == 1

        await wait_until(
            voucher_dropped_their_holds, timeout=60, interval=0.3, what="only the third order held"
        )

        # only the third order is pending now: of the new codes, one goes to it and none to the others
        generated = await voucher.post(f"/v1/campaigns/{campaign_id}/codes/generate", json={"count": 3})
        assert generated.status_code == 201, generated.text

        async def issued_to_the_third() -> bool:
            return any(
                e["data"]["order_id"] == in_delivery["order_id"] for e in await p.issued(system, campaign_id)
            )

        await wait_until(issued_to_the_third, timeout=60, interval=1.0, what="a code for the third order")
        issued = await p.issued(system, campaign_id)
        assert {e["data"]["order_id"] for e in issued} == {in_delivery["order_id"]}
        code_id = issued[0]["data"]["code_id"]

        async def retrying() -> bool:
            answer = await delivery.get(f"/v1/orders/{in_delivery['order_id']}/delivery")
            return answer.status_code == 200 and answer.json()["last_reason_code"] == "rate_limited"

        await wait_until(retrying, timeout=60, interval=0.3, what="the third order's send to be retrying")

        await p.from_hris(
            system, OrderCancelRequested(order_id=uuid.UUID(in_delivery["order_id"]), reason="correction")
        )

        async def all_cancelled() -> bool:
            return (await p.summary(order, campaign_id))["by_state"].get("cancelled", 0) == 3

        await wait_until(all_cancelled, timeout=60, interval=0.5, what="the three orders to be cancelled")

        async def code_back() -> bool:
            answer = await voucher.get(f"/v1/codes/{code_id}")
            return answer.status_code == 200 and answer.json()["status"] == "available"

        await wait_until(code_back, timeout=60, interval=0.5, what="the code to return to the pool")

        # now delivery is possible: the provider takes messages again, and a control order proves it
        cleared = await sink.request("DELETE", "/_control/failures")
        assert cleared.status_code in (200, 204), cleared.text
        control_phone = f"+44772{RUN_DIGITS}0004"
        control = await p.place(
            order, p.record(campaign_id, f"cancel-{RUN}-control", 4, channel="sms", phone=control_phone)
        )

        async def control_completed() -> bool:
            return (await p.order(order, control["order_id"]))["state"] == "completed"

        await wait_until(control_completed, timeout=120, interval=0.5, what="the control order to complete")

        for placed in (by_http, by_topic, in_delivery):
            view = await p.order(order, placed["order_id"])
            assert view["state"] == "cancelled", view
            stopped = (await delivery.get(f"/v1/orders/{placed['order_id']}/delivery")).json()
            assert stopped["status"] == "cancelled", stopped
            assert not stopped["code_held"]
            assert all(a["outcome"] != "succeeded" for a in stopped["attempt_log"]), stopped["attempt_log"]
            refused = await delivery.post(f"/v1/deliveries/{stopped['delivery_id']}/resend", json={})
            assert refused.status_code == 409, refused.text
        assert (await p.code_counts(voucher, campaign_id)) == {"available": 2, "issued": 1}
        messages = p.messages_by_recipient(system)
        emails = p.emails_by_recipient(system)
    assert messages[blocked_phone] == 0
    assert messages[control_phone] == 1
    for placed in (by_http, by_topic):
        assert emails[f"{placed['external_ref']}@{campaign_id}.example.com"] == 0


# ---------------------------------------------------------------------------------------------- 4. failure


async def test_an_invalid_number_is_corrected_by_an_admin_and_the_voucher_is_sent_once(
    system: System,
) -> None:
    async with (
        p.clients(system) as (order, voucher),
        httpx.AsyncClient(base_url=system.urls["delivery"], headers=system.headers(), timeout=60) as delivery,
    ):
        campaign_id = await p.campaign(voucher, order, "failure", codes=3)
        placed = await p.place(
            order, p.record(campaign_id, f"failure-{RUN}-1", 1, channel="sms", phone=INVALID_NUMBER)
        )

        async def failed() -> bool:
            return (await p.order(order, placed["order_id"]))["fulfilment_status"] == "delivery_failed"

        await wait_until(failed, timeout=120, interval=0.5, what="the delivery to fail permanently")
        listed = await delivery.get("/v1/deliveries/failed", params={"campaign_id": campaign_id})
        assert listed.status_code == 200, listed.text
        [flagged] = listed.json()["items"]
        assert flagged["order_id"] == placed["order_id"]
        assert flagged["last_reason_code"] == "invalid_number"

        corrected_phone = f"+44773{RUN_DIGITS}0001"
        corrected = await delivery.post(
            f"/v1/deliveries/{flagged['delivery_id']}/recipient",
            json={"phone": corrected_phone, "reason": "member gave the right number"},
        )
        assert corrected.status_code == 202, corrected.text

        async def completed() -> bool:
            return (await p.order(order, placed["order_id"]))["state"] == "completed"

        await wait_until(completed, timeout=120, interval=0.5, what="the order to complete after the resend")
        messages = p.messages_by_recipient(system)
    assert messages[corrected_phone] == 1
    assert messages[INVALID_NUMBER] == 0
