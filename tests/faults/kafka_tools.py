"""What the fault tests read from and inject into the system's broker: which consumer groups read which
topic (asked of the broker, not assumed), replays of the very bytes already on a topic, poison messages,
and what landed on a dead-letter topic."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.protocol.admin import DescribeGroupsRequest, DescribeGroupsRequest_v2

from chassis.consumer import DLQ_HEADER_PREFIX
from chassis.testing import produce, read_topic
from contracts.registry import TOPICS


class _DescribeGroupsV2(DescribeGroupsRequest):  # type: ignore[misc]
    """DescribeGroups pinned to v2: aiokafka 0.14 reads a v3 answer with the v2 schema and fails on it
    (`admin.describe_consumer_groups` raises "Buffer underrun decoding string" against Kafka 3+)."""

    def prepare(self, versions: Any) -> DescribeGroupsRequest_v2:
        return DescribeGroupsRequest_v2(self._groups)


def consumed_topics() -> list[str]:
    """Every topic of the registry some service consumes."""
    return [spec.name for spec in TOPICS if spec.consumers]


async def consuming_groups(bootstrap: str) -> dict[str, set[str]]:
    """Topic → the consumer groups whose live members subscribe to it, as the broker sees them now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        listed = await admin.list_consumer_groups()
        group_ids = [g[0] for g in listed if g[0].startswith("orchard.")]
        groups: dict[str, set[str]] = defaultdict(set)
        if not group_ids:
            return groups
        node = next(iter(admin._client.cluster.brokers())).nodeId
        response = await admin._client.send(node, _DescribeGroupsV2(group_ids))
        if True:
            for described in response.groups:
                group_id, members = described[1], described[5]
                for member in members:
                    metadata = member[3]
                    if not metadata:
                        continue
                    for topic in ConsumerProtocolMemberMetadata.decode(metadata).subscription:
                        groups[topic].add(group_id)
        return groups
    finally:
        await admin.close()


async def replay(bootstrap: str, topic: str) -> int:
    """Produce again every record now on `topic`, byte for byte (key, value and headers): what a producer
    retrying after a lost acknowledgement, or a replay from an old offset, delivers."""
    records = await read_topic(bootstrap, topic, timeout=60)
    if not records:
        return 0
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(topic, key=r.key, value=r.value, headers=list(r.headers or ()))
            for r in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return len(records)


@dataclass(frozen=True)
class Poison:
    topic: str
    kind: str
    """`undecodable` (not JSON at all) or `contract_invalid` (an envelope breaking its contract)."""
    value: bytes
    marker: str


def poison_for(topic: str, run: str) -> list[Poison]:
    """Two messages no consumer of `topic` can ever process, each carrying a marker to find it again."""
    undecodable_marker = f"poison-{run}-{topic}-undecodable"
    invalid_marker = f"poison-{run}-{topic}-invalid"
    envelope = {
        "event_id": "not-a-uuid",
        "event_type": topic,
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "fault-suite",
        "correlation_id": invalid_marker,
        "data": {"external_ref": invalid_marker},
    }
    return [
        Poison(
            topic, "undecodable", b"\xff\xfe\x00" + undecodable_marker.encode() + b"\x00{", undecodable_marker
        ),
        Poison(topic, "contract_invalid", json.dumps(envelope).encode(), invalid_marker),
    ]


async def inject(bootstrap: str, poisons: list[Poison]) -> None:
    by_topic: dict[str, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
    for poison in poisons:
        by_topic[poison.topic].append((poison.marker.encode(), poison.value))
    for topic, messages in by_topic.items():
        await produce(bootstrap, topic, messages)


@dataclass(frozen=True)
class DeadLetter:
    consumer: str
    error: str
    error_code: str
    original_topic: str
    value: bytes


async def dead_letters(bootstrap: str, topic: str) -> list[DeadLetter]:
    """Every record on `<topic>.dlq`, with the reason headers the consumer added."""
    letters = []
    for r in await read_topic(bootstrap, f"{topic}.dlq", timeout=30):
        headers: dict[str, Any] = {
            k.removeprefix(DLQ_HEADER_PREFIX): v.decode(errors="replace")
            for k, v in (r.headers or ())
            if k.startswith(DLQ_HEADER_PREFIX)
        }
        letters.append(
            DeadLetter(
                consumer=headers.get("consumer", ""),
                error=headers.get("error", ""),
                error_code=headers.get("error-code", ""),
                original_topic=headers.get("original-topic", ""),
                value=r.value or b"",
            )
        )
    return letters


def new_marker() -> str:
    return uuid.uuid4().hex[:8]
