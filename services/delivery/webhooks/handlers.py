"""Kafka in: every status topic, for the webhooks that want it. In the consumer's transaction (with
the inbox row) each event becomes one pending row per enabled webhook wanting its topic, holding the
envelope as the body that is signed and POSTed (the same bytes on every attempt)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chassis.consumer import Subscription
from chassis.db import Connection
from contracts.envelope import Envelope
from contracts.registry import STATUS_TOPICS, TopicSpec, topic

from . import repository
from .sending import WebhookEngine


def subscription_name(topic_name: str) -> str:
    return "webhooks-" + topic_name.replace(".", "-").replace("_", "-")


class WebhookHandlers:
    def __init__(self, engine: WebhookEngine) -> None:
        self.engine = engine

    def subscriptions(self) -> list[Subscription]:
        return [self._subscription(topic(name)) for name in sorted(STATUS_TOPICS)]

    def _subscription(self, spec: TopicSpec) -> Subscription:
        async def on_event(conn: Connection, env: Envelope[Any]) -> None:
            await on_events(conn, [env])

        async def on_events(conn: Connection, envs: Sequence[Envelope[Any]]) -> None:
            await repository.record_events(
                conn,
                spec.name,
                [
                    repository.NewDelivery(
                        event_id=env.event_id,
                        event_type=env.event_type,
                        aggregate_key=spec.key_of(env.data),
                        occurred_at=env.occurred_at,
                        body=env.to_bytes(),
                    )
                    for env in envs
                ],
            )

        return Subscription(
            subscription_name(spec.name),
            spec.name,
            spec.payload,
            on_event,
            handle_batch=on_events,
            relevant=lambda _: self.engine.wanted(spec.name),
        )
