"""Two replicas of every service, in the same consumer groups, share the work with no duplicates.

The system runs each of the six services twice (`order` and `order-2`, …), as `orchard up --replicas 2`
does. Records arrive from an "HRIS" on `ipa.record_submitted`; the test then checks the outcome from
the outside: one order per record, one code per order, one message per recipient, one points credit
per award. Each replica's `/metrics` shows it handled part of the topic and not all of it — so the two
split one group's partitions rather than each reading everything — and either replica answers for the
shared state.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from chassis.testing import wait_until
from contracts.ipa import IpaRecordSubmitted
from contracts.topics import Topics
from tests import pipeline as p
from tests.pipeline import RUN
from tests.system import SERVICES, System, running_system

VOUCHERS = 240
POINTS_AWARDS = 20
_HANDLED = re.compile(r"^orchard_events_consumed_total\{([^}]*)\} (\S+)$", re.M)


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with running_system(replicas=2) as running:
        yield running


async def _handled(url: str, topic: str) -> float:
    """Events of `topic` this process's consumers handled (first deliveries and redeliveries)."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics")).text
    return sum(
        float(value)
        for labels, value in _HANDLED.findall(text)
        if f'topic="{topic}"' in labels and 'outcome="handled"' in labels
    )


async def test_two_replicas_of_every_service_share_the_work_without_duplicates(system: System) -> None:
    assert all(system.pid(f"{name}-2") for name in SERVICES), "every service runs a second replica"
    # (service, a topic it consumes on this path, how many events of this test it carries: one each,
    # so if both replicas read it all — two groups instead of one — they would handle twice as many)
    paths: list[tuple[str, str, int | None]] = [
        ("order", Topics.IPA_RECORD_SUBMITTED, VOUCHERS + POINTS_AWARDS),
        ("voucher", Topics.ORDER_STATE_CHANGED, None),  # several state changes per order
        ("delivery", Topics.VOUCHER_ISSUED, VOUCHERS),
    ]
    before = {
        (url, topic): await _handled(url, topic)
        for name, topic, _ in paths
        for url in system.replica_urls(name)
    }

    async with p.clients(system) as (order, voucher):
        campaign_id = await p.campaign(voucher, order, "replicas", codes=VOUCHERS + 10)
        points_campaign = f"replica-points-{RUN}"
        created = await voucher.post(
            "/v1/campaigns",
            json={
                "campaign_id": points_campaign,
                "name": "e2e replica points",
                "reward_type": "points",
                "default_channel": "email",
            },
        )
        assert created.status_code == 201, created.text
        vouchers = [
            p.record(
                campaign_id,
                f"replica-{RUN}-{n:04d}",
                n,
                channel="email" if n % 2 else "sms",
                phone=f"+44772{int(RUN, 16) % 1000:03d}{n:04d}",
            )
            for n in range(1, VOUCHERS + 1)
        ]
        awards = [
            {
                "external_ref": f"replica-points-{RUN}-{n:03d}",
                "member_id": f"replica-member-{RUN}-{n:03d}",
                "email": f"replica-member-{RUN}-{n:03d}@points.example.com",
                "campaign_id": points_campaign,
                "reward_type": "points",
                "amount": "150",
                "currency": "PTS",
            }
            for n in range(1, POINTS_AWARDS + 1)
        ]

        async def points_campaign_known() -> bool:
            answer = await order.post(
                "/v1/ipa/batches", params={"mode": "dry_run"}, json={"records": awards[:1]}
            )
            batch = answer.json()["batch_id"]
            await wait_until(
                lambda: _judged(order, batch), timeout=60, interval=0.3, what="a dry run to be judged"
            )
            return (await order.get(f"/v1/ipa/batches/{batch}")).json()["rejected"] == 0

        await wait_until(points_campaign_known, timeout=60, interval=1.0, what="the points campaign")
        await p.from_hris(system, *(IpaRecordSubmitted.model_validate(r) for r in [*vouchers, *awards]))

        async def all_completed() -> bool:
            return (await p.summary(order, campaign_id))["by_state"].get("completed", 0) >= VOUCHERS

        await wait_until(all_completed, timeout=240, interval=1.0, what=f"{VOUCHERS} completed orders")

        orders = await p.orders(order, campaign_id)
        assert Counter(o["external_ref"] for o in orders) == Counter(r["external_ref"] for r in vouchers)
        assert (await p.summary(order, campaign_id))["by_state"] == {
            "pending": 0,
            "completed": VOUCHERS,
            "cancelled": 0,
        }
        codes: dict[str, set[str]] = {}
        for issued in await p.issued(system, campaign_id):
            codes.setdefault(issued["data"]["order_id"], set()).add(issued["data"]["code_id"])
        assert set(codes) == {o["order_id"] for o in orders}
        assert all(len(c) == 1 for c in codes.values()), "one code per order"
        assert len({next(iter(c)) for c in codes.values()}) == VOUCHERS, "no code in two orders"
        assert (await p.code_counts(voucher, campaign_id)).get("issued", 0) == VOUCHERS

        # Either replica answers for the one shared state.
        async with httpx.AsyncClient(
            base_url=system.replica_urls("order")[1], headers=system.headers(), timeout=30
        ) as order_2:
            assert (await p.summary(order_2, campaign_id)) == await p.summary(order, campaign_id)

    emails = p.emails_by_recipient(system)
    messages = p.messages_by_recipient(system)
    for r in vouchers:
        if r["channel"] == "email":
            assert emails[r["email"].lower()] == 1, r["external_ref"]
        else:
            assert messages[r["phone"]] == 1, r["external_ref"]

    wallet_urls = system.replica_urls("wallet")
    async with httpx.AsyncClient(headers=system.headers(), timeout=30) as client:
        for award in awards:
            url = f"{wallet_urls[int(award['external_ref'][-3:]) % 2]}/v1/members/{award['member_id']}/wallet"

            async def credited(url: str = url) -> bool:
                answer = await client.get(url)
                return answer.status_code == 200 and answer.json()["balance"] == "150"

            await wait_until(credited, timeout=60, interval=0.5, what=f"{award['member_id']} credited once")

    for name, topic, events in paths:
        shares = [await _handled(url, topic) - before[url, topic] for url in system.replica_urls(name)]
        assert all(share > 0 for share in shares), f"both {name} replicas handled {topic}: {shares}"
        if events is not None:
            # every event once, give or take redeliveries after the group's first rebalance
            assert events <= sum(shares) < 1.5 * events, f"{name} replicas split {topic}: {shares}"


async def _judged(order: httpx.AsyncClient, batch_id: str) -> bool:
    progress = (await order.get(f"/v1/ipa/batches/{batch_id}")).json()
    return progress.get("status") in ("completed", "failed", "rejected")
