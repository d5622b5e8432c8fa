"""Kafka in: each handler runs in the consumer's batch transaction with the event's inbox row."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from pydantic import ConfigDict

from chassis.consumer import Subscription
from chassis.db import Connection
from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.envelope import Envelope, EventData
from contracts.orders import OrderCancelRequested, OrderCreateRequested, OrderSource
from contracts.topics import Topics
from contracts.values import Channel
from contracts.vouchers import (
    AnyVoucherIssued,
    CampaignChanged,
    CampaignStatus,
    VoucherIssued,
    VoucherIssueFailed,
)

from . import intake, repository
from .domain import OrderEvent
from .orders import Cause, Followed, Recipient, cancel_order, create_orders, follow_many
from .repository import NewOrder, built_from

log = structlog.get_logger(__name__)


class SubmittedRecordCells(EventData):
    """`ipa.record_submitted` read as raw cells: format problems are the record's errors, answered on
    `ipa.record_rejected` field by field like an upload's, rather than a dead letter nobody reads."""

    model_config = ConfigDict(extra="allow", frozen=True)

    external_ref: Any = None
    batch_id: Any = None
    member_id: Any = None
    name: Any = None
    email: Any = None
    phone: Any = None
    channel: Any = None
    campaign_id: Any = None
    reward_type: Any = None
    amount: Any = None
    currency: Any = None
    reason: Any = None
    test: Any = None


class RecordWithoutReference(ValueError):
    """Without an external_ref a record can be neither deduplicated nor answered."""


def _cause(envelope: Envelope[Any]) -> Cause:
    return Cause(actor=f"service:{envelope.producer}", envelope=envelope)


async def on_campaign_changed(conn: Connection, envelope: Envelope[CampaignChanged]) -> None:
    applied = await repository.upsert_campaign(conn, envelope.data)
    if not applied:
        log.info(
            "campaign_snapshot_not_newer",
            campaign_id=envelope.data.campaign_id,
            version=envelope.data.version,
        )


def _submitted(envelope: Envelope[SubmittedRecordCells]) -> intake.Candidate:
    candidate = intake.Candidate(cells=envelope.data.model_dump(), cause=_cause(envelope))
    if intake.usable_identifier(candidate.external_ref) is None:
        raise RecordWithoutReference("the record has no usable external_ref (1 to 200 characters)")
    return candidate


