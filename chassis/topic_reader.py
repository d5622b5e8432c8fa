"""Reading a topic to its current end without joining a consumer group's rebalancing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from .kafka_security import client_options

READ_FETCH_WAIT_MS = 50


@dataclass
class TopicSnapshot:
    consumer: AIOKafkaConsumer
    partitions: list[TopicPartition]
    ends: dict[TopicPartition, int]

    async def read(self, *, timeout: float = 30.0) -> list[Any]:
        """Every record from the current positions up to the ends seen when the reader opened."""
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        for tp in self.partitions:
            while await self.consumer.position(tp) < self.ends[tp]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {tp.topic} to its end within {timeout}s")
                batch = await self.consumer.getmany(tp, timeout_ms=1000)
                records.extend(batch.get(tp, []))
        return records

    async def commit(self, resume: Mapping[int, int] | None = None) -> None:
        """Commit the group's offsets: where to resume per partition, else each partition's end."""
        resume = resume or {}
        await self.consumer.commit({tp: resume.get(tp.partition, self.ends[tp]) for tp in self.partitions})


@contextlib.asynccontextmanager
async def open_topic(
    bootstrap: str, topic: str, *, group_id: str | None = None
) -> AsyncIterator[TopicSnapshot]:
    """Assign all partitions of a topic; from the beginning, or from the group's committed offsets."""
    async with open_topics(bootstrap, [topic], group_id=group_id) as snapshot:
        yield snapshot


@contextlib.asynccontextmanager
async def open_topics(
    bootstrap: str, topics: Sequence[str], *, group_id: str | None = None
) -> AsyncIterator[TopicSnapshot]:
    """`open_topic` for several topics with one consumer: one start-up and one metadata round trip
    for all of them (a service's DLQ topics are read together)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # The first fetch on empty partitions waits this long, and holds back the end offsets asked
        # right after it (aiokafka's default, 500 ms, made every read of a quiet DLQ take half a second).
        fetch_max_wait_ms=READ_FETCH_WAIT_MS,
        **client_options(),
    )
    await consumer.start()
    try:
        if any(not consumer.partitions_for_topic(topic) for topic in topics):
            await consumer._client.force_metadata_update()
        assigned = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or set())
        ]
        ends: dict[TopicPartition, int] = {}
        if assigned:
            consumer.assign(assigned)
            if group_id is None:
                await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(assigned)
        yield TopicSnapshot(consumer, assigned, ends)
    finally:
        # Stopping right after start can surface the cancellation of aiokafka's own start-up task.
        await asyncio.sleep(0)
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
