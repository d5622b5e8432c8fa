"""The webhook workers, a pool of their own next to the message workers: a slow or dead endpoint holds
only its own webhook's slots, never a message send nor another webhook.

A dispatcher claims due rows (`repository.claim_due`: under a lease, at most `per_webhook` in flight
per webhook across replicas, one aggregate key's events one after the other) while this process has
free slots, and starts one task per claimed row. A task signs and POSTs the stored body with no
transaction open, then records the outcome in one short transaction: a 2xx marks the row `delivered`
for good; anything else puts it back with exponential backoff and jitter, and a webhook that has
answered nothing but failures for `disable_after` is disabled, counted and reported to Slack/Teams.
A process that dies mid-send leaves a lapsed lease: the row is claimed again (at least once; the
receiver recognises a repeat by `Orchard-Event-Id`), and a row whose 2xx was recorded never is."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from chassis.db import quote_ident
from chassis.wakeups import listen_locally

from .. import notifications
from ..codes import CodeVault
from ..settings import DeliverySettings
from . import repository
from .domain import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    RetrySchedule,
    is_success,
    should_disable,
    signature_header,
)
from .transport import Answer, WebhookClient

log = structlog.get_logger(__name__)

POSTS = Counter("orchard_webhook_posts_total", "Webhook POSTs by outcome", ["outcome"])
DISABLED = Counter("orchard_webhooks_disabled_total", "Webhooks disabled after failing for too long")
IN_FLIGHT = Gauge("orchard_webhook_posts_in_flight", "Webhook POSTs in flight in this process")


class WebhookEngine:
    def __init__(self, settings: DeliverySettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.vault = CodeVault(settings.code_key)
        self.schedule = RetrySchedule(settings.webhook_retry_base_s, settings.webhook_retry_max_s)
        self._rng = rng
        self._pool: asyncpg.Pool | None = None
        self._client: WebhookClient | None = None
        self._listener: asyncpg.Connection | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._per_webhook: collections.Counter[uuid.UUID] = collections.Counter()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.topics: frozenset[str] | None = None
        """Topics some enabled webhook wants (None: not known yet, so every event is recorded)."""
        self._topics_read_at = 0.0
        self._changes = 0
        self._stop_listening: Callable[[], None] = lambda: None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the webhook engine is not started"
        return self._pool

    async def start(self, pool: asyncpg.Pool, dsn: str, schema: str) -> None:
        self._pool = pool
        self._stopping.clear()
        s = self.settings
        self._client = WebhookClient(
            public_only=not s.is_dev,
            timeout_s=s.webhook_timeout_s,
            max_body=s.webhook_max_response_bytes,
            max_connections=max(s.webhook_workers, 1),
        )
        # Work committed in this process wakes the dispatcher in memory (chassis/wakeups.py); the LISTEN
        # connection hears other replicas, and every replica hears a webhook change.
        self._stop_listening = listen_locally(schema, repository.WAKE_CHANNEL, self._woken)
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            self._listener = await asyncpg.connect(dsn, server_settings={"search_path": quote_ident(schema)})
            await self._listener.add_listener(repository.WAKE_CHANNEL, self._on_notify)
        if s.webhook_workers > 0:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="webhook-dispatcher")

    async def stop(self) -> None:
        self._stop_listening()
        self._stopping.set()
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._dispatcher
            self._dispatcher = None
        if self._sends:
            await asyncio.wait(self._sends, timeout=self.settings.webhook_timeout_s + 2)
        for task in list(self._sends):
            task.cancel()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        if self._client is not None:
            await self._client.close()

    def wanted(self, topic: str) -> bool:
        """Whether an event of `topic` can concern any webhook (the consumer passes over the others)."""
        return self.topics is None or topic in self.topics

    def _woken(self, payload: str) -> bool:
        self._on_notify(payload)
        return payload != repository.CHANGED  # a change must reach the other replicas too

    def _on_notify(self, *args: Any) -> None:
        if args[-1] == repository.CHANGED:
            # A webhook was added, changed or removed (on any replica): until the topics are read
            # again, every event is recorded, so none for the new webhook is passed over.
            self.topics = None
            self._topics_read_at = 0.0
            self._changes += 1
        self._wake.set()

    async def _refresh_topics(self) -> None:
        if time.monotonic() - self._topics_read_at < self.settings.webhook_topics_refresh_s:
            return
        changes = self._changes
        async with self.pool.acquire() as conn:
            topics = frozenset(await repository.topics_in_use(conn))
        if changes == self._changes:  # else a change came in while reading: read again next round
            self.topics = topics
            self._topics_read_at = time.monotonic()

    async def _dispatch(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before claiming: a wake-up arriving during the claim is kept
            try:
                await self._refresh_topics()
                claimed = await self.claim_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook_dispatch_error", error=repr(exc))
                claimed = 0
                await asyncio.sleep(1.0)
            if claimed and len(self._sends) < self.settings.webhook_workers:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_interval_s)

    async def claim_once(self) -> int:
        """Claim what this process has room for and start sending it; how many were claimed."""
        s = self.settings
        free = s.webhook_workers - len(self._sends)
        if free <= 0:
            return 0
        full = [w for w, n in self._per_webhook.items() if n >= s.webhook_concurrency]
        async with self.pool.acquire() as conn:
            claims = await repository.claim_due(conn, s.webhook_lease_s, s.webhook_concurrency, free, full)
        for claim in claims:
            self._per_webhook[claim["webhook_id"]] += 1
            task = asyncio.create_task(self._send_and_record(claim), name=f"webhook-{claim['seq']}")
            self._sends.add(task)
            task.add_done_callback(self._sent)
        return len(claims)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._wake.set()

    async def _send_and_record(self, claim: asyncpg.Record) -> None:
        webhook_id = claim["webhook_id"]
        IN_FLIGHT.inc()
        try:
            with structlog.contextvars.bound_contextvars(
                webhook_id=str(webhook_id), event_id=str(claim["event_id"])
            ):
                answer = await self.post(claim)
                await self._record(claim, answer)
        except Exception as exc:
            # The lease runs out and the row is claimed again: at least once.
            log.warning("webhook_record_failed", error=repr(exc))
        finally:
            IN_FLIGHT.dec()
            self._per_webhook[webhook_id] -= 1
            if self._per_webhook[webhook_id] <= 0:
                del self._per_webhook[webhook_id]

    def signing_secrets(self, claim: asyncpg.Record | dict[str, Any]) -> list[str]:
        current = [self.vault.open(claim["secret_ciphertext"]).get_secret_value()]
        if claim["previous_signs"] and claim["previous_secret_ciphertext"] is not None:
            current.append(self.vault.open(claim["previous_secret_ciphertext"]).get_secret_value())
        return current

    async def post(self, claim: asyncpg.Record) -> Answer:
        assert self._client is not None
        body: bytes = claim["body"]
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Orchard-Webhooks/1",
            EVENT_ID_HEADER: str(claim["event_id"]),
            SIGNATURE_HEADER: signature_header(self.signing_secrets(claim), int(time.time()), body),
        }
        answer = await self._client.post(claim["url"], body, headers)
        POSTS.labels("succeeded" if is_success(answer.status_code) else "failed").inc()
        return answer

    async def _record(self, claim: asyncpg.Record, answer: Answer) -> None:
        outcome = repository.Outcome(answer.status_code, answer.error)
        async with self.pool.acquire() as conn, conn.transaction():
            if is_success(answer.status_code):
                if not await repository.record_success(conn, claim, outcome):
                    log.info("webhook_success_after_lease_lapsed")
                return
            retry_in = self.schedule.delay(claim["attempts"], self._rng)
            webhook = await repository.record_failure(conn, claim, outcome, retry_in)
            log.info("webhook_post_failed", problem=answer.error, retry_in_s=round(retry_in, 2))
            if webhook is None or not webhook["enabled"]:
                return
            disable_after = timedelta(seconds=self.settings.webhook_disable_after_s)
            if should_disable(webhook["failing_since"], webhook["now"], disable_after):
                await self._disable(conn, webhook, answer)

    async def _disable(self, conn: Any, webhook: asyncpg.Record, answer: Answer) -> None:
        since = webhook["failing_since"]
        reason = f"failing since {since:%Y-%m-%d %H:%M:%S} UTC; last: {answer.error}"
        await repository.set_enabled(conn, webhook["webhook_id"], False, reason[:500])
        await notifications.webhook_disabled(
            conn, self.settings, webhook["webhook_id"], webhook["url"], reason
        )
        DISABLED.inc()
        log.warning("webhook_disabled", reason=reason)
