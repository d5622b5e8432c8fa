from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from contracts.asyncapi import build_asyncapi, channel_id
from contracts.registry import DLQ_RETENTION_MS, TOPICS
from contracts.schemagen import ASYNCAPI_PATH, current_schemas, latest_schemas, render

ASYNCAPI_ID = re.compile(r"^[A-Za-z0-9_\-]+$")
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_asyncapi(latest_schemas(current_schemas()))


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _follow(document: dict[str, Any], reference: str) -> Any:
    target: Any = document
    for part in reference.removeprefix("#/").split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def test_the_committed_document_is_up_to_date(document: dict[str, Any]) -> None:
    assert ASYNCAPI_PATH.read_text(encoding="utf-8") == render(document), "run: python -m contracts.schemagen"


def test_it_is_an_asyncapi_3_document_for_kafka(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["local"]["protocol"] == "kafka"


def test_every_topic_and_its_dead_letter_topic_is_a_channel(document: dict[str, Any]) -> None:
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {spec.name for spec in TOPICS} | {spec.dlq for spec in TOPICS}


def test_channels_carry_the_registry_kafka_settings(document: dict[str, Any]) -> None:
    for spec in TOPICS:
        binding = document["channels"][channel_id(spec.name)]["bindings"]["kafka"]
        assert binding["partitions"] == spec.partitions
        assert binding["topicConfiguration"]["retention.ms"] == spec.retention_ms
        dlq_binding = document["channels"][channel_id(spec.dlq)]["bindings"]["kafka"]
        assert dlq_binding["topicConfiguration"]["retention.ms"] == DLQ_RETENTION_MS


def test_producers_send_and_consumers_receive_and_dead_letter(document: dict[str, Any]) -> None:
    operations = document["operations"].values()
    found = {(op["action"], op["tags"][0]["name"], op["channel"]["$ref"]) for op in operations}
    for spec in TOPICS:
        channel, dlq = f"#/channels/{channel_id(spec.name)}", f"#/channels/{channel_id(spec.dlq)}"
        for producer in spec.producers:
            assert ("send", producer, channel) in found
        for consumer in spec.consumers:
            assert ("receive", consumer, channel) in found
            assert ("send", consumer, dlq) in found


def test_each_message_names_its_key_and_its_payload_envelope(document: dict[str, Any]) -> None:
    for spec in TOPICS:
        message = document["components"]["messages"][spec.payload.__name__]
        assert message["name"] == spec.name
        assert f"data.{spec.key}" in message["bindings"]["kafka"]["key"]["description"]
        payload = _follow(document, message["payload"]["$ref"])
        assert payload["properties"]["event_type"]["const"] == spec.name


def test_every_reference_resolves_inside_the_document(document: dict[str, Any]) -> None:
    references = set(_references(document))
    assert references
    for reference in references:
        assert reference.startswith("#/"), reference
        _follow(document, reference)


def test_ids_are_valid_asyncapi_identifiers(document: dict[str, Any]) -> None:
    assert all(ASYNCAPI_ID.match(name) for name in document["channels"])
    assert all(ASYNCAPI_ID.match(name) for name in document["operations"])
    for section in document["components"].values():
        assert all(COMPONENT_KEY.match(name) for name in section)


def test_two_different_definitions_with_one_name_are_refused() -> None:
    schemas = latest_schemas(current_schemas())
    clashing = json.loads(json.dumps(schemas))
    clashing["delivery.requested"]["$defs"]["Channel"]["enum"] = ["pigeon"]
    with pytest.raises(ValueError, match="'Channel'"):
        build_asyncapi(clashing)
