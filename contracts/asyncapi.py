"""The AsyncAPI 3.0 document of every topic, built from the registry and the topics' JSON Schemas.

Each topic and its dead-letter topic is a channel; each producer has a `send` operation, each
consumer a `receive` operation and a `send` to the dead-letter channel. Payload schemas live once
under `components.schemas` (definitions shared between topics, such as `Channel`, appear once).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.registry import DLQ_PARTITIONS, DLQ_RETENTION_MS, TOPICS, TopicSpec

Document = dict[str, Any]

KAFKA_BINDING_VERSION = "0.5.0"
DEAD_LETTER = "DeadLetter"
EVENT_HEADERS = "EventHeaders"
DEAD_LETTER_HEADERS = "DeadLetterHeaders"

_EVENT_HEADERS: Document = {
    "type": "object",
    "description": "Copied from the envelope so tools can route and trace without decoding the value.",
    "properties": {
        name: {"type": "string"}
        for name in ("event_type", "event_id", "correlation_id", "causation_id", "producer")
    },
}

_DEAD_LETTER_HEADERS: Document = {
    "type": "object",
    "description": "The original message's headers plus why, where from and how often it failed.",
    "properties": {
        f"x-orchard-dlq-{name}": {"type": "string", "description": description}
        for name, description in (
            ("error", "why the message can never be processed"),
            ("error-code", "machine-readable reason, e.g. `undecodable`, `wrong_event_type`"),
            ("attempts", "how often it was tried"),
            ("original-topic", "where it was read"),
            ("original-partition", "where it was read"),
            ("original-offset", "where it was read"),
            ("consumer", "the consumer group that gave up on it"),
            ("failed-at", "RFC 3339 instant"),
        )
    },
    "additionalProperties": {"type": "string"},
}


def channel_id(topic: str) -> str:
    """AsyncAPI ids allow no dots: `order.state_changed` → `order_state_changed`."""
    return topic.replace(".", "_")


def build_asyncapi(schemas: Mapping[str, Mapping[str, Any]]) -> Document:
    """The document for `schemas` (topic name → envelope JSON Schema, as generated)."""
    components: Document = {EVENT_HEADERS: _EVENT_HEADERS, DEAD_LETTER_HEADERS: _DEAD_LETTER_HEADERS}
    messages: Document = {DEAD_LETTER: _dead_letter_message()}
    channels: Document = {}
    operations: Document = {}
    for spec in TOPICS:
        message = _message_name(spec)
        components[_envelope_name(spec)] = _hoist(schemas[spec.name], components)
        messages[message] = _message(spec, message)
        cid, dlq_cid = channel_id(spec.name), channel_id(spec.dlq)
        channels[cid] = _channel(spec.name, spec.description, message, _topic_binding(spec))
        channels[dlq_cid] = _channel(
            spec.dlq,
            f"Messages of `{spec.name}` that can never be processed, with the reason; inspect and replay.",
            DEAD_LETTER,
            _binding(spec.dlq, DLQ_PARTITIONS, DLQ_RETENTION_MS, compacted=False),
        )
        for producer in spec.producers:
            operations[f"{producer}_sends_{cid}"] = _operation("send", producer, spec.name, message)
        for consumer in spec.consumers:
            operations[f"{consumer}_receives_{cid}"] = _operation("receive", consumer, spec.name, message)
            operations[f"{consumer}_dead_letters_{cid}"] = _operation("send", consumer, spec.dlq, DEAD_LETTER)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Orchard events",
            "version": "1.0.0",
            "description": (
                "Every Kafka topic of the Orchard rewards platform. Values are UTF-8 JSON envelopes; "
                "the key is the aggregate id named in each message's Kafka binding. Money and points "
                "amounts are decimal strings. Every topic `T` has a dead-letter topic `T.dlq`."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local broker; KAFKA_BOOTSTRAP_SERVERS overrides it.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": messages},
    }


def _message_name(spec: TopicSpec) -> str:
    return spec.payload.__name__


def _envelope_name(spec: TopicSpec) -> str:
    return f"{spec.payload.__name__}Envelope"


def _hoist(schema: Mapping[str, Any], components: Document) -> Document:
    """Move a schema's `$defs` into `components` and point its references there."""
    for name, definition in schema.get("$defs", {}).items():
        moved = _repoint(definition)
        if components.setdefault(name, moved) != moved:
            raise ValueError(f"two different schemas are both named {name!r}")
    body = {k: v for k, v in schema.items() if k not in ("$defs", "$schema", "$id")}
    repointed: Document = _repoint(body)
    return repointed


def _repoint(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {
            key: value.replace("#/$defs/", "#/components/schemas/")
            if key == "$ref" and isinstance(value, str)
            else _repoint(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_repoint(item) for item in node]
    return node


def _message(spec: TopicSpec, name: str) -> Document:
    key = f"`data.{spec.key}`" + (f", else `data.{spec.key_fallback}`" if spec.key_fallback else "")
    return {
        "name": spec.name,
        "title": name,
        "summary": spec.description,
        "contentType": "application/json",
        "headers": {"$ref": f"#/components/schemas/{EVENT_HEADERS}"},
        "payload": {"$ref": f"#/components/schemas/{_envelope_name(spec)}"},
        "correlationId": {"location": "$message.payload#/correlation_id"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"the aggregate id: {key}"},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _dead_letter_message() -> Document:
    return {
        "name": "dead_letter",
        "title": DEAD_LETTER,
        "summary": "The original message, value and key unchanged, which may not match any schema.",
        "headers": {"$ref": f"#/components/schemas/{DEAD_LETTER_HEADERS}"},
        "payload": {"description": "the original value, byte for byte"},
    }


def _channel(address: str, description: str, message: str, bindings: Document) -> Document:
    return {
        "address": address,
        "description": description,
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        "bindings": {"kafka": bindings},
    }


def _topic_binding(spec: TopicSpec) -> Document:
    return _binding(spec.name, spec.partitions, spec.retention_ms, compacted=spec.compacted)


def _binding(topic: str, partitions: int, retention_ms: int, *, compacted: bool) -> Document:
    return {
        "topic": topic,
        "partitions": partitions,
        "topicConfiguration": {
            "cleanup.policy": ["compact" if compacted else "delete"],
            "retention.ms": retention_ms,
        },
        "bindingVersion": KAFKA_BINDING_VERSION,
    }


def _operation(action: str, service: str, topic: str, message: str) -> Document:
    cid = channel_id(topic)
    verb = "publishes to" if action == "send" else "consumes"
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{cid}"},
        "summary": f"{service} {verb} {topic}",
        "messages": [{"$ref": f"#/channels/{cid}/messages/{message}"}],
        "tags": [{"name": service}],
    }
