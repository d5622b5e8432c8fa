"""The compatibility checker on hand-made schemas: one test per kind of break, and what may grow."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from contracts.compat import catalogue_incompatibilities, incompatibilities

NULL = {"type": "null"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, NULL], "default": None}


def _event() -> dict[str, Any]:
    """An envelope-shaped schema like the generated ones: payload and an enum behind `$ref`s."""
    return {
        "type": "object",
        "properties": {
            "event_id": {"type": "string", "format": "uuid"},
            "data": {"$ref": "#/$defs/Payload"},
        },
        "required": ["event_id", "data"],
        "$defs": {
            "Channel": {"type": "string", "enum": ["email", "sms"]},
            "Payload": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string", "format": "uuid"},
                    "amount": {"type": "string", "pattern": "^[0-9]+$"},
                    "channel": _nullable({"$ref": "#/$defs/Channel"}),
                    "note": _nullable({"type": "string"}),
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "params": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "required": ["order_id", "amount"],
            },
        },
    }


def _payload(schema: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = schema["$defs"]["Payload"]
    return payload


def _changed(edit: Any) -> dict[str, Any]:
    new = copy.deepcopy(_event())
    edit(new)
    return new


def test_an_unchanged_schema_is_compatible() -> None:
    assert incompatibilities(_event(), _event()) == []


def test_adding_an_optional_property_is_compatible() -> None:
    new = _changed(lambda s: _payload(s)["properties"].update(locale=_nullable({"type": "string"})))
    assert incompatibilities(_event(), new) == []


def test_adding_an_enum_value_is_compatible() -> None:
    new = _changed(lambda s: s["$defs"]["Channel"]["enum"].append("whatsapp"))
    assert incompatibilities(_event(), new) == []


def test_changing_descriptions_and_value_constraints_is_not_compared() -> None:
    def edit(s: dict[str, Any]) -> None:
        _payload(s)["description"] = "now documented"
        _payload(s)["properties"]["amount"]["pattern"] = "^[0-9]+(\\.[0-9]+)?$"

    assert incompatibilities(_event(), _changed(edit)) == []


def test_a_removed_property_breaks() -> None:
    new = _changed(lambda s: _payload(s)["properties"].pop("note"))
    assert incompatibilities(_event(), new) == ["$.data.note: property removed (or renamed)"]


def test_a_renamed_property_breaks() -> None:
    def rename(s: dict[str, Any]) -> None:
        properties = _payload(s)["properties"]
        properties["order_uuid"] = properties.pop("order_id")
        _payload(s)["required"] = ["order_uuid", "amount"]

    changes = incompatibilities(_event(), _changed(rename))
    assert "$.data.order_id: property removed (or renamed)" in changes
    assert "$.data.order_uuid: new required property" in changes


def test_a_changed_property_type_breaks() -> None:
    new = _changed(lambda s: _payload(s)["properties"].update(amount={"type": "number"}))
    assert incompatibilities(_event(), new) == ["$.data.amount: type changed from string to number"]


def test_making_a_property_nullable_breaks_consumers() -> None:
    new = _changed(lambda s: _payload(s)["properties"].update(amount=_nullable({"type": "string"})))
    assert incompatibilities(_event(), new) == ["$.data.amount: type changed from string to null|string"]


def test_a_changed_format_breaks() -> None:
    new = _changed(lambda s: _payload(s)["properties"]["order_id"].pop("format"))
    assert incompatibilities(_event(), new) == ["$.data.order_id: format changed from uuid to (none)"]


def test_a_new_required_property_breaks() -> None:
    def edit(s: dict[str, Any]) -> None:
        _payload(s)["properties"]["booking_id"] = {"type": "string"}
        _payload(s)["required"].append("booking_id")

    assert incompatibilities(_event(), _changed(edit)) == ["$.data.booking_id: new required property"]


def test_an_optional_property_becoming_required_breaks() -> None:
    new = _changed(lambda s: _payload(s)["required"].append("tags"))
    assert incompatibilities(_event(), new) == ["$.data.tags: property became required"]


def test_a_required_property_becoming_optional_breaks() -> None:
    new = _changed(lambda s: _payload(s)["required"].remove("amount"))
    assert incompatibilities(_event(), new) == ["$.data.amount: property is no longer required"]


def test_a_removed_enum_value_breaks() -> None:
    new = _changed(lambda s: s["$defs"]["Channel"]["enum"].remove("sms"))
    assert incompatibilities(_event(), new) == ["$.data.channel: enum value(s) removed: 'sms'"]


def test_a_changed_constant_breaks() -> None:
    old = {"type": "object", "properties": {"event_type": {"const": "a.b", "type": "string"}}}
    new = copy.deepcopy(old)
    new["properties"]["event_type"]["const"] = "a.c"
    assert incompatibilities(old, new) == ["$.event_type: enum value(s) removed: 'a.b'"]


def test_restricting_free_text_to_an_enum_breaks() -> None:
    new = _changed(lambda s: _payload(s)["properties"].update(note=_nullable({"$ref": "#/$defs/Channel"})))
    assert incompatibilities(_event(), new) == ["$.data.note: string values restricted to an enumeration"]


def test_a_changed_array_item_type_breaks() -> None:
    new = _changed(lambda s: _payload(s)["properties"]["tags"].update(items={"type": "integer"}))
    assert incompatibilities(_event(), new) == ["$.data.tags[]: type changed from string to integer"]


def test_a_changed_map_value_type_breaks() -> None:
    new = _changed(
        lambda s: _payload(s)["properties"]["params"].update(additionalProperties={"type": "boolean"})
    )
    assert incompatibilities(_event(), new) == ["$.data.params.*: type changed from string to boolean"]


def test_an_inlined_definition_compares_like_its_reference() -> None:
    def inline(s: dict[str, Any]) -> None:
        s["properties"]["data"] = s["$defs"].pop("Payload")

    assert incompatibilities(_event(), _changed(inline)) == []


def test_a_recursive_definition_is_compared_without_looping() -> None:
    tree = {
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": {"child": _nullable({"$ref": "#/$defs/Node"})}}},
    }
    assert incompatibilities(tree, copy.deepcopy(tree)) == []


def test_a_removed_topic_breaks_and_a_new_topic_does_not() -> None:
    old = {"a.created": _event(), "a.deleted": _event()}
    new = {"a.created": _event(), "a.renamed": _event()}
    assert catalogue_incompatibilities(old, new) == ["a.deleted: topic removed"]


def test_breaks_inside_a_topic_are_named_with_the_topic() -> None:
    new = _changed(lambda s: _payload(s)["properties"].pop("note"))
    assert catalogue_incompatibilities({"a.created": _event()}, {"a.created": new}) == [
        "a.created: $.data.note: property removed (or renamed)"
    ]


def test_references_outside_the_document_are_refused() -> None:
    with pytest.raises(ValueError, match="only local references"):
        incompatibilities({"$ref": "other.json#/x"}, {"type": "string"})
