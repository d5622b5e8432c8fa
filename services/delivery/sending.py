"""The send queue's workers: outside the Kafka poll loop, per channel a pool of async workers with its
own concurrency and rate limit.

A worker's round is two transactions for a batch of up to `claim_batch` deliveries. The first is one
statement: it claims due deliveries (FOR UPDATE SKIP LOCKED) and writes their attempt rows, so every
attempt is on record before anything leaves. The second locks the claimed rows, and for each checks the
order is still not cancelled and sends it; failures are recorded as they come with their next step
(retry with backoff and jitter, fallback to another channel, or final failure), and the successes, their
states and their `delivery.succeeded` events are written together before the one commit. A cancellation
waits for that lock, so it lands before a send or after it, never beside it. A row another transaction
holds at locking time is left out of the batch and attempted on its own afterwards (a worker never
waits for a lock while holding others). A timeout, an unreachable provider or a 429 stops the batch:
the deliveries not yet sent are queued again and their attempt rows dropped (nothing of them left).
If the process dies during the second transaction, its attempts stay `pending`; the recovery job flags
them `unknown` and queues the deliveries again with the same idempotency key and Message-ID.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jinja2
import structlog
from prometheus_client import Counter

from chassis.db import Connection, quote_ident
from chassis.outbox import OutgoingEvent, add_event, add_to_outbox
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

    def ring(self, everyone: bool = False) -> None:
        woken = False
        while self._idle and (everyone or not woken):
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken = True
        if not woken:
            self._rung = True

    async def wait(self, timeout_s: float) -> None:
        if self._rung:
            self._rung = False
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._idle.remove(waiter)


STOP_BATCH_REASONS = frozenset(
    {ReasonCode.PROVIDER_TIMEOUT, ReasonCode.PROVIDER_UNREACHABLE, ReasonCode.RATE_LIMITED}
)
"""A send failing so means the provider itself is in trouble: the rest of the batch is put back."""


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

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the engine is not started"
        return self._pool

    def bind(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def start(self, pool: asyncpg.Pool, dsn: str, schema: str) -> None:
        self._pool = pool
        self._stopping.clear()
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            self._listener = await asyncpg.connect(dsn, server_settings={"search_path": quote_ident(schema)})
            await self._listener.add_listener(repository.WAKE_CHANNEL, self._on_notify)
        for channel in Channel:
            for n in range(self.settings.workers(channel)):
                self._tasks.append(asyncio.create_task(self._work(channel), name=f"delivery-{channel}-{n}"))
        log.info("delivery_workers_started", workers={c.value: self.settings.workers(c) for c in Channel})

    async def stop(self) -> None:
        self._stopping.set()
        for doorbell in self._doorbells.values():
            doorbell.ring(everyone=True)
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
        payload = args[-1]
        with contextlib.suppress(ValueError):
            self._doorbells[Channel(payload)].ring()

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
                await self._doorbells[channel].wait(self.settings.queue_poll_interval_s)

    async def run_once(self, channel: Channel) -> bool:
        """Claim up to `claim_batch` due deliveries of `channel` with their attempt rows (one
        statement), then send them in one transaction holding their row locks, recording the outcomes
        together; False when none is due. Each send takes a token of the channel's rate limit."""
        async with self.pool.acquire() as conn:
            claimed = await repository.claim_due(
                conn, channel, self.settings.lease_s, self.settings.claim_batch
            )
            if len(claimed) >= self.settings.claim_batch:
                self._doorbells[channel].ring()  # more is likely due: another idle worker helps
            if claimed:
                held_elsewhere = await self._send_batch(conn, channel, claimed)
                for row in held_elsewhere:
                    await self._attempt(conn, row["delivery_id"], row["attempts"])
        return bool(claimed)

    async def _send_batch(
        self, conn: Connection, channel: Channel, claimed: list[asyncpg.Record]
    ) -> list[asyncpg.Record]:
        """Send what is claimed, in claim order, under the row locks; a cancellation waits for the
        commit, so it lands before a send or after it. Returns the claims another transaction held at
        locking time (they are then attempted one by one)."""
        attempt_of = {c["delivery_id"]: c["attempts"] for c in claimed}
        position = {c["delivery_id"]: n for n, c in enumerate(claimed)}
        sent: list[tuple[asyncpg.Record, SendResult]] = []
        unsent: list[tuple[uuid.UUID, int]] = []
        pause_s: float | None = None
        async with conn.transaction():
            rows = await repository.lock_free_deliveries(conn, list(attempt_of))
            rows.sort(key=lambda r: position[r["delivery_id"]])
            began = time.monotonic()
            token_taken = True  # the worker took one before claiming
            for row in rows:
                attempt = attempt_of[row["delivery_id"]]
                if row["attempts"] != attempt or row["status"] not in ("sending", "cancelled"):
                    continue
                if pause_s is None and time.monotonic() - began > self.settings.provider_timeout_s:
                    pause_s = 0.0  # a slow provider: the locks are not held for a whole batch of timeouts
                if pause_s is not None:
                    unsent.append((row["delivery_id"], attempt))
                    continue
                if not token_taken:
                    await self._limiters[channel].acquire()
                token_taken = False
                result = await self._attempt_locked(conn, row, attempt)
                if result is None:
                    continue
                if result.ok:
                    sent.append((row, result))
                elif result.reason_code in STOP_BATCH_REASONS:
                    pause_s = min(result.retry_after_s or 1.0, 30.0)
            if sent:
                await self._record_sent(conn, channel, sent)
            if unsent:
                await repository.return_unsent(conn, unsent, pause_s or 0.0)
                log.info("delivery_batch_stopped", channel=channel.value, returned=len(unsent))
        locked = {r["delivery_id"] for r in rows}
        return [c for c in claimed if c["delivery_id"] not in locked]

    async def _attempt(self, conn: Connection, delivery_id: uuid.UUID, attempt: int) -> None:
        """One claimed delivery on its own: wait for its row lock, send, record."""
        async with conn.transaction():
            row = await repository.lock_delivery(conn, delivery_id)
            if row is None or row["attempts"] != attempt or row["status"] not in ("sending", "cancelled"):
                return
            result = await self._attempt_locked(conn, row, attempt)
            if result is not None and result.ok:
                await self._record_sent(conn, Channel(row["channel"]), [(row, result)])

    async def _attempt_locked(self, conn: Connection, row: asyncpg.Record, attempt: int) -> SendResult | None:
        """Send one locked delivery. A failure is recorded here with what follows it; a success is
        returned for the caller to record with its batch. None: the order was cancelled, nothing sent."""
        delivery_id = row["delivery_id"]
        channel = Channel(row["channel"])
        with structlog.contextvars.bound_contextvars(
            correlation_id=row["correlation_id"], delivery_id=str(delivery_id), channel=channel.value
        ):
            if row["status"] == "cancelled" or row["order_state"] == "cancelled":
                await repository.finish_attempt(conn, delivery_id, attempt, AttemptOutcome.SKIPPED, None)
                await repository.release_cancelled(conn, delivery_id)
                log.info("delivery_skipped_cancelled_order")
                return None
            result = await self._send(row, channel)
            ATTEMPTS.labels(channel.value, "succeeded" if result.ok else "failed").inc()
            if not result.ok:
                await repository.finish_attempt(conn, delivery_id, attempt, AttemptOutcome.FAILED, result)
                await self._failed(conn, row, channel, attempt, result)
            return result

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
        )
        return self.templates.render(view, channel, row["template"])

    def _envelope(self, row: asyncpg.Record, data: DeliverySucceeded | DeliveryFailed) -> Envelope[Any]:
        topic = Topics.DELIVERY_SUCCEEDED if isinstance(data, DeliverySucceeded) else Topics.DELIVERY_FAILED
        return Envelope.new(
            event_type=topic, producer=PRODUCER, data=data, correlation_id=row["correlation_id"]
        )

    async def _record_sent(
        self, conn: Connection, channel: Channel, sent: list[tuple[asyncpg.Record, SendResult]]
    ) -> None:
        """Successful sends of a batch: attempts, states and their `delivery.succeeded` events at once."""
        await repository.record_sent(conn, [(row["delivery_id"], row["attempts"], r) for row, r in sent])
        events = []
        for row, result in sent:
            log.info(
                "delivery_succeeded",
                attempt=row["attempts"],
                correlation_id=row["correlation_id"],
                delivery_id=str(row["delivery_id"]),
                channel=channel.value,
            )
            if row["kind"] != "voucher":
                continue  # delivery.succeeded speaks of orders' vouchers only
            event = DeliverySucceeded(
                order_id=row["order_id"],
                delivery_id=row["delivery_id"],
                channel=channel,
                attempt=row["attempts"],
                provider_message_id=(result.provider_message_id or None) and result.provider_message_id[:200],
            )
            events.append(OutgoingEvent(key=str(row["order_id"]), envelope=self._envelope(row, event)))
        await add_to_outbox(conn, events)

    async def _failed(
        self, conn: Connection, row: asyncpg.Record, channel: Channel, attempt: int, result: SendResult
    ) -> None:
        assert result.reason_code is not None
        reason = result.reason_code.value
        if result.reason_code is ReasonCode.RATE_LIMITED:
            self._limiters[channel].hold(min(result.retry_after_s or 1.0, 30.0))
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
        if row["kind"] != "voucher":
            return
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
