"""Messages to members through the directory: one-time codes (`delivery.message_requested`) and member
notifications (points credited or about to expire, an order cancelled or on hold, a voucher's expiry
extended, a ticket updated). Each is queued like any templated message — the same workers, retries and
sinks as a one-time code — once per `message_id`.

A notification is skipped when the member opted out of its kind, or has no address on file; it goes by
the member's preferred channel when they can be reached on it. A one-time code keeps the channel asked
for when the member has an address for it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import structlog
from pydantic import SecretStr

from chassis.consumer import Subscription
from chassis.db import Connection
from contracts.envelope import Envelope
from contracts.members import NotificationKind
from contracts.orders import FulfilmentStatus, OrderState, OrderStateChanged
from contracts.topics import Topics
from contracts.values import Channel
from contracts.vouchers import CodeStatus, VoucherStatusChanged
from contracts.wallet import Direction, WalletTransactionRecorded

from .. import repository
from ..codes import CodeVault
from . import repository as directory
from .domain import reaching_channel, wants

log = structlog.get_logger(__name__)

NOTICE_IDS: Final = uuid.UUID("6b0f9e5e-4c1a-4f57-9a43-2f4d7c8e1b30")
"""Namespace of notification message ids: one event gives one message id, so a redelivery sends once."""


def notice_id(kind: NotificationKind, *source: object) -> uuid.UUID:
    return uuid.uuid5(NOTICE_IDS, ":".join([kind.value, *(str(part) for part in source)]))


@dataclass(frozen=True)
class MemberMessage:
    message_id: uuid.UUID
    member_id: str
    template: str
    channel: Channel
    """The channel asked for; for a notification, the one used when the member prefers none."""
    correlation_id: str
    params: Mapping[str, str] = field(default_factory=dict)
    notice: NotificationKind | None = None
    locale: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None


async def send_to_member(conn: Connection, vault: CodeVault, m: MemberMessage) -> bool:
    """Queue `m` with the directory's details filling what it does not carry; False when skipped."""
    known = await repository.contacts_of(conn, m.member_id)
    entry: dict[str, Any] = dict(known) if known is not None else {}
    if m.notice is not None and not wants(entry.get("opted_out"), m.notice):
        log.info("member_notice_opted_out", member_id=m.member_id, notice=m.notice.value)
        return False
    email = m.email or entry.get("email")
    phone = m.phone or entry.get("phone")
    preferred = Channel(entry["preferred_channel"]) if entry.get("preferred_channel") else None
    order = (preferred, m.channel) if m.notice is not None else (m.channel, preferred)
    channel = reaching_channel(order, email, phone)
    if channel is None and m.notice is not None:
        log.info("member_notice_unreachable", member_id=m.member_id, notice=m.notice.value)
        return False
    return await repository.queue_message(
        conn,
        repository.MessageDetails(
            message_id=m.message_id,
            member_id=m.member_id,
            channel=channel or m.channel,
            template=m.template,
            # A notification speaks the member's language; a one-time code the requester's.
            locale=(entry.get("locale") or m.locale if m.notice else m.locale or entry.get("locale")) or "en",
            sealed_params=vault.seal(SecretStr(json.dumps(dict(m.params)))),
            name=m.name or entry.get("name"),
            email=email,
            phone=phone,
            correlation_id=m.correlation_id,
        ),
    )


def _notice(
    kind: NotificationKind, member_id: str, env: Envelope[Any], params: Mapping[str, str], *source: object
) -> MemberMessage:
    return MemberMessage(
        message_id=notice_id(kind, *source),
        member_id=member_id,
        template=kind.value,
        channel=Channel.EMAIL,
        correlation_id=env.correlation_id,
        params=params,
        notice=kind,
    )


def _was_extended(d: VoucherStatusChanged) -> bool:
    """A status event that moved a delivered code's expiry (the code kept its status, or came back from
    expired) rather than one of issue, redemption, flagging or recovery."""
    if d.order_id is None or d.expires_at is None or d.test or d.status is CodeStatus.EXPIRED:
        return False
    return d.previous_status in (d.status, CodeStatus.EXPIRED)


class NoticeHandlers:
    """Kafka in: the events members are told about, each on a subscription of its own."""

    def __init__(self, vault: CodeVault) -> None:
        self.vault = vault

    async def on_points_recorded(self, conn: Connection, env: Envelope[Any]) -> None:
        d: WalletTransactionRecorded = env.data
        params = {"points": str(d.amount), "balance": str(d.balance_after), "entry_type": d.entry_type.value}
        kind = NotificationKind.POINTS_CREDITED
        await send_to_member(conn, self.vault, _notice(kind, d.member_id, env, params, d.entry_id))

    async def on_order_changed(self, conn: Connection, env: Envelope[Any]) -> None:
        d: OrderStateChanged = env.data
        kind = (
            NotificationKind.ORDER_CANCELLED
            if d.state is OrderState.CANCELLED
            else NotificationKind.ORDER_ON_HOLD
        )
        params = {"booking_id": d.booking_id, "reason": d.reason or ""}
        await send_to_member(conn, self.vault, _notice(kind, d.member_id, env, params, d.order_id))

    async def on_voucher_changed(self, conn: Connection, env: Envelope[Any]) -> None:
        d: VoucherStatusChanged = env.data
        if d.order_id is None or d.expires_at is None or not _was_extended(d):
            return
        held = await directory.voucher_for_notice(conn, d.order_id)
        if held is None or held["member_id"] is None or held["expires_at"] is None:
            return  # not a code this service delivered (yet): nothing was promised to a member
        if not await directory.note_expiry(conn, d.order_id, later_than=held["expires_at"], now=d.expires_at):
            return
        params = {
            "booking_id": held["booking_id"] or "",
            "masked_code": held["masked_code"] or "",
            "expires_on": _day(d.expires_at),
        }
        kind = NotificationKind.EXPIRY_EXTENDED
        notice = _notice(kind, held["member_id"], env, params, d.order_id, d.expires_at.isoformat())
        await send_to_member(conn, self.vault, notice)

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                "member-notices-wallet",
                Topics.WALLET_TRANSACTION_RECORDED,
                WalletTransactionRecorded,
                self.on_points_recorded,
                relevant=lambda d: d.direction is Direction.CREDIT,
            ),
            Subscription(
                "member-notices-orders",
                Topics.ORDER_STATE_CHANGED,
                OrderStateChanged,
                self.on_order_changed,
                # A UAT test order's member hears of its voucher only (marked as a test), never of its hold
                # or cancellation.
                relevant=lambda d: (
                    not d.test
                    and (d.state is OrderState.CANCELLED or d.fulfilment_status is FulfilmentStatus.ON_HOLD)
                ),
            ),
            Subscription(
                "member-notices-vouchers",
                Topics.VOUCHER_STATUS_CHANGED,
                VoucherStatusChanged,
                self.on_voucher_changed,
                relevant=_was_extended,
            ),
        ]


def _day(moment: datetime) -> str:
    return moment.date().isoformat()
