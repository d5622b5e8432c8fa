"""The send queue's workers: outside the Kafka poll loop, per channel a pool of async workers with its
own concurrency and rate limit.

A worker's round: one statement claims up to `claim_batch` due deliveries under a lease (FOR UPDATE
SKIP LOCKED, status `sending`, attempt rows written `pending`, the first already `in_flight`). Then,
with no transaction open and no row lock held, it sends them one after the other. Each outcome is
recorded in a short transaction that also starts the next attempt (checks its order is still not
cancelled and marks it `in_flight`): one commit per message, and a worker never has more than one
message sent but not recorded. A cancellation committed during a send does not wait for it; the
recording sees it, and a failure then schedules no retry and no fallback (a success is recorded as
sent: it did go out). A timeout, an unreachable provider or a 429 stops the batch: the deliveries not
yet sent are queued again and their attempt rows dropped (nothing of them left). If the process dies,
the recovery job (after the lease) flags the one `in_flight` attempt `unknown` and queues it again with
the same idempotency key and Message-ID, and queues the `pending` claims again as never sent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jinja2
import structlog
from prometheus_client import Counter

from chassis import tracing
from chassis.db import Connection, quote_ident
from chassis.outbox import add_event
from chassis.wakeups import listen_locally
from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.envelope import Envelope
from contracts.topics import Topics
from contracts.values import Channel

from . import notifications, repository
from .channels import ChannelSender, Outgoing
from .codes import CodeVault
from .domain import (
    AttemptOutcome,
    Contacts,
    Fallback,
    ReasonCode,
    Retry,
    RetryPolicy,
    SendResult,
    after_failure,
)
from .settings import DeliverySettings
from .templates import Rendered, TemplateBook, VoucherView

log = structlog.get_logger(__name__)
PRODUCER = "delivery"

ATTEMPTS = Counter("orchard_delivery_attempts_total", "Delivery attempts by outcome", ["channel", "outcome"])


class RateLimiter:
    """Token bucket shared by one channel's workers: at most `rate` sends per second, small bursts."""

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self._rate = rate_per_s
        self._capacity = burst if burst is not None else max(1.0, rate_per_s / 10)
        self._tokens = self._capacity
        self._updated = time.monotonic()
        self._held_until = 0.0
        self._lock = asyncio.Lock()

    def hold(self, seconds: float) -> None:
        """The provider pushed back (429): no worker of this channel sends for `seconds`."""
        self._held_until = max(self._held_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._held_until:
                    await asyncio.sleep(self._held_until - now)
                    continue
                self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)

    def refund(self) -> None:
        self._tokens = min(self._capacity, self._tokens + 1)


class Doorbell:
    """Wakes one idle worker of a channel per ring (not all of them: the others would only find the
    queue already taken); a ring with nobody idle is kept for the next worker that goes idle."""

    def __init__(self) -> None:
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._rung = False
        self._closed = False

    def close(self) -> None:
        """Wake every worker now and later: the engine stops."""
        self._closed = True
        self.ring(everyone=True)

    def ring(self, everyone: bool = False) -> None:
        woken = False
        while self._idle and (everyone or not woken):
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken = True
        if not woken:
            self._rung = True

    async def wait(self) -> None:
        if self._closed:
            return
        if self._rung:
            self._rung = False
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._idle.remove(waiter)

    async def tick(self, interval_s: float, stopping: asyncio.Event) -> None:
        """Ring one idle worker every `interval_s`: deliveries that fall due by the clock (retries,
        lapsed claims) ring no bell. One look per channel and interval, not one per idle worker (20
        workers looking every half second were most of an idle delivery service's CPU)."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval_s)
            if self._idle:
                self.ring()


STOP_BATCH_REASONS = frozenset(
    {ReasonCode.PROVIDER_TIMEOUT, ReasonCode.PROVIDER_UNREACHABLE, ReasonCode.RATE_LIMITED}
)
"""A send failing so means the provider itself is in trouble: the rest of the batch is put back."""


def _live(row: asyncpg.Record) -> bool:
    """A claimed row to send now: the claim's first (`started`) or one `start_attempt` found live."""
    return bool(row.get("live", row.get("started", True)))


def _send_span(row: asyncpg.Record | None, channel: Channel) -> contextlib.AbstractContextManager[Any]:
    if row is None:
        return contextlib.nullcontext()
    return tracing.child_span(
        f"send {channel.value}",
        row["traceparent"],
        {
            "orchard.delivery_id": str(row["delivery_id"]),
            "orchard.delivery.kind": row["kind"],
            "orchard.delivery.attempt": row["attempts"],
            "orchard.delivery.channel": channel.value,
        },
    )


def message_id(delivery_id: uuid.UUID, send_round: int, channel: str, domain: str) -> str:
    return f"<{delivery_id}.{send_round}.{channel}@{domain}>"


