import re
import socket

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.infra.errors import InfraError
from deploy.infra.kafka import KafkaBroker, new_cluster_id
from deploy.infra.net import free_port
from deploy.testing import create_topic


async def _send(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        values: list[bytes] = []
        while await consumer.position(partition) < end:
            batch = await consumer.getmany(partition, timeout_ms=1000)
            values += [record.value for record in batch.get(partition, [])]
        return values
    finally:
        await consumer.stop()


@pytest.mark.fault
async def test_broker_restarts_on_same_data_dir_keeping_acknowledged_messages(private_kafka):
    broker = private_kafka()
    topic = await create_topic(broker.bootstrap_servers, "restart", partitions=1)
    await _send(broker.bootstrap_servers, topic, b"before the crash")

    broker.kill()
    assert not broker.is_running()
    broker.start()
    await _send(broker.bootstrap_servers, topic, b"after the crash")
    broker.restart()

    assert broker.is_running()
    assert await _read_all(broker.bootstrap_servers, topic) == [b"before the crash", b"after the crash"]


def test_broker_refuses_to_start_on_a_taken_port_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = KafkaBroker(tmp_path, port=port, controller_port=free_port())

        with pytest.raises(InfraError, match=rf"^port {port} \(Kafka broker\) is already in use") as caught:
            broker.start()

    assert "\n" not in str(caught.value)
    assert not broker.is_running()


def test_cluster_ids_look_like_the_ones_kafka_generates():
    ids = {new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id) for cluster_id in ids)
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
