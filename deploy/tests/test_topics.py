import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.infra.topics import TopicDef, ensure_topics


async def _describe(bootstrap: str, name: str) -> tuple[int, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [topic] = await admin.describe_topics([name])
        resource = ConfigResource(ConfigResourceType.TOPIC, name, {"retention.ms": None})
        [response] = await admin.describe_configs([resource])
        [(_, _, _, _, configs)] = response.resources
        retention = next(value for key, value, *_ in configs if key == "retention.ms")
        return len(topic["partitions"]), retention
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