async def on_records_submitted(conn: Connection, envelopes: Sequence[Envelope[SubmittedRecordCells]]) -> None:
    """Records judged and accepted together, with the effect of taking them one by one: a reference
    repeated in the batch is judged after its earlier occurrence was (so it is a duplicate of it)."""
    rounds: list[list[intake.Candidate]] = []
    seen: dict[str | None, int] = {}
    for envelope in envelopes:
        candidate = _submitted(envelope)
        n = seen[candidate.external_ref] = seen.get(candidate.external_ref, -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(candidate)
    for candidates in rounds:
        cause = candidates[0].cause
        assert cause is not None
        await intake.validate(conn, candidates, batch_id=None)
        await intake.accept(conn, candidates, source="topic", cause=cause)
        await intake.announce_rejections(conn, candidates, source="topic", cause=cause)


async def on_record_submitted(conn: Connection, envelope: Envelope[SubmittedRecordCells]) -> None:
    await on_records_submitted(conn, [envelope])


def _voucher_issued(envelope: Envelope[AnyVoucherIssued]) -> Followed:
    data = envelope.data
    return Followed(
        data.order_id, OrderEvent.VOUCHER_ISSUED, _cause(envelope), f"code {data.masked_code} issued"
    )


def _voucher_issue_failed(envelope: Envelope[VoucherIssueFailed]) -> Followed:
    data = envelope.data
    return Followed(data.order_id, OrderEvent.VOUCHER_ISSUE_FAILED, _cause(envelope), data.reason)


def _delivery_succeeded(envelope: Envelope[DeliverySucceeded]) -> Followed:
    data = envelope.data
    return Followed(
        data.order_id,
        OrderEvent.DELIVERY_SUCCEEDED,
        _cause(envelope),
        f"delivered by {data.channel} (attempt {data.attempt})",
    )


def _delivery_failed(envelope: Envelope[DeliveryFailed]) -> Followed:
    data = envelope.data
    event = OrderEvent.DELIVERY_FAILED_FINAL if data.final else OrderEvent.DELIVERY_RETRYING
    return Followed(
        data.order_id,
        event,
        _cause(envelope),
        f"{data.reason_code} (attempt {data.attempt}{', final' if data.final else ''})",
    )


def _following(
    name: str, topic: Topics, payload: type[EventData], item: Callable[[Any], Followed]
) -> Subscription:
    """A voucher or delivery event applied to its order; a fetched batch of them in a few statements."""

    async def handle_batch(conn: Connection, envelopes: Sequence[Envelope[Any]]) -> None:
        await follow_many(conn, [item(e) for e in envelopes])

    async def handle(conn: Connection, envelope: Envelope[Any]) -> None:
        await follow_many(conn, [item(envelope)])

    return Subscription(name, topic, payload, handle, handle_batch=handle_batch)


async def on_cancel_requested(conn: Connection, envelope: Envelope[OrderCancelRequested]) -> None:
    data = envelope.data
    actor = data.requested_by or f"service:{envelope.producer}"
    await cancel_order(
        conn,
        cause=Cause(actor=actor, envelope=envelope),
        reason=data.reason,
        order_id=data.order_id,
        external_ref=data.external_ref if data.order_id is None else None,
        refuse_completed=False,
    )


async def on_create_requested(conn: Connection, envelope: Envelope[OrderCreateRequested]) -> None:
    """A storefront order, once per idempotency key. A request that cannot be fulfilled (unknown or
    inactive campaign, no contact for the channel) still becomes an order, cancelled at once with the
    reason, so the saga sees a definite outcome and refunds the points."""
    data = envelope.data
    if await repository.storefront_order_exists(conn, data.idempotency_key, data.redemption_id):
        log.info("storefront_order_repeated", redemption_id=str(data.redemption_id))
        return
    campaigns = await repository.load_campaigns(conn, [data.campaign_id])
    campaign = campaigns.get(data.campaign_id)
    channel = data.channel or (campaign.default_channel if campaign else None)
    if channel is None:
        channel = Channel.EMAIL if data.email else Channel.SMS
    problem = None
    if campaign is None:
        problem = "unknown_campaign"
    elif campaign.status is not CampaignStatus.ACTIVE:
        problem = "campaign_inactive"
    elif (channel is Channel.EMAIL and not data.email) or (channel is not Channel.EMAIL and not data.phone):
        problem = "channel_unreachable"
    cause = Cause(actor=data.requested_by or f"service:{envelope.producer}", envelope=envelope)
    new = built_from(NewOrder, data, order_id=_uuid_for(data), source=OrderSource.STOREFRONT, channel=channel)
    if problem is None:
        await create_orders(
            conn,
            [
                (
                    new,
                    Recipient(name=data.name, email=data.email, phone=data.phone, locale=data.locale or "en"),
                    cause,
                )
            ],
        )
        return
    await _create_cancelled(conn, new, cause, problem)


def _uuid_for(data: OrderCreateRequested) -> uuid.UUID:
    # Derived from the idempotency key: a repeated request names the same order.
    return uuid.uuid5(uuid.NAMESPACE_URL, f"orchard:storefront:{data.idempotency_key}")


async def _create_cancelled(conn: Connection, new: NewOrder, cause: Cause, problem: str) -> None:
    await create_orders(conn, [(new, Recipient(), cause)], request_delivery=False)
    await cancel_order(conn, cause=cause, reason=problem, order_id=new.order_id)


def subscriptions() -> list[Subscription]:
    return [
        Subscription("campaigns", Topics.CAMPAIGN_CHANGED, CampaignChanged, on_campaign_changed),
        Subscription(
            "ipa-intake",
            Topics.IPA_RECORD_SUBMITTED,
            SubmittedRecordCells,
            on_record_submitted,
            handle_batch=on_records_submitted,
        ),
        _following("voucher-issued", Topics.VOUCHER_ISSUED, VoucherIssued, _voucher_issued),
        _following(
            "voucher-issue-failed", Topics.VOUCHER_ISSUE_FAILED, VoucherIssueFailed, _voucher_issue_failed
        ),
        _following("delivery-succeeded", Topics.DELIVERY_SUCCEEDED, DeliverySucceeded, _delivery_succeeded),
        _following("delivery-failed", Topics.DELIVERY_FAILED, DeliveryFailed, _delivery_failed),
        Subscription(
            "cancel-requests", Topics.ORDER_CANCEL_REQUESTED, OrderCancelRequested, on_cancel_requested
        ),
        Subscription(
            "storefront-orders", Topics.ORDER_CREATE_REQUESTED, OrderCreateRequested, on_create_requested
        ),
    ]
