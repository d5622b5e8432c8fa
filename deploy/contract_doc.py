"""Writes docs/contract.md, the reference half of the public contract, from the code that defines it:
the topic registry, each service's HTTP routes (with the roles they admit) and the `orchard` commands.

`make docs` (also run by `make schemas`) regenerates it; a test fails when the committed file is stale.
The prose around it (docs/architecture.md) is written by hand.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy.infra.paths import REPO_ROOT

DOC_PATH = REPO_ROOT / "docs" / "contract.md"
_HTTP_METHODS = ("get", "post", "put", "patch", "delete")

_HEADER = """# The public contract (reference)

Other systems depend on everything listed here: keep the names, extend rather than rename. This file
is generated from the code (`make docs`); `docs/architecture.md` explains how the parts fit together,
`contracts/schemas/` holds each payload's JSON Schema and `contracts/asyncapi.json` the AsyncAPI
document. A test fails when this file and the code disagree.
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _topics() -> Iterator[str]:
    from contracts.registry import TOPICS

    yield "## Kafka topics"
    yield ""
    yield (
        "Every message is an envelope (`event_id`, `event_type`, `schema_version`, `occurred_at`, "
        "`correlation_id`, `data`) keyed by the field named below, so one aggregate's events stay in "
        "order on one partition. Each topic has a `<topic>.dlq` twin for messages its consumers could "
        "not handle (kept 30 days)."
    )
    yield ""
    yield "| topic | payload | key | producers | consumers | partitions | what it means |"
    yield "|---|---|---|---|---|---|---|"
    for spec in TOPICS:
        key = f"`{spec.key}`" + (f" (else `{spec.key_fallback}`)" if spec.key_fallback else "")
        consumers = ", ".join(spec.consumers) or "downstream only"
        policy = " (compacted)" if spec.compacted else ""
        yield (
            f"| `{spec.name}` | `{spec.payload.__name__}` | {key} | {', '.join(spec.producers)} | "
            f"{consumers} | {spec.partitions}{policy} | {_cell(spec.description)} |"
        )
    yield ""


def _roles(route: Any) -> str:
    from chassis.auth import ADMITTED_ROLES_ATTR

    def walk(dependant: Any) -> Iterator[frozenset[str]]:
        roles = getattr(dependant.call, ADMITTED_ROLES_ATTR, None)
        if roles is not None:
            yield roles
        for sub in dependant.dependencies:
            yield from walk(sub)

    found = [roles for roles in walk(route.dependant)]
    if not found:
        return "none"
    admitted = frozenset.intersection(*found)
    return ", ".join(sorted(admitted))


def _routes_of(router: Any) -> Iterator[Any]:
    """A router's routes, those of the routers included in it too (a service may wrap one of its
    routers to add a dependency, such as a body limit taken from its settings)."""
    for route in router.routes:
        included = getattr(route, "original_router", None)  # FastAPI's record of an included router
        if included is not None:
            yield from _routes_of(included)
        else:
            yield route


def _summary(route: Any) -> str:
    if route.summary:
        return str(route.summary)
    text = (route.description or "").strip()
    return text.split("\n\n")[0] if text else route.name.replace("_", " ")


def _http() -> Iterator[str]:
    from fastapi.routing import APIRoute

    from chassis.ops_api import router as ops_router
    from chassis.settings import SERVICE_PORTS
    from deploy.catalog import service_spec

    yield "## HTTP"
    yield ""
    yield (
        "JSON over HTTP; errors are RFC 9457 problem details naming the field at fault. Routes with roles "
        "need `Authorization: Bearer <JWT>` carrying one of them; a request without a valid token is "
        "answered 401 before its body is read, a body over the route's limit 413. Every service also "
        "serves `/health/live`, `/health/ready`, `/metrics` and its OpenAPI document at `/openapi.json`."
    )

    def table(heading: str, routers: Any) -> Iterator[str]:
        yield ""
        yield heading
        yield ""
        yield "| method | path | roles | what it does |"
        yield "|---|---|---|---|"
        rows = []
        routes = [route for router in routers for route in _routes_of(router)]
        for route in routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            if route.path.startswith(("/health", "/metrics")):
                continue
            for method in sorted(route.methods or (), key=lambda m: _HTTP_METHODS.index(m.lower())):
                rows.append((route.path, method, _roles(route), _cell(_summary(route))))
        for path, method, roles, summary in sorted(rows):
            yield f"| {method} | `{path}` | {roles} | {summary} |"

    for service, port in SERVICE_PORTS.items():
        yield from table(f"### {service} (port {port})", service_spec(service).routers)
    yield from table("### every service (on its own port: its own consumers, outbox, DLQ)", [ops_router])
    yield ""


def _cli() -> Iterator[str]:
    import typer

    from deploy.cli import app

    yield "## Command line (`orchard`, also `python -m deploy.cli`)"
    yield ""
    yield "| command | what it does |"
    yield "|---|---|"
    group = typer.main.get_group(app)
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for sub_name, sub in sorted(subcommands.items()):
                yield f"| `orchard {name} {sub_name}` | {_cell((sub.help or '').split(chr(10) * 2)[0])} |"
        else:
            yield f"| `orchard {name}` | {_cell((command.help or '').split(chr(10) * 2)[0])} |"
    yield ""


def render() -> str:
    """The document as the code describes it now (in development mode, as `make up` runs)."""
    saved = os.environ.get("ORCHARD_ENV")
    os.environ["ORCHARD_ENV"] = "dev"
    try:
        lines = [_HEADER, *_topics(), *_http(), *_cli()]
    finally:
        if saved is None:
            os.environ.pop("ORCHARD_ENV", None)
        else:
            os.environ["ORCHARD_ENV"] = saved
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DOC_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")


if __name__ == "__main__":
    main()
