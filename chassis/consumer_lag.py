"""How far consumer groups are behind their topics: committed offsets against end offsets.

The committed offsets come from the group coordinator (OffsetFetch, `list_consumer_group_offsets`), the
end offsets from a group-less consumer: neither joins a group, so reading lag never rebalances the
consumers being measured. Used by the ops API (`GET /v1/ops/consumers`) and the bench's monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from .kafka_security import client_options

VERIFY_UP_TO = 200
"""Windows up to this many offsets are read, so that transaction markers do not count as lag."""
VERIFY_TIMEOUT_S = 5.0


def group_lag(committed: Mapping[tuple[str, int], int], end: Mapping[tuple[str, int], int]) -> int:
    """Messages a consumer group has still to process: for each of its partitions, the end offset less
    the committed one. A partition the group has not committed yet counts from offset 0 (the services
    start at `earliest`); a committed offset past the end (a stale end) counts as nothing."""
    return sum(max(0, end_offset - committed.get(tp, 0)) for tp, end_offset in end.items())


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int | None
    """None while the group has committed nothing on this partition."""
    end: int
    lag: int
    """Messages from the committed offset to the end; transaction markers left out where they were read."""


@dataclass(frozen=True)
class TopicLag:
    group: str
    topic: str
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


async def read_lag(
    bootstrap: str, topics_by_group: Mapping[str, str], *, verify_up_to: int = VERIFY_UP_TO
) -> list[TopicLag]:
    """Each group's lag on its topic (group id → topic), in the order given; a topic the broker does
    not know has no partitions.

    End offsets count transaction markers (the outbox relay publishes in transactions: one marker per
    partition per batch), which no consumer ever receives, so a group that handled everything would
    look one message behind on every partition. Where a partition's window behind its groups is at
    most `verify_up_to` offsets, its records are read and only real messages counted."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="orchard-lag", **client_options())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_options())
    await admin.start()
    try:
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            partitions = {
                topic: [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
                for topic in set(topics_by_group.values())
            }
            every = [tp for tps in partitions.values() for tp in tps]
            ends = await consumer.end_offsets(every) if every else {}
            groups = list(topics_by_group)
            answers = await asyncio.gather(*(admin.list_consumer_group_offsets(g) for g in groups))
            committed = {
                group: {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
                for group, offsets in zip(groups, answers, strict=True)
            }
            behind: dict[TopicPartition, int] = {}
            for group, topic in topics_by_group.items():
                for tp in partitions[topic]:
                    start = committed[group].get(tp, 0)
                    if start < ends[tp]:
                        behind[tp] = min(behind.get(tp, start), start)
            windows = {tp: start for tp, start in behind.items() if ends[tp] - start <= verify_up_to}
            messages = await _message_offsets(consumer, windows, ends)
        finally:
            # Stopping right after start can surface the cancellation of aiokafka's own start-up task.
            await asyncio.sleep(0)
            with contextlib.suppress(asyncio.CancelledError):
                await consumer.stop()
    finally:
        await admin.close()
    result = []
    for group in groups:
        topic = topics_by_group[group]
        views = []
        for tp in partitions[topic]:
            done = committed[group].get(tp)
            views.append(
                PartitionLag(tp.partition, done, ends[tp], _real_lag(done or 0, ends[tp], messages.get(tp)))
            )
        result.append(TopicLag(group=group, topic=topic, partitions=tuple(views)))
    return result


def _real_lag(committed: int, end: int, messages: list[int] | None) -> int:
    if messages is None:
        return max(0, end - committed)
    return sum(1 for offset in messages if offset >= committed)


async def _message_offsets(
    consumer: AIOKafkaConsumer, windows: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
) -> dict[TopicPartition, list[int]]:
    """The offsets of the real messages from each window's start to its end (markers are skipped by the
    consumer); a partition not read to its end within the time allowed is left out."""
    if not windows:
        return {}
    consumer.assign(list(windows))
    for tp, start in windows.items():
        consumer.seek(tp, start)
    found: dict[TopicPartition, list[int]] = {tp: [] for tp in windows}
    deadline = time.monotonic() + VERIFY_TIMEOUT_S
    waiting = set(windows)
    while waiting and time.monotonic() < deadline:
        batch = await consumer.getmany(*waiting, timeout_ms=200)
        for tp, records in batch.items():
            found[tp].extend(r.offset for r in records if r.offset < ends[tp])
        waiting = {tp for tp in waiting if await consumer.position(tp) < ends[tp]}
    return {tp: offsets for tp, offsets in found.items() if tp not in waiting}
