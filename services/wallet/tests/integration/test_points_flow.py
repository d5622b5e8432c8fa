"""The wallet service end to end: events in on the real broker, answers out through the outbox, HTTP."""

from __future__ import annotations

import json
import uuid
from typing import Any

from chassis.testing import produce, read_topic, wait_until
from contracts.envelope import Envelope, EventData
from contracts.ipa import IpaRecordAccepted
from contracts.registry import for_payload
from contracts.topics import Topics
from contracts.values import RewardType
from contracts.wallet import EntryType, WalletCreditRequested, WalletDebitRequested, WalletReference
from services.wallet.tests.support import event


def member_id() -> str:
    return f"member-{uuid.uuid4().hex[:10]}"


async def send(bootstrap: str, *envelopes: Envelope[Any], key: str) -> None:
    await produce(bootstrap, envelopes[0].event_type, [(key.encode(), e.to_bytes()) for e in envelopes])


async def publish(bootstrap: str, data: EventData, *, producer: str, key: str) -> None:
    """`data` sent on its registry topic, as `producer` publishes it."""
    await send(bootstrap, event(for_payload(data).name, data, producer=producer), key=key)


async def answers(bootstrap: str, topic: str, member: str) -> list[dict[str, Any]]:
    records = await read_topic(bootstrap, topic)
    found = [json.loads(r.value) for r in records if r.key == member.encode()]
    return [f["data"] for f in found]


def ipa_points(member: str, amount: str, external_ref: str | None = None) -> Envelope[IpaRecordAccepted]:
    return event(
        Topics.IPA_RECORD_ACCEPTED,
        IpaRecordAccepted(
            external_ref=external_ref or f"ext-{uuid.uuid4().hex[:8]}",
            member_id=member,
            campaign_id="points-q1",
            reward_type=RewardType.POINTS,
            amount=amount,
            reason="Q1 milestone",
        ),
        producer="order",
    )


def debit_request(member: str, amount: int, key: str | None = None) -> Envelope[WalletDebitRequested]:
    return event(
        Topics.WALLET_DEBIT_REQUESTED,
        WalletDebitRequested(
            member_id=member,
            amount=amount,
            idempotency_key=key or f"redeem-{uuid.uuid4()}",
            entry_type=EntryType.REDEMPTION,
            reason_code="storefront",
            reference=WalletReference(redemption_id=uuid.uuid4()),
            requested_by="service:redemption",
        ),
        producer="redemption",
    )


async def balance(wallet, member: str) -> int:
    response = await wallet.http.get(f"/v1/members/{member}/wallet", headers=wallet.auth("admin"))
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


async def entries_of(wallet, member: str) -> int:
    return await wallet.runtime.pool.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE member_id = $1", member
    )


async def test_accepted_points_records_are_credited_once_however_often_they_arrive(wallet):
    member = member_id()
    record = ipa_points(member, "250", external_ref=f"ext-{uuid.uuid4().hex[:8]}")
    # The same event twice (redelivery) and the same record re-sent as a new event (upstream retry).
    again = event(Topics.IPA_RECORD_ACCEPTED, record.data, producer="order")
    voucher_reward = event(
        Topics.IPA_RECORD_ACCEPTED,
        IpaRecordAccepted(
            external_ref=f"ext-{uuid.uuid4().hex[:8]}",
            member_id=member,
            campaign_id="vouchers",
            reward_type=RewardType.VOUCHER,
            amount="25.00",
            currency="EUR",
            order_id=uuid.uuid4(),
        ),
        producer="order",
    )
    await send(wallet.bootstrap, record, record, again, voucher_reward, key=member)

    async def answered_twice() -> bool:
        return len(await answers(wallet.bootstrap, Topics.WALLET_TRANSACTION_RECORDED, member)) >= 2

    await wait_until(answered_twice, what="both copies of the record answered")
    recorded = await answers(wallet.bootstrap, Topics.WALLET_TRANSACTION_RECORDED, member)
    assert {r["entry_id"] for r in recorded} == {recorded[0]["entry_id"]}
    assert recorded[0]["entry_type"] == "milestone_award"
    assert recorded[0]["balance_after"] == "250"
    assert recorded[0]["reference"]["external_ref"] == record.data.external_ref
    assert await entries_of(wallet, member) == 1
    assert await balance(wallet, member) == 250


