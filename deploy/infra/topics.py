"""Create the topics of the registry (and every topic's `.dlq` twin) on a broker, idempotently."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code

from deploy.infra.errors import InfraError

DLQ_SUFFIX = ".dlq"
WEEK_MS = 7 * 24 * 3600 * 1000


class TopicLike(Protocol):
    """What ensure_topics reads from a topic spec: contracts.registry.TopicSpec has it, so do test topics."""

    @property
    def name(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def retention_ms(self) -> int: ...


@dataclass(frozen=True)
class TopicDef:
    """A bare topic for tests and tools that have no registry entry."""

    name: str
    partitions: int = 3
    retention_ms: int = WEEK_MS

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


def _with_dlq_twins(specs: Iterable[TopicLike]) -> dict[str, NewTopic]:
    wanted: dict[str, NewTopic] = {}
    for spec in specs:
        for name in (spec.name, spec.name + DLQ_SUFFIX):
            wanted[name] = NewTopic(
                name=name,
                num_partitions=spec.partitions,
                replication_factor=1,
                topic_configs={"retention.ms": str(spec.retention_ms)},
            )
    return wanted


async def ensure_topics(
    bootstrap: str, specs: Iterable[TopicLike], *, replication_factor: int = 1, wait_s: float = 30
) -> list[str]:
    """Create each missing topic and its `<name>.dlq` twin; existing topics are left exactly as they are.

    Returns the names it created. A broker that cannot be reached within `wait_s` seconds is an InfraError.
    """
    wanted = _with_dlq_twins(specs)
    for topic in wanted.values():
        topic.replication_factor = replication_factor
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(wait_s * 1000))
    try:
        async with asyncio.timeout(wait_s):
            await admin.start()
    except (TimeoutError, KafkaConnectionError):
        await admin.close()
        raise InfraError(f"cannot reach Kafka at {bootstrap} to create topics") from None
    try:
        existing = set(await admin.list_topics())
        missing = [topic for name, topic in wanted.items() if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(missing, timeout_ms=int(wait_s * 1000))
        created = []
        for name, error_code, *rest in response.topic_errors:
            error = for_code(error_code) if error_code else None
            if error is None:
                created.append(name)
            elif error is not TopicAlreadyExistsError:  # someone else created it meanwhile: fine
                message = rest[0] if rest and rest[0] else error.__name__
                raise InfraError(f"creating topic {name} failed: {message}")
        await _wait_for_leaders(admin, created, wait_s)
        return created
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str], wait_s: float) -> None:
    # The controller answers CreateTopics before the broker's metadata cache knows the leaders;
    # a consumer subscribing in that gap sees no partitions, so callers may use topics right away.
    async with asyncio.timeout(wait_s):
        while topics:
            described = await admin.describe_topics(topics)
            ready = {
                topic["topic"]
                for topic in described
                if topic["error_code"] == 0
                and topic["partitions"]
                and all(partition["leader"] >= 0 for partition in topic["partitions"])
            }
            topics = [name for name in topics if name not in ready]
            if topics:
                await asyncio.sleep(0.05)
