"""Every Kafka client speaks SASL_SSL (SCRAM) to a broker that enforces the ACLs the registry implies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from chassis.auth import issue_token
from chassis.consumer import Subscription
from chassis.kafka_security import KafkaSecurity
from chassis.outbox import OutboxRelay, add_to_outbox
from chassis.service import ServiceRuntime, ServiceSpec
from chassis.settings import Settings
from chassis.testing import kafka_answers, produce, read_topic, wait_until
from chassis.tests.integration.test_outbox_relay import event
from contracts.envelope import Envelope, EventData
from contracts.registry import HRIS, SERVICES, TOPICS
from deploy.infra.kafka import KafkaBroker
from deploy.infra.topics import ensure_topics
from deploy.kafka_acls import AclBinding, Operation, Pattern, Resource, apply, bindings, principal
from deploy.testing import ServiceDb, start_secure_kafka, stop_all

PASSWORDS = {
    "admin": "admin-secret-0001",
    "orchard-hris": "hris-secret-0001",
    "orchard-voucher": "voucher-0001",
}


@dataclass(frozen=True)
class SecureKafka:
    broker: KafkaBroker
    sasl_bootstrap: str
    ca_file: Path

    def env(self, user: str, password: str | None = None) -> dict[str, str]:
        return {
            "ORCHARD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "ORCHARD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "ORCHARD_KAFKA_SASL_USERNAME": user,
            "ORCHARD_KAFKA_SASL_PASSWORD": password or PASSWORDS[user],
            "ORCHARD_KAFKA_SSL_CA_FILE": str(self.ca_file),
        }


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    base = tmp_path_factory.mktemp("secure-kafka")
    broker = start_secure_kafka(base, PASSWORDS)
    try:
        assert broker.security is not None
        yield SecureKafka(broker, f"127.0.0.1:{broker.security.sasl_port}", broker.security.tls.ca_file)
    finally:
        stop_all([broker])


@pytest.fixture
async def secured(secure_kafka: SecureKafka, monkeypatch: pytest.MonkeyPatch) -> SecureKafka:
    """The registry's topics created over SASL_SSL by the admin principal, and every ACL applied."""
    for name, value in secure_kafka.env("admin").items():
        monkeypatch.setenv(name, value)
    await ensure_topics(secure_kafka.sasl_bootstrap, TOPICS)
    await apply(secure_kafka.sasl_bootstrap, bindings(), **KafkaSecurity.from_env().client_options())
    return secure_kafka


def _as(monkeypatch: pytest.MonkeyPatch, kafka: SecureKafka, user: str, password: str | None = None) -> None:
    for name, value in kafka.env(user, password).items():
        monkeypatch.setenv(name, value)


async def _relay_of_schema_acts_as_voucher(kafka: SecureKafka, schema: str) -> None:
    """The test's schema stands in for `voucher`: its relay's transactional ids get voucher's rule."""
    relay_ids = f"orchard-relay-{schema}-"
    extra = [
        AclBinding(principal("voucher"), Resource.TRANSACTIONAL_ID, relay_ids, Pattern.PREFIXED, operation)
        for operation in (Operation.WRITE, Operation.DESCRIBE)
    ]
    await apply(kafka.sasl_bootstrap, extra, **KafkaSecurity.from_env().client_options())


async def test_the_hris_principal_may_write_only_its_own_topics(secured, monkeypatch):
    _as(monkeypatch, secured, "orchard-hris")

    await produce(secured.sasl_bootstrap, "ipa.record_submitted", [(b"r-1", b"{}")])
    await produce(secured.sasl_bootstrap, "order.cancel_requested", [(b"r-1", b"{}")])
    await produce(secured.sasl_bootstrap, "member.upserted", [(b"m-1", b"{}")])
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(secured.sasl_bootstrap, "wallet.credit_requested", [(b"m-1", b"{}")])


async def test_a_wrong_password_is_refused(secured, monkeypatch):
    _as(monkeypatch, secured, "orchard-hris", password="not-the-password")

    with pytest.raises(KafkaConnectionError):
        await produce(secured.sasl_bootstrap, "ipa.record_submitted", [(b"r-1", b"{}")])


async def test_the_outbox_relay_publishes_over_sasl_ssl_within_its_service_acls(
    secured, monkeypatch, pool, service_db: ServiceDb
):
    await _relay_of_schema_acts_as_voucher(secured, service_db.schema)
    _as(monkeypatch, secured, "orchard-voucher")
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [event("voucher.issued", "o-1", 1), event("voucher.stock_low", "c-1", 2)])
    relay = OutboxRelay(
        dsn=service_db.dsn, schema=service_db.schema, bootstrap_servers=secured.sasl_bootstrap
    )
    await relay.start()
    try:

        async def published() -> bool:
            pending = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            return pending == 0

        await wait_until(published, what="both events published over SASL_SSL", timeout=60)
    finally:
        await relay.stop()

    _as(monkeypatch, secured, "admin")
    [record] = await read_topic(secured.sasl_bootstrap, "voucher.issued")
    assert json.loads(record.value)["data"]["key"] == "o-1"


