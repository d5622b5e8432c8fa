"""Which changes between two JSON Schemas of an event would break a producer or a consumer.

Within one schema_version, contracts may only grow: new optional properties and new enum values
are fine; removing or renaming a property, changing its type, making a property required (or no
longer required), removing an enum value or a topic is not. Both producers and consumers count:
a new required property breaks old producers, a property no longer always sent breaks consumers.
Value constraints (patterns, lengths, bounds) are not compared.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Schema = Mapping[str, Any]

_ALTERNATIVES = ("anyOf", "oneOf")


def incompatibilities(old: Schema, new: Schema) -> list[str]:
    """Every incompatible change from `old` to `new`, one readable line each (none: compatible)."""
    return list(_Comparison(old, new).changes(old, new, "$"))


def catalogue_incompatibilities(old: Mapping[str, Schema], new: Mapping[str, Schema]) -> list[str]:
    """Incompatible changes between two sets of schemas by topic, a removed topic included."""
    found = [f"{name}: topic removed" for name in sorted(set(old) - set(new))]
    for name in sorted(set(old) & set(new)):
        found += [f"{name}: {change}" for change in incompatibilities(old[name], new[name])]
    return found


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self._old_root = old_root
        self._new_root = new_root

    def changes(
        self, old: Schema, new: Schema, path: str, seen: frozenset[str] = frozenset()
    ) -> Iterator[str]:
        references: set[str] = set()
        old_variants = _variants(old, self._old_root, references)
        new_variants = _variants(new, self._new_root, references)
        # A recursive definition would otherwise be walked forever.
        if references and references <= seen:
            return
        seen = seen | references

        old_types, new_types = _types(old_variants), _types(new_variants)
        if old_types != new_types:
            yield f"{path}: type changed from {_show(old_types)} to {_show(new_types)}"
            return
        old_formats, new_formats = _formats(old_variants), _formats(new_variants)
        if old_formats != new_formats:
            yield f"{path}: format changed from {_show(old_formats)} to {_show(new_formats)}"
        yield from _enum_changes(old_variants, new_variants, path)
        if "object" in old_types:
            yield from self._object_changes(
                _merged_object(old_variants), _merged_object(new_variants), path, seen
            )
        if "array" in old_types:
            old_items, new_items = _items(old_variants), _items(new_variants)
            if old_items is not None and new_items is not None:
                yield from self.changes(old_items, new_items, f"{path}[]", seen)

    def _object_changes(self, old: Schema, new: Schema, path: str, seen: frozenset[str]) -> Iterator[str]:
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name in old_props:
            where = f"{path}.{name}"
            if name not in new_props:
                yield f"{where}: property removed (or renamed)"
                continue
            if name in new_required and name not in old_required:
                yield f"{where}: property became required"
            if name in old_required and name not in new_required:
                yield f"{where}: property is no longer required"
            yield from self.changes(old_props[name], new_props[name], where, seen)
        for name in sorted(set(new_props) - set(old_props)):
            if name in new_required:
                yield f"{path}.{name}: new required property"
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            yield from self.changes(old_extra, new_extra, f"{path}.*", seen)


def _resolve(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        reference = schema["$ref"]
        if not reference.startswith("#/"):
            raise ValueError(f"only local references are supported, not {reference!r}")
        target: Any = root
        for part in reference[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = target
    return schema


def _variants(schema: Schema, root: Schema, references: set[str]) -> list[Schema]:
    """The alternatives a value may match, with references resolved and unions flattened."""
    if "$ref" in schema:
        references.add(schema["$ref"])
    resolved = _resolve(schema, root)
    for keyword in _ALTERNATIVES:
        if keyword in resolved:
            return [v for alternative in resolved[keyword] for v in _variants(alternative, root, references)]
    return [resolved]


def _types(variants: list[Schema]) -> frozenset[str]:
    found: set[str] = set()
    for variant in variants:
        declared = variant.get("type")
        if isinstance(declared, str):
            found.add(declared)
        elif isinstance(declared, list):
            found.update(declared)
        elif "const" in variant or "enum" in variant:
            found.update(_json_type(value) for value in _enum_values(variant) or ())
        else:
            found.add("any")
    return frozenset(found)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _formats(variants: list[Schema]) -> frozenset[str]:
    return frozenset(str(v["format"]) for v in variants if "format" in v)


def _enum_values(variant: Schema) -> list[Any] | None:
    """The only values a variant allows, or None when it allows every value of its type."""
    if "const" in variant:
        return [variant["const"]]
    if "enum" in variant:
        return list(variant["enum"])
    return [None] if variant.get("type") == "null" else None


def _allowed_values(variants: list[Schema]) -> dict[str, list[Any] | None]:
    """Per JSON type, the values allowed (None: any value of that type)."""
    allowed: dict[str, list[Any] | None] = {}
    for variant in variants:
        values = _enum_values(variant)
        if values is None:
            allowed.update(dict.fromkeys(_types([variant])))
            continue
        for value in values:
            listed = allowed.setdefault(_json_type(value), [])
            if listed is not None and value not in listed:
                listed.append(value)
    return allowed


def _enum_changes(old_variants: list[Schema], new_variants: list[Schema], path: str) -> Iterator[str]:
    new_allowed = _allowed_values(new_variants)
    for json_type, old_values in _allowed_values(old_variants).items():
        new_values = new_allowed.get(json_type)
        if new_values is None:
            continue
        if old_values is None:
            yield f"{path}: {json_type} values restricted to an enumeration"
            continue
        removed = [value for value in old_values if value not in new_values]
        if removed:
            yield f"{path}: enum value(s) removed: {', '.join(map(repr, removed))}"


def _merged_object(variants: list[Schema]) -> Schema:
    properties: dict[str, Any] = {}
    required: set[str] = set()
    extra: Any = None
    for variant in variants:
        if "object" in _types([variant]):
            properties.update(variant.get("properties", {}))
            required.update(variant.get("required", ()))
            extra = variant.get("additionalProperties", extra)
    return {"properties": properties, "required": sorted(required), "additionalProperties": extra}


def _items(variants: list[Schema]) -> Schema | None:
    for variant in variants:
        if "array" in _types([variant]) and isinstance(variant.get("items"), Mapping):
            items: Schema = variant["items"]
            return items
    return None


def _show(values: frozenset[str]) -> str:
    return "|".join(sorted(values)) or "(none)"