async def test_debits_are_answered_recorded_or_rejected_with_the_reason(wallet):
    member, stranger = member_id(), member_id()
    await send(wallet.bootstrap, ipa_points(member, "100"), key=member)
    await wait_until(lambda: _has_entries(wallet, member, 1), what="credit")

    spend = debit_request(member, 80)
    retried = event(Topics.WALLET_DEBIT_REQUESTED, spend.data, producer="redemption")
    too_much = debit_request(member, 30)
    # `spend` redelivered, then retried by the saga as a new event with the same idempotency key.
    await send(wallet.bootstrap, spend, spend, retried, too_much, key=member)
    await send(wallet.bootstrap, debit_request(stranger, 5), key=stranger)

    async def rejected() -> bool:
        mine = await answers(wallet.bootstrap, Topics.WALLET_DEBIT_REJECTED, member)
        theirs = await answers(wallet.bootstrap, Topics.WALLET_DEBIT_REJECTED, stranger)
        return bool(mine) and bool(theirs)

    await wait_until(rejected, what="both rejections")
    mine = await answers(wallet.bootstrap, Topics.WALLET_DEBIT_REJECTED, member)
    theirs = await answers(wallet.bootstrap, Topics.WALLET_DEBIT_REJECTED, stranger)
    assert [(r["idempotency_key"], r["reason"]) for r in mine] == [
        (too_much.data.idempotency_key, "insufficient_points")
    ]
    assert theirs[0]["reason"] == "unknown_member"
    recorded = await answers(wallet.bootstrap, Topics.WALLET_TRANSACTION_RECORDED, member)
    spent = [r for r in recorded if r["idempotency_key"] == spend.data.idempotency_key]
    assert len(spent) == 2  # the retry is answered again, with the same entry
    assert spent[0]["entry_id"] == spent[1]["entry_id"]
    assert spent[0]["balance_after"] == "20"
    assert await balance(wallet, member) == 20
    assert await entries_of(wallet, member) == 2


async def test_a_frozen_wallet_refuses_debits_until_an_admin_unfreezes_it(wallet):
    member = member_id()
    await send(wallet.bootstrap, ipa_points(member, "100"), key=member)
    await wait_until(lambda: _has_entries(wallet, member, 1), what="credit")
    response = await wallet.http.post(
        f"/v1/members/{member}/freeze", json={"reason": "suspected fraud"}, headers=wallet.auth("admin")
    )
    assert response.status_code == 200

    await send(wallet.bootstrap, debit_request(member, 10), key=member)

    async def rejected() -> bool:
        return bool(await answers(wallet.bootstrap, Topics.WALLET_DEBIT_REJECTED, member))

    await wait_until(rejected, what="frozen rejection")
    assert (await answers(wallet.bootstrap, Topics.WALLET_DEBIT_REJECTED, member))[0][
        "reason"
    ] == "wallet_frozen"
    await wallet.http.post(
        f"/v1/members/{member}/unfreeze", json={"reason": "cleared"}, headers=wallet.auth("admin")
    )
    await send(wallet.bootstrap, debit_request(member, 10), key=member)
    await wait_until(lambda: _has_entries(wallet, member, 2), what="debit after unfreezing")
    assert await balance(wallet, member) == 90


async def test_goodwill_credits_from_support_are_marked_support_initiated_in_the_audit_log(wallet):
    member = member_id()
    goodwill = event(
        Topics.WALLET_CREDIT_REQUESTED,
        WalletCreditRequested(
            member_id=member,
            amount=40,
            idempotency_key=f"goodwill-{uuid.uuid4()}",
            entry_type=EntryType.MANUAL_ADJUSTMENT,
            reason_code="goodwill",
            reference=WalletReference(ticket_id="T-1001"),
            requested_by="support_agent:bob",
        ),
        producer="support",
    )
    await send(wallet.bootstrap, goodwill, key=member)
    await wait_until(lambda: _has_entries(wallet, member, 1), what="goodwill credit")

    response = await wallet.http.get(f"/v1/members/{member}/audit", headers=wallet.auth("member", member))
    assert response.status_code == 200
    [entry] = response.json()["entries"]
    assert entry["action"] == "points_credited"
    assert entry["actor"] == "support_agent:bob"
    assert entry["details"]["support_initiated"] is True
    assert entry["details"]["reference"] == {"ticket_id": "T-1001"}


async def _has_entries(wallet, member: str, count: int) -> bool:
    return await entries_of(wallet, member) >= count
