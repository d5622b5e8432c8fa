"""Finance reports over ledger entries made through the real events and API: the points liability as
of a day by campaign and member, and month-end summaries that reconcile opening to closing.

The wallet's groups read the shared topics from their start, so entries other tests caused are
replayed at the fake clock's first day; this test waits for that backlog (sentinels), lets the
expiry job clear it in a month of its own, and works in later months, filtering by its own members
and campaigns."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from chassis.kafka_security import client_options
from chassis.testing import wait_until
from contracts.envelope import Envelope
from contracts.ipa import IpaRecordAccepted
from contracts.topics import Topics
from contracts.values import RewardType
from contracts.wallet import EntryType, WalletCreditRequested, WalletReference
from services.wallet.tests.integration.test_points_flow import debit_request, send
from services.wallet.tests.support import event

from .conftest import RunningWallet


async def caught_up(wallet: RunningWallet) -> None:
    """Wait until the wallet has consumed everything now on the topics that make ledger entries: a
    sentinel event is sent to every partition of each, and a partition is read in order, so once
    every sentinel is in the inbox whatever came before it was handled."""
    run = uuid.uuid4().hex[:8]
    credit = WalletCreditRequested(
        member_id=f"sentinel-{run}",
        amount=1,
        idempotency_key=f"sentinel-{run}",
        entry_type=EntryType.REFUND,
        reason_code="sentinel",
        reference=WalletReference(),
        requested_by="service:test",
    )
    sentinels: dict[str, Callable[[int], Envelope[Any]]] = {
        Topics.IPA_RECORD_ACCEPTED: lambda p: ipa_event(f"sentinel-{run}-{p}", f"sentinel-{run}", 1),
        Topics.WALLET_CREDIT_REQUESTED: lambda p: event(
            Topics.WALLET_CREDIT_REQUESTED,
            credit.model_copy(update={"idempotency_key": f"sentinel-{run}-{p}"}),
            producer="redemption",
        ),
        Topics.WALLET_DEBIT_REQUESTED: lambda p: debit_request(f"nobody-{run}", 1),
    }
    ids: list[str] = []
    producer = AIOKafkaProducer(
        bootstrap_servers=wallet.bootstrap, enable_idempotence=True, acks="all", **client_options()
    )
    await producer.start()
    try:
        for topic, make in sentinels.items():
            for partition in sorted(await producer.partitions_for(topic)):
                envelope = make(partition)
                await producer.send_and_wait(topic, envelope.to_bytes(), key=b"sentinel", partition=partition)
                ids.append(str(envelope.event_id))
    finally:
        await producer.stop()

    async def all_handled() -> bool:
        handled = await wallet.runtime.pool.fetchval(
            "SELECT count(DISTINCT event_id) FROM inbox WHERE event_id = ANY($1::uuid[])", ids
        )
        return bool(handled == len(ids))

    await wait_until(all_handled, timeout=120, what="every sentinel handled")


async def no_due_lots(wallet: RunningWallet) -> bool:
    due = await wallet.runtime.pool.fetchval(
        "SELECT count(*) FROM lots WHERE remaining > 0 AND expires_at <= $1", wallet.clock.now()
    )
    return bool(due == 0)


async def entries(wallet: RunningWallet, member: str) -> int:
    return int(
        await wallet.runtime.pool.fetchval("SELECT count(*) FROM ledger_entries WHERE member_id = $1", member)
    )


def ipa_event(member: str, campaign: str, points: int) -> Envelope[IpaRecordAccepted]:
    accepted = IpaRecordAccepted(
        external_ref=f"ext-{uuid.uuid4().hex[:10]}",
        member_id=member,
        campaign_id=campaign,
        reward_type=RewardType.POINTS,
        amount=str(points),
        reason="milestone",
    )
    return event(Topics.IPA_RECORD_ACCEPTED, accepted, producer="order")


async def award(wallet: RunningWallet, member: str, campaign: str, points: int) -> None:
    before = await entries(wallet, member)
    await send(wallet.bootstrap, ipa_event(member, campaign, points), key=member)

    async def applied() -> bool:
        return await entries(wallet, member) > before

    await wait_until(applied, what=f"{points} points for {member}")


async def redeem(wallet: RunningWallet, member: str, points: int) -> None:
    before = await entries(wallet, member)
    await send(wallet.bootstrap, debit_request(member, points), key=member)

    async def applied() -> bool:
        return await entries(wallet, member) > before

    await wait_until(applied, what=f"{points} points redeemed by {member}")


async def adjust(wallet: RunningWallet, member: str, **body: Any) -> dict[str, Any]:
    response = await wallet.http.post(
        f"/v1/members/{member}/adjustments",
        json={"reason_code": "correction", "reason": "month-end test", **body},
        headers=wallet.auth("finance", "fiona"),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def report(wallet: RunningWallet, path: str, role: str = "finance", **params: Any) -> Any:
    response = await wallet.http.get(f"/v1/wallet/reports/{path}", params=params, headers=wallet.auth(role))
    assert response.status_code == 200, response.text
    return response.json() if params.get("format", "json") == "json" else response.text


async def ledger_balance(wallet: RunningWallet, member: str, cutoff: str) -> int:
    found = await wallet.runtime.pool.fetchval(
        "SELECT balance_after FROM ledger_entries WHERE member_id = $1 AND recorded_at < $2"
        " ORDER BY member_seq DESC LIMIT 1",
        member,
        datetime.fromisoformat(cutoff),
    )
    return int(found or 0)


def lines(body: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(i["member_id"], i["campaign_id"], i["points"]) for i in body["items"]]


async def test_liability_by_campaign_and_member_and_month_end_summaries_follow_the_ledger(
    wallet: RunningWallet,
) -> None:
    run = uuid.uuid4().hex[:8]
    alice, bob = f"liab-a-{run}", f"liab-b-{run}"
    spring, autumn = f"spring-{run}", f"autumn-{run}"
    await caught_up(wallet)
    wallet.clock.set(datetime(2029, 12, 1, tzinfo=UTC))  # whatever the backlog earned expires here
    await wait_until(lambda: no_due_lots(wallet), what="the backlog's lots expired")

    wallet.clock.set(datetime(2030, 1, 15, 12, tzinfo=UTC))
    await award(wallet, alice, spring, 100)
    await award(wallet, bob, autumn, 50)
    await award(wallet, bob, spring, 10)
    wallet.clock.set(datetime(2030, 1, 20, 12, tzinfo=UTC))
    await adjust(wallet, alice, amount="30")
    wallet.clock.set(datetime(2030, 2, 10, 12, tzinfo=UTC))
    await redeem(wallet, alice, 120)  # the spring lot (expiring first), then 20 of the adjustment
    bobs_autumn = await wallet.runtime.pool.fetchval(
        "SELECT entry_id FROM lots WHERE member_id = $1 AND campaign_id = $2", bob, autumn
    )
    await adjust(wallet, bob, entry_type="reversal", reverses_entry_id=str(bobs_autumn), amount="20")

    january = await report(wallet, "liability", as_of="2030-01-31", member_id=alice)
    january_bob = await report(wallet, "liability", role="auditor", as_of="2030-01-31", member_id=bob)
    february = await report(wallet, "liability", role="admin", as_of="2030-02-28", member_id=alice)
    february_bob = await report(wallet, "liability", as_of="2030-02-28", member_id=bob)
    before_any = await report(wallet, "liability", as_of="2030-01-14", member_id=alice)

    assert lines(january) == [(alice, None, "30"), (alice, spring, "100")]
    assert (january["total_points"], january["members"], january["cutoff"][:10]) == ("130", 1, "2030-02-01")
    assert lines(january_bob) == [(bob, autumn, "50"), (bob, spring, "10")]
    assert lines(february) == [(alice, None, "10")]
    assert lines(february_bob) == [(bob, autumn, "30"), (bob, spring, "10")]
    assert (before_any["items"], before_any["total_points"]) == ([], "0")
    for body in (january, january_bob, february, february_bob):
        member = body["items"][0]["member_id"]
        assert int(body["total_points"]) == await ledger_balance(wallet, member, body["cutoff"])

    by_spring = await report(wallet, "liability", as_of="2030-01-31", campaign_id=spring, limit=1)
    rest = await report(
        wallet, "liability", as_of="2030-01-31", campaign_id=spring, limit=1, after_member=alice
    )
    assert by_spring["by_campaign"] == [{"campaign_id": spring, "points": "110", "members": 2}]
    assert (lines(by_spring), by_spring["next_after_member"]) == ([(alice, spring, "100")], alice)
    assert (lines(rest), rest["next_after_member"]) == ([(bob, spring, "10")], None)

    exported = await report(wallet, "liability", as_of="2030-01-31", member_id=alice, format="csv")
    as_jsonl = await report(wallet, "liability", as_of="2030-02-28", member_id=bob, format="jsonl")
    assert list(csv.reader(io.StringIO(exported))) == [
        ["member_id", "campaign_id", "points"],
        [alice, "", "30"],
        [alice, spring, "100"],
    ]
    assert as_jsonl.splitlines() == [
        f'{{"member_id":"{bob}","campaign_id":"{autumn}","points":"30"}}',
        f'{{"member_id":"{bob}","campaign_id":"{spring}","points":"10"}}',
    ]

    jan = await report(wallet, "month-end", month="2030-01")
    feb = await report(wallet, "month-end", role="auditor", month="2030-02")
    assert (jan["earned"], jan["adjusted_credit"], jan["burned"], jan["expired"]) == ("160", "30", "0", "0")
    assert int(jan["closing_points"]) - int(jan["opening_points"]) == 190
    assert (feb["burned"], feb["adjusted_debit"], feb["adjusted_net"]) == ("120", "20", "-20")
    assert feb["opening_points"] == jan["closing_points"]
    assert int(feb["closing_points"]) - int(feb["opening_points"]) == -140
    assert (jan["reconciles"], feb["reconciles"]) == (True, True)
    assert jan["by_entry_type"]["milestone_award"] == {"direction": "credit", "entries": 3, "points": "160"}

    wallet.clock.set(datetime(2031, 1, 25, tzinfo=UTC))  # every lot of this test is past its expiry
    await wait_until(lambda: no_due_lots(wallet), what="the expiry job's entries")
    expiries = await report(wallet, "month-end", month="2031-01")
    after_expiry = await report(wallet, "liability", as_of="2031-01-31", campaign_id=spring)
    assert (expiries["expired"], expiries["closing_points"], expiries["reconciles"]) == ("50", "0", True)
    assert (after_expiry["items"], after_expiry["by_campaign"]) == ([], [])


async def test_reports_refuse_bad_input_naming_the_field_and_other_roles(wallet: RunningWallet) -> None:
    cases = [
        ("month-end", {"month": "2030-13"}, "query.month"),
        ("month-end", {"month": "30-01"}, "query.month"),
        ("month-end", {}, "query.month"),
        ("liability", {"as_of": "2030-02-30"}, "query.as_of"),
        ("liability", {"as_of": "9999-12-31"}, "query.as_of"),
        ("liability", {"member_id": "a\x00b"}, "query.member_id"),
        ("liability", {"limit": 0}, "query.limit"),
        ("liability", {"format": "xlsx"}, "query.format"),
    ]
    for path, params, field in cases:
        response = await wallet.http.get(
            f"/v1/wallet/reports/{path}", params=params, headers=wallet.auth("finance")
        )
        assert response.status_code == 422, (path, params)
        assert [e["field"] for e in response.json()["errors"]] == [field], (path, params)
    for role in ("ops", "support_agent", "member", "partner"):
        for path, params in (("month-end", {"month": "2030-01"}), ("liability", {})):
            response = await wallet.http.get(
                f"/v1/wallet/reports/{path}", params=params, headers=wallet.auth(role)
            )
            assert response.status_code == 403, (role, path)