class DeliveryEngine:
    def __init__(
        self,
        settings: DeliverySettings,
        senders: Mapping[Channel, ChannelSender],
        *,
        templates: TemplateBook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.senders = dict(senders)
        self.templates = templates or TemplateBook(settings.templates_dir)
        self.vault = CodeVault(settings.code_key)
        self.policy = RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s)
        self._rng = rng
        self._pool: asyncpg.Pool | None = None
        self._limiters = {c: RateLimiter(settings.rate_per_s(c)) for c in Channel}
        self._doorbells = {c: Doorbell() for c in Channel}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._stop_listening: Callable[[], None] = lambda: None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the engine is not started"
        return self._pool

    def bind(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def start(self, pool: asyncpg.Pool, dsn: str, schema: str) -> None:
        self._pool = pool
        self._stopping.clear()
        self._doorbells = {c: Doorbell() for c in Channel}
        # Due deliveries committed in this process ring the workers in memory (chassis/wakeups.py);
        # the LISTEN connection hears those committed elsewhere.
        self._stop_listening = listen_locally(schema, repository.WAKE_CHANNEL, self._ring)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            self._listener = await asyncpg.connect(dsn, server_settings={"search_path": quote_ident(schema)})
            await self._listener.add_listener(repository.WAKE_CHANNEL, self._on_notify)
        for channel in Channel:
            if not self.settings.workers(channel):
                continue
            ticker = self._doorbells[channel].tick(self.settings.queue_poll_interval_s, self._stopping)
            self._tasks.append(asyncio.create_task(ticker, name=f"delivery-{channel}-clock"))
            for n in range(self.settings.workers(channel)):
                self._tasks.append(asyncio.create_task(self._work(channel), name=f"delivery-{channel}-{n}"))
        log.info("delivery_workers_started", workers={c.value: self.settings.workers(c) for c in Channel})

    async def stop(self) -> None:
        self._stop_listening()
        self._stopping.set()
        for doorbell in self._doorbells.values():
            doorbell.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.settings.provider_timeout_s + 5)
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        for sender in self.senders.values():
            with contextlib.suppress(Exception):
                await sender.close()

    def _on_notify(self, *args: Any) -> None:
        self._ring(args[-1])

    def _ring(self, payload: str) -> bool:
        with contextlib.suppress(ValueError):
            self._doorbells[Channel(payload)].ring()
        return True

    async def _work(self, channel: Channel) -> None:
        limiter = self._limiters[channel]
        while not self._stopping.is_set():
            try:
                await limiter.acquire()
                worked = await self.run_once(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivery_worker_error", channel=channel.value, error=repr(exc))
                worked = False
                await asyncio.sleep(1.0)
            if not worked:
                limiter.refund()
                await self._doorbells[channel].wait()

    async def run_once(self, channel: Channel) -> bool:
        """Claim up to `claim_batch` due deliveries of `channel` under a lease (one statement), then send
        them one after the other with no transaction open, each outcome recorded before the next send
        starts; False when none is due. Each send takes a token of the channel's rate limit."""
        async with self.pool.acquire() as conn:
            claimed = await repository.claim_due(
                conn, channel, self.settings.lease_s, self.settings.claim_batch
            )
            if len(claimed) >= self.settings.claim_batch:
                self._doorbells[channel].ring()  # more is likely due: another idle worker helps
            if claimed:
                await self.send_claimed(conn, channel, claimed)
        return bool(claimed)

    async def send_claimed(self, conn: Connection, channel: Channel, claimed: list[asyncpg.Record]) -> None:
        """Send a claim's deliveries in claim order; no transaction or row lock is held during a send.
        The claim started the first; each next one is started (checked not cancelled, marked
        `in_flight`) in the short transaction that records the previous outcome: one commit per
        message, and never more than one message of this worker sent but not recorded. A timeout, an
        unreachable provider or a 429 stops the batch, and so does a batch running longer than one
        provider timeout (its claims would wait too long): the rest is queued again, never sent."""
        claims = [repository.claim_of(r) for r in claimed]
        turn = [0]  # the claim being sent; those after it were never started
        try:
            await self._send_in_turn(conn, channel, claimed, claims, turn)
        except Exception:
            # A recording that failed (a deadlock victim, the database gone) must not leave the claims
            # not yet started waiting a whole lease: they go back to the queue now, if they can.
            with contextlib.suppress(Exception):
                async with conn.transaction():
                    await repository.return_unsent(conn, claims[turn[0] + 1 :], 0.0)
            raise

    async def _send_in_turn(
        self,
        conn: Connection,
        channel: Channel,
        claimed: list[asyncpg.Record],
        claims: list[repository.Claim],
        turn: list[int],
    ) -> None:
        row: asyncpg.Record | None = claimed[0]
        if not claimed[0]["started"]:  # not as `claim_due` returned it: start the first here
            row = await repository.start_attempt(conn, claims[0], self.settings.lease_s)
        began = time.monotonic()
        for n in range(len(claims)):
            turn[0] = n
            rest = claims[n + 1 :]
            sending = row if row is not None and _live(row) else None
            # The send and its recording (whose delivery.succeeded/failed carries this context) are one
            # span of the allocation's trace, a child of the event that made the delivery due.
            with _send_span(sending, channel):
                result = await self._send_row(sending, channel) if sending is not None else None
                pause_s = self._pause_after(result, began)
                if rest and pause_s is None:
                    await self._limiters[channel].acquire()
                if result is None and not rest:
                    return
                async with conn.transaction():
                    if result is not None and sending is not None:
                        await self._record(conn, channel, sending, result)
                    if rest and pause_s is not None:
                        await repository.return_unsent(conn, rest, pause_s)
                    elif rest:
                        row = await repository.start_attempt(conn, rest[0], self.settings.lease_s)
            if rest and pause_s is not None:
                log.info("delivery_batch_stopped", channel=channel.value, returned=len(rest))
                if pause_s == 0:
                    self._doorbells[channel].ring()
                return
            if rest and (row is None or not _live(row)):
                self._limiters[channel].refund()
                if row is not None:
                    log.info("delivery_skipped_cancelled_order", delivery_id=str(row["delivery_id"]))

    def _pause_after(self, result: SendResult | None, began: float) -> float | None:
        """None: go on with the batch. Else stop it; the rest is due again after this many seconds."""
        if result is not None and not result.ok and result.reason_code in STOP_BATCH_REASONS:
            return min(result.retry_after_s or 1.0, 30.0)
        if time.monotonic() - began > self.settings.provider_timeout_s:
            return 0.0
        return None

    async def _send_row(self, row: asyncpg.Record, channel: Channel) -> SendResult:
        with structlog.contextvars.bound_contextvars(
            correlation_id=row["correlation_id"], delivery_id=str(row["delivery_id"]), channel=channel.value
        ):
            result = await self._send(row, channel)
        ATTEMPTS.labels(channel.value, "succeeded" if result.ok else "failed").inc()
        return result

    async def _record(
        self, conn: Connection, channel: Channel, row: asyncpg.Record, result: SendResult
    ) -> None:
        """One outcome, in the caller's short transaction. It never brings a cancelled delivery back: a
        failure of a delivery cancelled during its send schedules no retry and no fallback."""
        attempt = row["attempts"]
        if result.ok:
            if await repository.record_success(conn, row["delivery_id"], attempt, result):
                await self._succeeded(conn, channel, row, result)
            else:
                log.info("delivery_repeat_recorded", attempt=attempt, delivery_id=str(row["delivery_id"]))
            return
        now = await repository.lock_delivery(conn, row["delivery_id"])  # first, as recovery locks
        await repository.finish_attempt(conn, row["delivery_id"], attempt, AttemptOutcome.FAILED, result)
        if now is None or now["attempts"] != attempt or now["status"] == "sent":
            return  # the claim is void (whoever holds the delivery now decides), or a lapsed claim sent it
        cancelled = now["status"] == "cancelled" or now["order_state"] == "cancelled"
        if not cancelled and now["status"] != "sending":
            return
        with structlog.contextvars.bound_contextvars(
            correlation_id=row["correlation_id"], delivery_id=str(row["delivery_id"]), channel=channel.value
        ):
            await self._failed(conn, now, channel, attempt, result, cancelled=cancelled)

    async def _send(self, row: asyncpg.Record, channel: Channel) -> SendResult:
        to = row["email"] if channel is Channel.EMAIL else row["phone"]
        if not to:
            return SendResult.failure(ReasonCode.NO_CONTACT, f"no {channel.value} contact on file")
        if row["code_ciphertext"] is None:
            return SendResult.failure(ReasonCode.CODE_UNAVAILABLE, "the voucher code is no longer held")
        try:
            content = self._render(row, channel)
        except jinja2.TemplateError as exc:
            return SendResult.failure(
                ReasonCode.TEMPLATE_ERROR, f"template {row['template']}: {type(exc).__name__}"
            )
        outgoing = Outgoing(
            channel=channel,
            to=to,
            name=row["recipient_name"],
            content=content,
            message_id=message_id(
                row["delivery_id"], row["send_round"], channel.value, self.settings.message_id_domain
            ),
        )
        key = repository.idempotency_key(row["delivery_id"], row["send_round"], channel.value)
        try:
            return await self.senders[channel].send(outgoing, idempotency_key=key)
        except Exception as exc:  # an adapter bug must not leave the attempt unrecorded
            log.error("delivery_adapter_error", error=type(exc).__name__)
            return SendResult.failure(ReasonCode.PROVIDER_ERROR, f"adapter error: {type(exc).__name__}")

    def _render(self, row: asyncpg.Record, channel: Channel) -> Rendered:
        sealed = self.vault.open(bytes(row["code_ciphertext"]))
        if row["kind"] == "message":
            params = json.loads(sealed.get_secret_value())
            return self.templates.render_message(
                row["template"], channel, row["locale"], params, row["recipient_name"]
            )
        view = VoucherView(
            booking_id=row["booking_id"],
            campaign_id=row["campaign_id"],
            name=row["recipient_name"],
            locale=row["locale"],
            code=sealed,
            masked_code=row["masked_code"],
            face_value=row["face_value"],
            currency=row["currency"],
            expires_at=row["expires_at"],
            test=row["test"],
        )
        return self.templates.render(view, channel, row["template"])

    def _envelope(self, row: asyncpg.Record, data: DeliverySucceeded | DeliveryFailed) -> Envelope[Any]:
        topic = Topics.DELIVERY_SUCCEEDED if isinstance(data, DeliverySucceeded) else Topics.DELIVERY_FAILED
        return Envelope.new(
            event_type=topic, producer=PRODUCER, data=data, correlation_id=row["correlation_id"]
        )

    async def _succeeded(
        self, conn: Connection, channel: Channel, row: asyncpg.Record, result: SendResult
    ) -> None:
        log.info(
            "delivery_succeeded",
            attempt=row["attempts"],
            correlation_id=row["correlation_id"],
            delivery_id=str(row["delivery_id"]),
            channel=channel.value,
        )
        if row["kind"] != "voucher":
            return  # delivery.succeeded speaks of orders' vouchers only
        event = DeliverySucceeded(
            order_id=row["order_id"],
            delivery_id=row["delivery_id"],
            channel=channel,
            attempt=row["attempts"],
            provider_message_id=(result.provider_message_id or None) and result.provider_message_id[:200],
        )
        await add_event(conn, self._envelope(row, event), key=str(row["order_id"]))

    async def _failed(
        self,
        conn: Connection,
        row: asyncpg.Record,
        channel: Channel,
        attempt: int,
        result: SendResult,
        *,
        cancelled: bool,
    ) -> None:
        """What follows a failed attempt (retry, fallback or final failure) and its event. The order
        cancelled meanwhile: nothing follows; the event says final."""
        assert result.reason_code is not None
        reason = result.reason_code.value
        if result.reason_code is ReasonCode.RATE_LIMITED:
            self._limiters[channel].hold(min(result.retry_after_s or 1.0, 30.0))
        if cancelled:
            await repository.release_cancelled(conn, row["delivery_id"])
            log.info("delivery_attempt_failed", attempt=attempt, reason_code=reason, next="cancelled")
            await self._failed_event(conn, row, channel, attempt, result, final=True)
            return
        allowed = await repository.fallback_allowed(conn, row["campaign_id"], self.settings.fallback_default)
        decision = after_failure(
            result,
            channel_attempts=row["channel_attempts"],
            policy=self.policy,
            now=datetime.now(UTC),
            current=channel,
            tried=frozenset(Channel(c) for c in row["tried_channels"]),
            contacts=Contacts(row["email"], row["phone"]),
            fallback_allowed=allowed,
            rng=self._rng,
        )
        if isinstance(decision, Retry):
            await repository.schedule_retry(conn, row["delivery_id"], decision.at, reason)
        elif isinstance(decision, Fallback):
            await repository.fall_back(conn, row["delivery_id"], channel.value, decision.channel, reason)
        else:
            await repository.mark_failed(conn, row["delivery_id"], reason)
        final = not isinstance(decision, Retry | Fallback)
        log.info(
            "delivery_attempt_failed",
            attempt=attempt,
            reason_code=reason,
            next=type(decision).__name__.lower(),
        )
        if final:
            await notifications.delivery_failed(conn, self.settings, row, channel, reason)
        await self._failed_event(conn, row, channel, attempt, result, final=final)

    async def _failed_event(
        self,
        conn: Connection,
        row: asyncpg.Record,
        channel: Channel,
        attempt: int,
        result: SendResult,
        *,
        final: bool,
    ) -> None:
        if row["kind"] != "voucher":
            return
        assert result.reason_code is not None
        reason = result.reason_code.value
        event = DeliveryFailed(
            order_id=row["order_id"],
            delivery_id=row["delivery_id"],
            channel=channel,
            attempt=attempt,
            reason_code=reason,
            retryable=result.retryable,
            final=final,
            reason=result.response[:2000],
        )
        await add_event(conn, self._envelope(row, event), key=str(row["order_id"]))
