"""Kafka in: the join of `delivery.requested` and `voucher.issued`, order state (cancellation and
notifications), support resends, low stock and SLA breaches. Each runs in the consumer's batch
transaction with its inbox row, and only writes tables: sending is the workers' job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from chassis import tracing
from chassis.audit import append_audit
from chassis.consumer import Subscription
from chassis.db import Connection
from chassis.sealed_codes import CodeOpener
from contracts.approvals import ApprovalDecided, ApprovalRequested
from contracts.campaigns import CampaignActivity
from contracts.delivery import DeliveryMessageRequested, DeliveryRequested
from contracts.envelope import Envelope
from contracts.orders import OrderState, OrderStateChanged
from contracts.support import SupportResendRequested, SupportSlaBreached
from contracts.topics import Topics
from contracts.vouchers import (
    AnyVoucherIssued,
    CodeStatus,
    VoucherIssued,
    VoucherIssuedV1,
    VoucherStatusChanged,
    VoucherStockLow,
)

from . import notifications, repository, review
from .codes import CodeVault
from .domain import DeliveryError
from .members.notices import MemberMessage, NoticeHandlers, send_to_member
from .settings import DeliverySettings

log = structlog.get_logger(__name__)


class DeliveryHandlers:
    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self.vault = CodeVault(settings.code_key)
        self.opener = CodeOpener([settings.seal_key, settings.seal_previous_key])

    async def on_delivery_requested(self, conn: Connection, env: Envelope[Any]) -> None:
        d: DeliveryRequested = env.data
        await repository.record_request(conn, _request(env))
        await repository.remember_contacts(
            conn, d.member_id, name=d.name, email=d.email, phone=d.phone, locale=d.locale
        )
        await repository.queue_if_ready(conn, d.order_id, _traceparent(env))

    async def on_delivery_requests(self, conn: Connection, envs: Sequence[Envelope[Any]]) -> None:
        """`on_delivery_requested` for a batch: three statements and one wake-up per channel."""
        await repository.record_requests(conn, [_request(env) for env in envs])
        await repository.remember_many_contacts(
            conn,
            [
                repository.ContactDetails(d.member_id, d.name, d.email, d.phone, d.locale)
                for d in (env.data for env in envs)
            ],
        )
        await repository.queue_all_ready(
            conn, [env.data.order_id for env in envs], [_traceparent(env) for env in envs]
        )

    async def on_message_requested(self, conn: Connection, env: Envelope[Any]) -> None:
        d: DeliveryMessageRequested = env.data
        if d.email or d.phone:
            await repository.remember_contacts(
                conn, d.member_id, name=d.name, email=d.email, phone=d.phone, locale=None
            )
        await send_to_member(
            conn,
            self.vault,
            MemberMessage(
                message_id=d.message_id,
                member_id=d.member_id,
                template=d.template,
                channel=d.channel,
                correlation_id=env.correlation_id,
                params=d.params,
                notice=d.notice,
                locale=d.locale,
                name=d.name,
                email=d.email,
                phone=d.phone,
            ),
        )

    def _voucher(self, env: Envelope[Any]) -> repository.VoucherDetails:
        d: AnyVoucherIssued = env.data
        # Opened here only to be held under this service's own key until sent (a version 1 event,
        # still on the topic from before codes were sealed, carries it in clear).
        code = d.code if isinstance(d, VoucherIssuedV1) else self.opener.open(d.sealed_code, d.code_id)
        return repository.VoucherDetails(
            order_id=d.order_id,
            campaign_id=d.campaign_id,
            code_id=d.code_id,
            sealed_code=self.vault.seal(code),
            masked_code=d.masked_code,
            face_value=d.face_value,
            currency=d.currency,
            expires_at=d.expires_at,
            correlation_id=env.correlation_id,
        )

    async def on_voucher_issued(self, conn: Connection, env: Envelope[Any]) -> None:
        await repository.record_voucher(conn, self._voucher(env))
        await repository.queue_if_ready(conn, env.data.order_id, _traceparent(env))

    async def on_vouchers_issued(self, conn: Connection, envs: Sequence[Envelope[Any]]) -> None:
        """`on_voucher_issued` for a batch: two statements and one wake-up per channel."""
        await repository.record_vouchers(conn, [self._voucher(env) for env in envs])
        await repository.queue_all_ready(
            conn, [env.data.order_id for env in envs], [_traceparent(env) for env in envs]
        )

    async def on_order_state_changed(self, conn: Connection, env: Envelope[Any]) -> None:
        d: OrderStateChanged = env.data
        if await repository.record_order_state(conn, d.order_id, d.campaign_id, d.state.value):
            log.info("delivery_cancelled_with_order", order_id=str(d.order_id))
        await notifications.order_state_changed(conn, self.settings, d)

    async def on_order_states_changed(self, conn: Connection, envs: Sequence[Envelope[Any]]) -> None:
        """`on_order_state_changed` for a batch: up to two statements, and one for the notifications."""
        changes: list[OrderStateChanged] = [env.data for env in envs]
        cancelled = await repository.record_order_states(
            conn, [(d.order_id, d.campaign_id, d.state.value) for d in changes]
        )
        for order_id in cancelled:
            log.info("delivery_cancelled_with_order", order_id=str(order_id))
        await notifications.order_states_changed(conn, self.settings, changes)

    async def on_resend_requested(self, conn: Connection, env: Envelope[Any]) -> None:
        d: SupportResendRequested = env.data
        row = (
            await repository.find_delivery(conn, d.delivery_id)
            if d.delivery_id
            else await repository.find_by_order(conn, d.order_id)
        )
        if row is None:
            log.warning("resend_for_unknown_delivery", order_id=str(d.order_id))
            return
        try:
            async with conn.transaction():  # a savepoint: a refused resend leaves nothing behind
                await review.resend(conn, row["delivery_id"], actor=d.requested_by, reason=d.reason)
        except DeliveryError as refused:
            await append_audit(
                conn,
                actor=d.requested_by,
                action="delivery.resend_refused",
                subject_type="delivery",
                subject_id=str(row["delivery_id"]),
                details={"order_id": str(d.order_id), "ticket_id": d.ticket_id, "why": str(refused)},
            )
            log.info("resend_refused", order_id=str(d.order_id), why=type(refused).__name__)

    async def on_code_status_changed(self, conn: Connection, env: Envelope[Any]) -> None:
        """A code its order no longer holds (recovered, voided) is dropped: no retry or resend sends it."""
        d: VoucherStatusChanged = env.data
        assert d.order_id is not None  # `_code_left_its_order`
        if await repository.drop_code(conn, d.order_id, d.code_id):
            log.info("held_code_dropped", order_id=str(d.order_id), status=d.status.value)

    async def on_stock_low(self, conn: Connection, env: Envelope[Any]) -> None:
        await notifications.stock_low(conn, self.settings, env.data)

    async def on_campaign_activity(self, conn: Connection, env: Envelope[Any]) -> None:
        await notifications.campaign_activity(conn, self.settings, env.data)

    async def on_approval_requested(self, conn: Connection, env: Envelope[Any]) -> None:
        await notifications.approval_requested(conn, self.settings, env.data)

    async def on_approval_decided(self, conn: Connection, env: Envelope[Any]) -> None:
        await notifications.approval_decided(conn, self.settings, env.data)

    async def on_sla_breached(self, conn: Connection, env: Envelope[Any]) -> None:
        await notifications.sla_breached(conn, self.settings, env.data)

    def _follows(self, d: OrderStateChanged) -> bool:
        """An order's changes matter here when it is cancelled (its delivery stops, its code is dropped)
        or when one is posted to Slack/Teams; the others (three per order) are passed over, so they
        neither cost a transaction nor wait for rows a worker is recording."""
        return d.state is OrderState.CANCELLED or notifications.posts_order_state(self.settings, d)

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(
                "delivery-requests",
                Topics.DELIVERY_REQUESTED,
                DeliveryRequested,
                self.on_delivery_requested,
                handle_batch=self.on_delivery_requests,
            ),
            Subscription(
                "delivery-vouchers",
                Topics.VOUCHER_ISSUED,
                VoucherIssued,
                self.on_voucher_issued,
                handle_batch=self.on_vouchers_issued,
            ),
            Subscription(
                "delivery-orders",
                Topics.ORDER_STATE_CHANGED,
                OrderStateChanged,
                self.on_order_state_changed,
                handle_batch=self.on_order_states_changed,
                relevant=self._follows,
            ),
            Subscription(
                "delivery-resends",
                Topics.SUPPORT_RESEND_REQUESTED,
                SupportResendRequested,
                self.on_resend_requested,
            ),
            Subscription(
                "delivery-messages",
                Topics.DELIVERY_MESSAGE_REQUESTED,
                DeliveryMessageRequested,
                self.on_message_requested,
            ),
            Subscription(
                "delivery-code-statuses",
                Topics.VOUCHER_STATUS_CHANGED,
                VoucherStatusChanged,
                self.on_code_status_changed,
                relevant=_code_left_its_order,
            ),
            Subscription("delivery-stock", Topics.VOUCHER_STOCK_LOW, VoucherStockLow, self.on_stock_low),
            Subscription(
                "delivery-campaign-activity",
                Topics.CAMPAIGN_ACTIVITY,
                CampaignActivity,
                self.on_campaign_activity,
            ),
            Subscription(
                "delivery-approvals",
                Topics.APPROVAL_REQUESTED,
                ApprovalRequested,
                self.on_approval_requested,
            ),
            Subscription(
                "delivery-approval-decisions",
                Topics.APPROVAL_DECIDED,
                ApprovalDecided,
                self.on_approval_decided,
            ),
            Subscription(
                "delivery-sla", Topics.SUPPORT_SLA_BREACHED, SupportSlaBreached, self.on_sla_breached
            ),
            *NoticeHandlers(self.vault).subscriptions(),
        ]


def _code_left_its_order(d: VoucherStatusChanged) -> bool:
    return d.order_id is not None and d.status in (CodeStatus.RECOVERED, CodeStatus.VOID)


def _traceparent(env: Envelope[Any]) -> str | None:
    """The context of the span handling `env`: a delivery it makes due is sent within its trace."""
    return tracing.trace_headers(str(env.event_id)).get("traceparent")


def _request(env: Envelope[Any]) -> repository.RequestDetails:
    d: DeliveryRequested = env.data
    return repository.RequestDetails(
        order_id=d.order_id,
        booking_id=d.booking_id,
        member_id=d.member_id,
        campaign_id=d.campaign_id,
        channel=d.channel,
        name=d.name,
        email=d.email,
        phone=d.phone,
        locale=d.locale,
        template=d.template,
        correlation_id=env.correlation_id,
        test=d.test,
    )
