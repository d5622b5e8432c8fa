"""Inspecting and replaying dead letters (`orchard dlq list|replay`)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from .consumer import DLQ_HEADER_PREFIX
from .topic_reader import open_topic

REPLAYED_HEADER = "x-orchard-replayed-from"


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    original_topic: str
    key: str | None
    error: str
    error_code: str
    attempts: int
    failed_at: str
    consumer: str
    event_id: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [
            (k, v) for k, v in self.headers if not k.startswith(DLQ_HEADER_PREFIX) and k != REPLAYED_HEADER
        ]


def _event_id_of(value: bytes | None, headers: dict[str, str]) -> str | None:
    if "event_id" in headers:
        return headers["event_id"]
    try:
        document = json.loads(value or b"")
        return str(uuid.UUID(str(document["event_id"])))
    except (ValueError, TypeError, KeyError):
        return None


def _to_dead_letter(record: object) -> DeadLetter:
    raw_headers = tuple(getattr(record, "headers", ()) or ())
    text = {k: v.decode("utf-8", "replace") for k, v in raw_headers}
    dlq = {k.removeprefix(DLQ_HEADER_PREFIX): v for k, v in text.items() if k.startswith(DLQ_HEADER_PREFIX)}
    topic: str = record.topic  # type: ignore[attr-defined]
    key: bytes | None = record.key  # type: ignore[attr-defined]
    value: bytes = record.value  # type: ignore[attr-defined]
    return DeadLetter(
        topic=topic,
        partition=record.partition,  # type: ignore[attr-defined]
        offset=record.offset,  # type: ignore[attr-defined]
        original_topic=dlq.get("original-topic", topic.removesuffix(".dlq")),
        key=key.decode("utf-8", "replace") if key is not None else None,
        error=dlq.get("error", ""),
        error_code=dlq.get("error-code", ""),
        attempts=int(dlq.get("attempts", "0") or 0),
        failed_at=dlq.get("failed-at", ""),
        consumer=dlq.get("consumer", ""),
        event_id=_event_id_of(value, text),
        value=value,
        headers=raw_headers,
    )


async def dlq_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.endswith(".dlq"))
    finally:
        await admin.close()


async def _read_all(
    bootstrap: str,
    topic: str,
    *,
    group_id: str | None = None,
    before_commit: Callable[[list[DeadLetter]], Awaitable[None]] | None = None,
) -> list[DeadLetter]:
    """Everything in a DLQ topic up to its current end.

    With a group id, reading starts at the group's offset, and the new offset is committed only after
    `before_commit` succeeded with what was read.
    """
    async with open_topic(bootstrap, topic, group_id=group_id) as snapshot:
        letters = [_to_dead_letter(r) for r in await snapshot.read()]
        if group_id is not None and snapshot.partitions:
            if before_commit is not None:
                await before_commit(letters)
            await snapshot.commit()
        return letters


async def list_dead_letters(
    bootstrap: str, topics: list[str] | None = None, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters of the given DLQ topics (all `*.dlq` topics by default), newest last."""
    names = topics or await dlq_topics(bootstrap)
    letters: list[DeadLetter] = []
    for name in names:
        letters.extend(await _read_all(bootstrap, name if name.endswith(".dlq") else f"{name}.dlq"))
    return letters[-limit:] if limit else letters


async def replay_dead_letters(bootstrap: str, dlq_topic: str, *, event_ids: list[str] | None = None) -> int:
    """Send dead letters back to their original topic with their original key and headers.

    With event ids, exactly those are replayed (wherever they sit in the DLQ). Without, every dead
    letter not replayed before is (a consumer group remembers how far replay got). Replaying an event
    that was in fact handled changes nothing: consumers dedupe by event_id.
    """
    dlq_topic = dlq_topic if dlq_topic.endswith(".dlq") else f"{dlq_topic}.dlq"
    replayed: list[DeadLetter] = []

    async def republish(letters: list[DeadLetter]) -> None:
        if not letters:
            return
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            pending = []
            for letter in letters:
                origin = f"{letter.topic}@{letter.partition}:{letter.offset}".encode()
                pending.append(
                    await producer.send(
                        letter.original_topic,
                        value=letter.value,
                        key=letter.key.encode() if letter.key is not None else None,
                        headers=[*letter.original_headers(), (REPLAYED_HEADER, origin)],
                    )
                )
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        replayed.extend(letters)

    if event_ids:
        wanted = set(event_ids)
        await republish([d for d in await _read_all(bootstrap, dlq_topic) if d.event_id in wanted])
    else:
        await _read_all(
            bootstrap, dlq_topic, group_id=f"orchard.dlq-replay.{dlq_topic}", before_commit=republish
        )
    return len(replayed)
