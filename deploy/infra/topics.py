"""Create topics on a broker, idempotently: registry topics (and every topic's `.dlq` twin) or any
exact list of topics with their Kafka settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code

from chassis.kafka_security import client_options
from contracts.registry import DLQ_RETENTION_MS
from deploy.infra.errors import InfraError

DLQ_SUFFIX = ".dlq"
WEEK_MS = 7 * 24 * 3600 * 1000


class _NamedTopic(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def partitions(self) -> int: ...


class TopicLike(_NamedTopic, Protocol):
    """What ensure_topics reads: contracts.registry.TopicSpec has it, so does TopicDef for test topics."""

    @property
    def retention_ms(self) -> int: ...


class ConfiguredTopic(_NamedTopic, Protocol):
    """One exact topic to create (contracts.registry.KafkaTopic): name, partitions, Kafka config."""

    @property
    def config(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class TopicDef:
    """A bare topic for tests and tools that have no registry entry."""

    name: str
    partitions: int = 3
    retention_ms: int = WEEK_MS

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


@dataclass(frozen=True)
class _Topic:
    name: str
    partitions: int
    config: Mapping[str, str]


def with_dlq_twins(specs: Iterable[TopicLike]) -> list[ConfiguredTopic]:
    """Each topic and its `<name>.dlq` twin with the same partitions and retention.

    A spec with a `kafka_config()` method (the registry's) brings its own settings, e.g. compaction.
    The twin of a topic kept forever (compacted) keeps dead letters as long as the registry's DLQ
    topics do: one kept forever would outlive every inbox, and services refuse to consume beside it.
    """
    topics: list[ConfiguredTopic] = []
    for spec in specs:
        retention = {"retention.ms": str(spec.retention_ms)}
        kafka_config = getattr(spec, "kafka_config", None)
        config = dict(kafka_config()) if callable(kafka_config) else retention
        twin_ms = spec.retention_ms if spec.retention_ms >= 0 else DLQ_RETENTION_MS
        topics.append(_Topic(spec.name, spec.partitions, config))
        topics.append(_Topic(spec.name + DLQ_SUFFIX, spec.partitions, {"retention.ms": str(twin_ms)}))
    return topics


async def ensure_topics(bootstrap: str, specs: Iterable[TopicLike], *, wait_s: float = 30) -> list[str]:
    """Create each missing topic and its `<name>.dlq` twin; existing topics are left exactly as they are.

    Returns the names it created.
    """
    return await ensure_kafka_topics(bootstrap, with_dlq_twins(specs), wait_s=wait_s)


async def ensure_kafka_topics(
    bootstrap: str,
    topics: Iterable[ConfiguredTopic],
    *,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    wait_s: float = 30,
) -> list[str]:
    """Create exactly these topics where missing, and wait until every new partition has a leader.

    Each new topic gets `replication_factor` replicas and, when given, `min.insync.replicas`. A broker
    that cannot be reached within `wait_s` seconds is an InfraError.
    """
    extra = {} if min_insync_replicas is None else {"min.insync.replicas": str(min_insync_replicas)}
    wanted = {topic.name: topic for topic in topics}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(wait_s * 1000), **client_options()
    )
    try:
        async with asyncio.timeout(wait_s):
            await admin.start()
    except (TimeoutError, KafkaConnectionError):
        await admin.close()
        raise InfraError(f"cannot reach Kafka at {bootstrap} to create topics") from None
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=topic.name,
                num_partitions=topic.partitions,
                replication_factor=replication_factor,
                topic_configs={**topic.config, **extra},
            )
            for name, topic in wanted.items()
            if name not in existing
        ]
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
