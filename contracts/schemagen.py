"""Generate the committed event documentation: one JSON Schema per topic and the AsyncAPI document.

    python -m contracts.schemagen           # write schemas/<topic>.v1.json and asyncapi.json
    python -m contracts.schemagen --check   # exit 1 if the committed files differ from the models

Writing refuses (exit 2) a change that is incompatible with the committed schemas, so the committed
files only ever move compatibly and stay the baseline the compatibility test compares against.
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
SCHEMA_SUFFIX = f".v{SCHEMA_VERSION}.json"

Document = dict[str, Any]


def topic_schema(spec: TopicSpec) -> Document:
    """The envelope carrying this topic's payload, as it appears on the wire."""
    envelope: type[Envelope[Any]] = Envelope.__class_getitem__(spec.payload)  # type: ignore[assignment]
    schema = envelope.model_json_schema(mode="serialization")
    schema["properties"]["event_type"] = {"const": spec.name, "title": "Event Type", "type": "string"}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:orchard:event:{spec.name}:v{SCHEMA_VERSION}",
        **schema,
        "title": spec.name,
        "description": spec.description,
    }


def current_schemas() -> dict[str, Document]:
    return {spec.name: topic_schema(spec) for spec in TOPICS}


def committed_schemas() -> dict[str, Document]:
    return {
        path.name.removesuffix(SCHEMA_SUFFIX): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(SCHEMA_DIR.glob(f"*{SCHEMA_SUFFIX}"))
    }


def render(document: Mapping[str, Any]) -> str:
    """Stable text: sorted keys and a final newline, so regenerating unchanged models changes no byte."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generated_files(schemas: Mapping[str, Document]) -> dict[Path, str]:
    files = {SCHEMA_DIR / f"{name}{SCHEMA_SUFFIX}": render(schema) for name, schema in schemas.items()}
    files[ASYNCAPI_PATH] = render(build_asyncapi(schemas))
    return files


def out_of_date(files: Mapping[Path, str]) -> list[Path]:
    """Files whose committed text differs from `files`, and committed schemas no topic produces."""
    differing = [
        path for path, text in files.items() if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    leftovers = [path for path in sorted(SCHEMA_DIR.glob(f"*{SCHEMA_SUFFIX}")) if path not in files]
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