def test_acls_follow_the_registry_and_nothing_else():
    acls = bindings()
    hris = {(acl.name, acl.operation) for acl in acls if acl.principal == principal(HRIS)}

    assert hris == {
        (topic, op)
        for topic in ("ipa.record_submitted", "order.cancel_requested", "member.upserted")
        for op in (Operation.WRITE, Operation.DESCRIBE)
    }
    for service in SERVICES:
        mine = [acl for acl in acls if acl.principal == principal(service) and acl.resource is Resource.TOPIC]
        writes = {
            acl.name for acl in mine if acl.operation is Operation.WRITE and not acl.name.endswith(".dlq")
        }
        reads = {acl.name for acl in mine if acl.operation is Operation.READ}
        assert writes == {spec.name for spec in TOPICS if service in spec.producers}, service
        assert reads == {spec.name for spec in TOPICS if service in spec.consumers}, service


class Tick(EventData):
    n: int


async def test_a_service_runtime_consumes_over_sasl_ssl_as_its_own_principal(
    secured, monkeypatch, service_db: ServiceDb
):
    await _relay_of_schema_acts_as_voucher(secured, service_db.schema)
    _as(monkeypatch, secured, "orchard-voucher")
    seen: list[int] = []

    async def handle(conn: Any, envelope: Any) -> None:
        seen.append(envelope.data.n)

    settings = Settings(
        ORCHARD_SERVICE="voucher",  # consumer groups orchard.voucher.*, as its ACLs allow
        **service_db.service_env(secured.sasl_bootstrap),
    )
    name = f"secured-{uuid.uuid4().hex[:8]}"
    sub = Subscription(name=name, topic="order.state_changed", payload=Tick, handle=handle)
    runtime = ServiceRuntime(settings, ServiceSpec(title="secured consumer", subscriptions=[sub]))
    await runtime.start()
    try:
        await wait_until(kafka_answers(runtime), what="the readiness probe answers over SASL_SSL")
        _as(monkeypatch, secured, "admin")
        envelope = Envelope.new(event_type="order.state_changed", producer="order", data=Tick(n=7))
        await produce(secured.sasl_bootstrap, "order.state_changed", [(b"o-7", envelope.to_bytes())])

        async def handled() -> bool:
            return seen == [7]

        await wait_until(handled, what="the event handled by the secured consumer", timeout=60)
    finally:
        await runtime.stop()


async def test_under_its_acls_a_service_reports_its_lag_and_refuses_dead_letters_it_may_not_read(
    secured, monkeypatch, service_db: ServiceDb
):
    name = f"ops-{uuid.uuid4().hex[:8]}"
    letter = [("x-orchard-dlq-consumer", f"orchard.voucher.{name}".encode())]
    await produce(secured.sasl_bootstrap, "order.state_changed.dlq", [(b"o-1", b"{}")], headers=letter)
    await _relay_of_schema_acts_as_voucher(secured, service_db.schema)
    _as(monkeypatch, secured, "orchard-voucher")
    settings = Settings(
        ORCHARD_SERVICE="voucher",
        **service_db.service_env(secured.sasl_bootstrap),
    )
    sub = Subscription(name=name, topic="order.state_changed", payload=Tick, handle=_skip)
    runtime = ServiceRuntime(settings, ServiceSpec(title="secured ops", subscriptions=[sub]))
    await runtime.start()
    try:
        await wait_until(kafka_answers(runtime), what="the consumers joined over SASL_SSL", timeout=60)
        headers = {"Authorization": f"Bearer {issue_token(role='ops', sub='ops-1', settings=settings)}"}
        transport = httpx.ASGITransport(app=runtime.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
            lag = await http.get("/v1/ops/consumers")
            dead_letters = await http.get("/v1/ops/dlq")
            replay = await http.post("/v1/ops/dlq/replay", json={"group": f"orchard.voucher.{sub.name}"})
    finally:
        await runtime.stop()
    assert lag.status_code == 200, lag.text
    assert [g["topic"] for g in lag.json()["groups"]] == ["order.state_changed"]
    for refused in (dead_letters, replay):
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "kafka_refused", refused.text


async def _skip(conn: Any, envelope: Any) -> None:
    return None
