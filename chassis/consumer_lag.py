"""How far consumer groups are behind their topics: committed offsets against end offsets.

The committed offsets come from the group coordinator (OffsetFetch, `list_consumer_group_offsets`), the
end offsets from a group-less consumer: neither joins a group, so reading lag never rebalances the
consumers being measured. Used by the ops API (`GET /v1/ops/consumers`) and the bench's monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from .kafka_security import client_options


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

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


@dataclass(frozen=True)
class TopicLag:
    group: str
    topic: str
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


async def read_lag(bootstrap: str, topics_by_group: Mapping[str, str]) -> list[TopicLag]:
    """Each group's lag on its topic (group id → topic), in the order given; a topic the broker does
    not know has no partitions."""
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
            committed = await asyncio.gather(*(admin.list_consumer_group_offsets(g) for g in groups))
        finally:
            # Stopping right after start can surface the cancellation of aiokafka's own start-up task.
            await asyncio.sleep(0)
            with contextlib.suppress(asyncio.CancelledError):
                await consumer.stop()
    finally:
        await admin.close()
    result = []
    for group, offsets in zip(groups, committed, strict=True):
        topic = topics_by_group[group]
        result.append(
            TopicLag(
                group=group,
                topic=topic,
                partitions=tuple(
                    PartitionLag(
                        partition=tp.partition,
                        committed=offsets[tp].offset if tp in offsets and offsets[tp].offset >= 0 else None,
                        end=ends[tp],
                    )
                    for tp in partitions[topic]
                ),
            )
        )
    return result
