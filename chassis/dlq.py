"""Inspecting and replaying dead letters (`orchard dlq list|replay`)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from .consumer import DLQ_HEADER_PREFIX, REPLAY_TARGET_HEADER
from .kafka_security import client_options
from .topic_reader import open_topic, open_topics

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
            (k, v)
            for k, v in self.headers
            if not k.startswith(DLQ_HEADER_PREFIX) and k not in (REPLAYED_HEADER, REPLAY_TARGET_HEADER)
        ]

    def replay_headers(self) -> list[tuple[str, bytes]]:
        """The original headers, where the letter comes from, and the group it is replayed for: only
        the consumer group that failed it handles it again, every other group reading the topic
        passes it over. A letter that names no group (written before groups were recorded) reaches all."""
        origin = f"{self.topic}@{self.partition}:{self.offset}".encode()
        target = [(REPLAY_TARGET_HEADER, self.consumer.encode())] if self.consumer else []
        return [*self.original_headers(), (REPLAYED_HEADER, origin), *target]


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
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options())
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
    before_commit: Callable[[list[DeadLetter]], Awaitable[Mapping[int, int] | None]] | None = None,
    commit: bool = True,
) -> list[DeadLetter]:
    """Everything in a DLQ topic up to its current end.

    With a group id, reading starts at the group's offset, and the new offset is committed (unless
    `commit` is false) only after `before_commit` succeeded with what was read. It may answer the
    offset to resume from per partition; the partitions it leaves out are committed up to their end.
    """
    async with open_topic(bootstrap, topic, group_id=group_id) as snapshot:
        letters = [_to_dead_letter(r) for r in await snapshot.read()]
        if group_id is not None and snapshot.partitions:
            resume = await before_commit(letters) if before_commit is not None else None
            if commit:
                await snapshot.commit(resume)
        return letters


async def list_dead_letters(
    bootstrap: str, topics: list[str] | None = None, limit: int = 100, *, group: str | None = None
) -> list[DeadLetter]:
    """Dead letters of the given DLQ topics (all `*.dlq` topics by default), newest last; with a
    group, only those that consumer group failed."""
    names = [n if n.endswith(".dlq") else f"{n}.dlq" for n in topics or await dlq_topics(bootstrap)]
    async with open_topics(bootstrap, names) as snapshot:
        letters = [_to_dead_letter(r) for r in await snapshot.read()]
    if group is not None:
        letters = [d for d in letters if d.consumer == group]
    return letters[-limit:] if limit else letters


def replay_cursor(dlq_topic: str, group: str | None) -> str:
    """The consumer group that remembers how far replay-all got in a DLQ topic (for one failing group)."""
    return f"orchard.dlq-replay.{dlq_topic}" + (f".{group}" if group is not None else "")


async def _republish(bootstrap: str, letters: list[DeadLetter]) -> None:
    if not letters:
        return
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", **client_options()
    )
    await producer.start()
    try:
        pending = []
        for letter in letters:
            pending.append(
                await producer.send(
                    letter.original_topic,
                    value=letter.value,
                    key=letter.key.encode() if letter.key is not None else None,
                    headers=letter.replay_headers(),
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _resume_offsets(candidates: list[DeadLetter], taken: list[DeadLetter]) -> dict[int, int]:
    """Per partition, the first candidate left untaken: where the next replay-all starts again."""
    taken_ids = {(d.partition, d.offset) for d in taken}
    resume: dict[int, int] = {}
    for letter in candidates:
        if (letter.partition, letter.offset) not in taken_ids:
            resume.setdefault(letter.partition, letter.offset)
    return resume


async def replay_dead_letters(
    bootstrap: str, dlq_topic: str, *, event_ids: list[str] | None = None, group: str | None = None
) -> int:
    """How many dead letters `replay_letters` sent back (see there)."""
    return len(await replay_letters(bootstrap, dlq_topic, event_ids=event_ids, group=group))


async def replay_letters(
    bootstrap: str,
    dlq_topic: str,
    *,
    event_ids: Collection[str] | None = None,
    group: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
) -> list[DeadLetter]:
    """Send dead letters back to their original topic with their original key and headers, for the
    consumer group that failed each one only (see `DeadLetter.replay_headers`); answer them.

    With event ids, exactly those are replayed (wherever they sit in the DLQ). Without, every dead
    letter not replayed before is (a consumer group remembers how far replay got). With a group, only
    the letters that group failed, and replay-all remembers how far it got for that group apart.
    With a limit, at most that many (partition by partition, oldest first); replay-all then resumes
    at the first one left. A dry run answers the letters it would send and sends and remembers nothing.
    Replaying an event that was in fact handled changes nothing: the group dedupes by event_id.
    """
    dlq_topic = dlq_topic if dlq_topic.endswith(".dlq") else f"{dlq_topic}.dlq"
    chosen: list[DeadLetter] = []

    async def take(letters: list[DeadLetter]) -> dict[int, int]:
        candidates = [d for d in letters if group is None or d.consumer == group]
        chosen.extend(candidates[:limit] if limit is not None else candidates)
        if not dry_run:
            await _republish(bootstrap, chosen)
        return _resume_offsets(candidates, chosen)

    if event_ids:
        wanted = set(event_ids)
        await take([d for d in await _read_all(bootstrap, dlq_topic) if d.event_id in wanted])
    else:
        await _read_all(
            bootstrap,
            dlq_topic,
            group_id=replay_cursor(dlq_topic, group),
            before_commit=take,
            commit=not dry_run,
        )
    return chosen


async def dlq_retention_ms(bootstrap: str, topics: Iterable[str]) -> dict[str, int]:
    """The `retention.ms` the broker keeps each of these DLQ topics by (-1: forever); topics it does not
    have, or will not describe, are left out."""
    names = sorted(set(topics))
    if not names:
        return {}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="orchard-dlq-retention", **client_options()
    )
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {"retention.ms": None}) for name in names]
        )
    finally:
        await admin.close()
    retention: dict[str, int] = {}
    for response in responses:
        for error_code, _, _, name, configs in response.resources:
            value = next((v for k, v, *_ in configs if k == "retention.ms"), None)
            if error_code == 0 and value is not None:
                retention[name] = int(value)
    return retention


def dlq_retention_refusals(inbox_retention_days: int, retention_ms: dict[str, int]) -> list[str]:
    """One line per DLQ topic that keeps dead letters longer than the inbox remembers handled events."""
    inbox_ms = inbox_retention_days * 24 * 3600 * 1000
    return [
        f"ORCHARD_INBOX_RETENTION_DAYS={inbox_retention_days} is shorter than the broker's retention.ms="
        f"{ms} of {topic} ({'forever' if ms < 0 else f'{ms / 86_400_000:g} days'}): a dead letter "
        "replayed after its inbox row is purged would be handled twice"
        for topic, ms in sorted(retention_ms.items())
        if ms < 0 or ms > inbox_ms
    ]
