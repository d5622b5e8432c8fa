"""Generate the committed event documentation: one JSON Schema per topic and the AsyncAPI document.

    python -m contracts.schemagen           # write schemas/<topic>.v<n>.json and asyncapi.json
    python -m contracts.schemagen --check   # exit 1 if the committed files differ from the models

Writing refuses (exit 2) a change that is incompatible with the committed schemas, so the committed
files only ever move compatibly and stay the baseline the compatibility test compares against. An
incompatible change is a new schema_version of the payload: the earlier version keeps its file (its
model stays in `EARLIER_VERSIONS`, since consumers still read it) and the new one gets its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts.asyncapi import build_asyncapi
from contracts.compat import catalogue_incompatibilities
from contracts.envelope import SCHEMA_VERSION, Envelope
from contracts.registry import TOPICS, TopicSpec

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_DIR = PACKAGE_DIR / "schemas"
ASYNCAPI_PATH = PACKAGE_DIR / "asyncapi.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_GLOB = "*.v*.json"

Document = dict[str, Any]


def schema_name(topic: str, version: int) -> str:
    """`voucher.issued`, 2 → `voucher.issued.v2`: the key of one version's schema, and its file's stem."""
    return f"{topic}.v{version}"


def topic_schema(spec: TopicSpec, version: int | None = None) -> Document:
    """The envelope carrying this topic's payload, as it appears on the wire: the current version, or
    an earlier one consumers still read (`EventData.EARLIER_VERSIONS`)."""
    current = spec.payload.SCHEMA_VERSION
    version = current if version is None else version
    payload = spec.payload if version == current else spec.payload.EARLIER_VERSIONS[version]
    envelope: type[Envelope[Any]] = Envelope.__class_getitem__(payload)  # type: ignore[assignment]
    schema = envelope.model_json_schema(mode="serialization")
    schema["properties"]["event_type"] = {"const": spec.name, "title": "Event Type", "type": "string"}
    if version != SCHEMA_VERSION:
        schema["properties"]["schema_version"] = {
            "const": version,
            "title": "Schema Version",
            "type": "integer",
        }
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:orchard:event:{spec.name}:v{version}",
        **schema,
        "title": spec.name,
        "description": spec.description,
    }


def current_schemas() -> dict[str, Document]:
    """Every version of every topic the models read, by `schema_name` (earlier versions included)."""
    schemas: dict[str, Document] = {}
    for spec in TOPICS:
        for version in (*spec.payload.EARLIER_VERSIONS, spec.payload.SCHEMA_VERSION):
            schemas[schema_name(spec.name, version)] = topic_schema(spec, version)
    return schemas


def latest_schemas(schemas: Mapping[str, Document]) -> dict[str, Document]:
    """Topic name → the schema of the version producers send now."""
    return {spec.name: schemas[schema_name(spec.name, spec.payload.SCHEMA_VERSION)] for spec in TOPICS}


def committed_schemas() -> dict[str, Document]:
    return {
        path.name.removesuffix(".json"): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(SCHEMA_DIR.glob(SCHEMA_GLOB))
    }


def render(document: Mapping[str, Any]) -> str:
    """Stable text: sorted keys and a final newline, so regenerating unchanged models changes no byte."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generated_files(schemas: Mapping[str, Document]) -> dict[Path, str]:
    files = {SCHEMA_DIR / f"{name}.json": render(schema) for name, schema in schemas.items()}
    files[ASYNCAPI_PATH] = render(build_asyncapi(latest_schemas(schemas)))
    return files


def out_of_date(files: Mapping[Path, str]) -> list[Path]:
    """Files whose committed text differs from `files`, and committed schemas no topic produces."""
    differing = [
        path for path, text in files.items() if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    leftovers = [path for path in sorted(SCHEMA_DIR.glob(SCHEMA_GLOB)) if path not in files]
    return differing + leftovers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts.schemagen",
        description="Generate the event JSON Schemas and AsyncAPI document.",
    )
    parser.add_argument("--check", action="store_true", help="only check the committed files are current")
    args = parser.parse_args(argv)

    schemas = current_schemas()
    files = generated_files(schemas)
    stale = out_of_date(files)
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(PACKAGE_DIR.parent)}", file=sys.stderr)
        if stale:
            print("run: python -m contracts.schemagen", file=sys.stderr)
        return 1 if stale else 0

    breaks = catalogue_incompatibilities(committed_schemas(), schemas)
    if breaks:
        print(
            "refusing to write incompatible schemas (contracts only grow within a schema_version):",
            file=sys.stderr,
        )
        for change in breaks:
            print(f"  {change}", file=sys.stderr)
        return 2
    SCHEMA_DIR.mkdir(exist_ok=True)
    for path in stale:
        if path in files:
            path.write_text(files[path], encoding="utf-8")
            print(f"wrote {path.relative_to(PACKAGE_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
