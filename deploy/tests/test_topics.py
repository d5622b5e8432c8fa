import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.infra.topics import TopicDef, ensure_kafka_topics, ensure_topics, with_dlq_twins


async def _describe(bootstrap: str, name: str, config: str = "retention.ms") -> tuple[int, str]:
    """The topic's partition count and the value of one of its configs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [topic] = await admin.describe_topics([name])
        resource = ConfigResource(ConfigResourceType.TOPIC, name, {config: None})
        [response] = await admin.describe_configs([resource])
        [(_, _, _, _, configs)] = response.resources
        value = next(value for key, value, *_ in configs if key == config)
        return len(topic["partitions"]), value
    finally:
        await admin.close()


async def test_ensure_topics_creates_each_topic_and_its_dlq_twin(kafka_bootstrap):
    spec = TopicDef(f"orders.{uuid.uuid4().hex[:8]}", partitions=2, retention_ms=3_600_000)

    created = await ensure_topics(kafka_bootstrap, [spec])

    assert sorted(created) == [spec.name, spec.dlq]
    assert await _describe(kafka_bootstrap, spec.name) == (2, "3600000")
    assert await _describe(kafka_bootstrap, spec.dlq) == (2, "3600000")


async def test_ensure_topics_leaves_existing_topics_alone(kafka_bootstrap):
    name = f"stable.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [TopicDef(name, partitions=2, retention_ms=3_600_000)])

    created = await ensure_topics(kafka_bootstrap, [TopicDef(name, partitions=5, retention_ms=60_000)])

    assert created == []
    assert await _describe(kafka_bootstrap, name) == (2, "3600000")


async def test_new_topic_fixture_gives_unique_topics_with_dlq(new_topic, kafka_bootstrap):
    first, second = await new_topic("ticks"), await new_topic("ticks", partitions=1)

    assert first != second
    assert first.startswith("ticks.")
    assert await _describe(kafka_bootstrap, second + ".dlq") == (1, str(7 * 24 * 3600 * 1000))


async def test_created_topics_carry_the_replication_asked_for(kafka_bootstrap):
    spec = TopicDef(f"replicated.{uuid.uuid4().hex[:8]}", partitions=2)

    await ensure_kafka_topics(
        kafka_bootstrap, with_dlq_twins([spec]), replication_factor=1, min_insync_replicas=1
    )

    assert await _describe(kafka_bootstrap, spec.name, "min.insync.replicas") == (2, "1")
    assert await _describe(kafka_bootstrap, spec.dlq, "min.insync.replicas") == (2, "1")
