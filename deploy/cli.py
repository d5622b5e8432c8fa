"""`orchard`: the local runner (`up`, `down`, `status`) and operator tools (`token`, `topics`, `dlq`,
`outbox`).

Errors a person can fix print as one line on stderr with exit code 1, never as a traceback
(set ORCHARD_DEBUG=1 to see one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from chassis.production import DEV
from deploy.infra.errors import InfraError, StartRefused

if TYPE_CHECKING:
    from deploy.runner import StackConfig

app = typer.Typer(
    help="Orchard: run the rewards platform locally and operate it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
outbox_app = typer.Typer(help="Inspect and retry outbox events the relay parked.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")

# Piped output (CI logs, `| less`) gets wide tables rather than rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_Command = TypeVar("_Command", bound=Callable[..., Any])


def one_line_errors(command: _Command) -> _Command:
    """Turn expected failures into `orchard: <message>` and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            err.print("orchard: interrupted")
            raise typer.Exit(130) from None
        except Exception as error:
            if os.environ.get("ORCHARD_DEBUG"):
                raise
            message = str(error) if isinstance(error, InfraError) else f"{type(error).__name__}: {error}"
            for line in getattr(error, "lines", None) or [message]:
                err.print(f"[red]orchard:[/red] {' '.join(line.split())}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _quiet_client_logs() -> None:
    # aiokafka logs every refused connection; the command reports the outcome itself.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _bootstrap() -> str:
    from deploy.runner import StackConfig

    return StackConfig.from_env().bootstrap_servers


def _issue_token(role: str, sub: str) -> str:
    from chassis.auth import issue_token

    return issue_token(role=role, sub=sub)


@app.command()
@one_line_errors
def up(
    demo: Annotated[bool, typer.Option(help="Load the demo campaigns, codes and IPA batch (once).")] = True,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=1, help="Processes per service sharing its consumer groups (default ORCHARD_REPLICAS or 1)."
        ),
    ] = None,
) -> None:
    """Start Kafka, PostgreSQL, the six services and the local sinks (reusing whatever already runs)."""
    from deploy.runner import StackConfig, default_replica_ports
    from deploy.runner import up as bring_up

    _quiet_client_logs()
    config = StackConfig.from_env()
    if replicas is not None:
        config = dataclasses.replace(
            config, replica_ports=default_replica_ports(config.service_ports, replicas)
        )
    report = bring_up(config, on_step=lambda step: err.print(f"[dim]… {step}[/dim]"))
    summary = f"started {', '.join(report.started)}" if report.started else "everything was already running"
    out.print(f"[green]Orchard is up[/green] in {report.seconds:.1f}s ({summary}).")
    out.print(f"  Kafka      {config.bootstrap_servers}")
    database = (
        "DATABASE_URL" if config.external_database else f"127.0.0.1:{config.postgres_port}/{config.database}"
    )
    out.print(f"  Postgres   {database}")
    for spec in report.processes:
        where = f"{spec.base_url}/docs" if spec.ready_path else f"127.0.0.1:{spec.port}"
        if spec.name in ("identity", "console"):
            where = spec.base_url + ("/" if spec.name == "console" else "/realms/orchard")
        out.print(f"  {spec.name:<10} {where}")
    out.print(f"  Logs       {config.log_dir}")
    _print_console(config, report.processes)
    if not config.is_dev:
        return  # demo data and a dev token are development conveniences
    try:
        token = _issue_token("admin", "dev-admin")
    except ImportError:
        return
    if demo:
        _load_demo(config, token)
    out.print("Dev admin token (24 h):")
    out.print(token, soft_wrap=True)


def _print_console(config: StackConfig, processes: list[Any]) -> None:
    from deploy.identity.keycloak import DEMO_PASSWORD, DEMO_USERS

    names = {spec.name for spec in processes}
    if "console" not in names or config.console_url is None:
        return
    out.print(f"[green]Console[/green]    {config.console_url}/")
    if "identity" in names:
        users = ", ".join(f"{user} ({role})" if user != role else user for user, role in DEMO_USERS.items())
        out.print(f"  Demo users (password {DEMO_PASSWORD}): {users}")


def _load_demo(config: StackConfig, token: str) -> None:
    from deploy.demo import VOUCHER_CAMPAIGN, seed, service_urls

    report = asyncio.run(
        seed(
            service_urls(config.service_ports),
            token,
            on_step=lambda step: err.print(f"[dim]… {step}[/dim]"),
        )
    )
    if not report.seeded:
        out.print(f"Demo data: already loaded (campaign {VOUCHER_CAMPAIGN}).")
        return
    out.print(
        f"Demo data: campaigns {', '.join(report.campaigns)}, {report.codes_generated} codes, "
        f"IPA batch {report.batch_id} with {report.records} records (2 invalid on purpose)."
    )
    out.print(
        f"  e-mail lands in {config.var_dir / 'mail'}, SMS and WhatsApp in {config.var_dir / 'messages'}"
    )


@app.command()
@one_line_errors
def down() -> None:
    """Stop the services, then Kafka, then PostgreSQL."""
    from deploy.runner import StackConfig
    from deploy.runner import down as bring_down

    stopped = bring_down(StackConfig.from_env(), on_step=lambda step: err.print(f"[dim]… {step}[/dim]"))
    out.print(f"Stopped {', '.join(stopped)}." if stopped else "Nothing was running.")


@app.command()
@one_line_errors
def status() -> None:
    """Show each component's pid, port and health; exit code 0 only when all are healthy."""
    from deploy.runner import StackConfig
    from deploy.runner import status as stack_status

    rows = stack_status(StackConfig.from_env())
    table = Table("component", "pid", "port", "health")
    for row in rows:
        health = f"[green]{row.detail}[/green]" if row.healthy else f"[red]{row.detail}[/red]"
        table.add_row(row.name, str(row.pid or "-"), str(row.port or "-"), health)
    out.print(table)
    if not all(row.healthy for row in rows):
        raise typer.Exit(1)


@app.command()
@one_line_errors
def token(
    role: Annotated[
        str, typer.Option(help="admin, ops, finance, support_agent, auditor, member, partner, hris")
    ],
    sub: Annotated[
        str | None, typer.Option(help="Subject: member id, partner id, user id (default dev-<role>)")
    ] = None,
) -> None:
    """Print a dev JWT signed with the local secret (development mode only)."""
    mode = os.environ.get("ORCHARD_ENV") or DEV
    if mode.strip().lower() != DEV:
        raise InfraError(f"orchard token mints development tokens only; ORCHARD_ENV is {mode!r}, not 'dev'")
    out.print(_issue_token(role, sub or f"dev-{role}"), soft_wrap=True)


@app.command()
@one_line_errors
def topics(
    create: Annotated[bool, typer.Option("--create", help="Create missing topics on the broker")] = False,
) -> None:
    """List the topic registry; with --create, make sure every topic and its .dlq exist."""
    from contracts.registry import TOPICS

    table = Table("topic", "partitions", "retention", "key", "producer", "consumers")
    for spec in TOPICS:
        producers = ", ".join(getattr(spec, "producers", (spec.producer,)))
        consumers = ", ".join(spec.consumers) or "-"
        table.add_row(
            spec.name, str(spec.partitions), _retention(spec.retention_ms), spec.key, producers, consumers
        )
    out.print(table)
    if create:
        from deploy.replication import Replication
        from deploy.runner import StackConfig, create_registry_topics

        _quiet_client_logs()
        config = StackConfig.from_env()
        replication = Replication.from_env(os.environ, dev=config.is_dev)
        if refusals := replication.refusals(dev=config.is_dev):
            raise StartRefused(refusals)
        bootstrap = config.bootstrap_servers
        created = asyncio.run(create_registry_topics(bootstrap, replication))
        out.print(f"Created {len(created)} topic(s) on {bootstrap}." if created else "All topics exist.")


def _retention(ms: int) -> str:
    if ms < 0:
        return "forever"
    days, rest = divmod(ms, 24 * 3600 * 1000)
    return f"{days}d" if not rest else f"{ms / 3600_000:g}h"


@dlq_app.command("list")
@one_line_errors
def dlq_list(
    topic: Annotated[
        list[str] | None, typer.Option(help="A topic or its .dlq (repeatable); default all")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Only the letters this consumer group failed (e.g. orchard.order.x)")
    ] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest last")] = 100,
) -> None:
    """Show dead letters with the consumer group that failed them, their error, attempts and event id."""
    from chassis.dlq import list_dead_letters

    _quiet_client_logs()
    letters = asyncio.run(list_dead_letters(_bootstrap(), topic or None, limit, group=group))
    table = Table(
        "dlq topic",
        "partition:offset",
        "event id",
        "key",
        "group",
        "error code",
        "attempts",
        "failed at",
        "error",
    )
    for letter in letters:
        table.add_row(
            letter.topic,
            f"{letter.partition}:{letter.offset}",
            letter.event_id or "-",
            letter.key or "-",
            letter.consumer or "-",
            letter.error_code,
            str(letter.attempts),
            letter.failed_at,
            letter.error,
        )
    out.print(table)
    out.print(f"{len(letters)} dead letter(s).")


@dlq_app.command("replay")
@one_line_errors
def dlq_replay(
    topic: Annotated[str, typer.Option(help="The topic (or its .dlq) whose dead letters to replay")],
    event_id: Annotated[
        list[str] | None, typer.Option(help="Replay only these event ids (repeatable)")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Replay only the letters this consumer group failed")
    ] = None,
) -> None:
    """Send dead letters back to their original topic (all not yet replayed, or the given event ids).

    Each one is handled again only by the consumer group that failed it; the other groups reading the
    topic pass it over.
    """
    from chassis.dlq import replay_dead_letters

    _quiet_client_logs()
    dlq_topic = topic if topic.endswith(".dlq") else f"{topic}.dlq"
    count = asyncio.run(replay_dead_letters(_bootstrap(), dlq_topic, event_ids=event_id or None, group=group))
    out.print(f"Replayed {count} dead letter(s) from {dlq_topic}.")


_DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="DSN of the service's database (default: the local stack's, or DATABASE_URL's server)",
    ),
]


async def _service_connection(service: str, database_url: str | None) -> Any:
    """A connection whose search_path is the service's schema (every service's schema is its name)."""
    import asyncpg

    from chassis.db import quote_ident

    if database_url is None:
        from deploy.infra.postgres import with_database
        from deploy.runner import StackConfig

        config = StackConfig.from_env()
        if service not in config.service_ports:
            raise ValueError(f"unknown service {service!r}; one of {', '.join(config.service_ports)}")
        server = config.external_database or config.postgres().admin_dsn
        database_url = with_database(server, config.database)
    conn = await asyncpg.connect(database_url, server_settings={"search_path": quote_ident(service)})
    exists = await conn.fetchval("SELECT to_regclass('outbox') IS NOT NULL")
    if not exists:
        await conn.close()
        raise ValueError(f"schema {service!r} has no outbox table")
    return conn


@outbox_app.command("parked")
@one_line_errors
def outbox_parked(
    service: Annotated[str, typer.Option(help="The service whose outbox to inspect")],
    database_url: _DatabaseUrl = None,
) -> None:
    """List the service's parked outbox events (never their payload)."""
    from chassis.outbox import list_parked

    async def run() -> list[Any]:
        conn = await _service_connection(service, database_url)
        try:
            return await list_parked(conn)
        finally:
            await conn.close()

    parked = asyncio.run(run())
    table = Table("id", "topic", "key", "attempts", "last error", "parked at")
    for event in parked:
        table.add_row(
            str(event.id),
            event.topic,
            event.key,
            str(event.attempts),
            event.last_error or "-",
            event.parked_at.isoformat(timespec="seconds"),
        )
    out.print(table)
    out.print(f"{len(parked)} parked event(s).")


@outbox_app.command("retry")
@one_line_errors
def outbox_retry(
    service: Annotated[str, typer.Option(help="The service whose parked events to retry")],
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Retry only these row ids (repeatable)")
    ] = None,
    database_url: _DatabaseUrl = None,
) -> None:
    """Un-park events (all, or the given ids) so the relay publishes them again, after the events of
    their key it published meanwhile."""
    from chassis.outbox import retry_parked

    async def run() -> list[int]:
        conn = await _service_connection(service, database_url)
        try:
            return await retry_parked(conn, ids or None)
        finally:
            await conn.close()

    retried = asyncio.run(run())
    listed = f": {', '.join(map(str, retried))}" if retried else ""
    out.print(f"Un-parked {len(retried)} event(s){listed}.")


@app.command()
@one_line_errors
def init() -> None:
    """Provision schemas, roles and topics on servers run elsewhere (Docker Compose, Kubernetes).

    Needs DATABASE_URL (an admin DSN), KAFKA_BOOTSTRAP_SERVERS and ORCHARD_DB_PASSWORD_<SERVICE> for each
    service: every role has its own password, at least 16 characters long.
    """
    from deploy.runner import StackConfig, init_external

    _quiet_client_logs()
    database_urls, created = init_external(StackConfig.from_env(), os.environ)
    out.print(f"Provisioned {', '.join(database_urls)}; created {len(created)} topic(s).")


@app.command()
@one_line_errors
def acls(
    apply_them: Annotated[
        bool, typer.Option("--apply", help="Create them on the broker (as a principal that may alter ACLs)")
    ] = False,
) -> None:
    """Print the Kafka ACLs each principal needs, derived from the topic registry; --apply creates them."""
    from chassis.kafka_security import client_options
    from deploy.kafka_acls import apply, bindings

    wanted = bindings()
    for binding in wanted:
        typer.echo(binding.line())
    if apply_them:
        _quiet_client_logs()
        bootstrap = _bootstrap()
        sent = asyncio.run(apply(bootstrap, wanted, **client_options()))
        out.print(f"Created or kept {sent} ACL(s) on {bootstrap}.")


@app.command()
@one_line_errors
def trace(
    ref: Annotated[str, typer.Argument(help="An order id, booking id or external_ref")],
    database: Annotated[bool, typer.Option("--db", help="Include the database statements' spans")] = False,
) -> None:
    """Print one allocation's trace across the services as a tree with timings (development mode)."""
    from deploy.runner import StackConfig
    from deploy.traces import read_spans, render, traces_about

    config = StackConfig.from_env()
    traces_dir = config.var_dir / "traces"
    spans = [s for s in read_spans(traces_dir) if database or "db.system" not in s.attributes]
    found = traces_about(spans, ref)
    if not found:
        for alias in _order_aliases(config, ref):
            found |= traces_about(spans, alias)
    if not found:
        raise InfraError(f"no trace in {traces_dir} mentions {ref!r} (traces are written in dev mode)")
    for trace_id, members in found.items():
        for line in render(trace_id, members):
            typer.echo(line)


def _order_aliases(config: StackConfig, ref: str) -> list[str]:
    """The order id and external_ref of an order found by booking id (through the order service's API)."""
    import httpx

    from chassis.settings import SERVICE_PORTS

    port = config.service_ports.get("order", SERVICE_PORTS["order"])
    try:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/v1/orders/{ref}",
            headers={"Authorization": f"Bearer {_issue_token('admin', 'dev-admin')}"},
            timeout=5,
        )
    except httpx.HTTPError:
        return []
    if answer.status_code != 200:
        return []
    order = answer.json()
    return [str(order[name]) for name in ("order_id", "external_ref") if order.get(name)]


@app.command(name="secrets")
@one_line_errors
def print_secrets() -> None:
    """Print a fresh random value for every secret a Compose or Kubernetes deployment needs, as an env
    file: `orchard secrets > .env` before `docker compose up`."""
    from chassis.settings import SERVICE_PORTS
    from deploy.secrets import fresh_secrets, render_env_file

    typer.echo(render_env_file(fresh_secrets(SERVICE_PORTS), SERVICE_PORTS), nl=False)


@app.command(hidden=True)
@one_line_errors
def prepare() -> None:
    """Fetch what `up` needs once (Kafka jars, Keycloak) and check Java: used by CI on a new machine."""
    from deploy.identity.keycloak import ensure_keycloak
    from deploy.infra.kafka import ensure_kafka_jars, java_executable
    from deploy.infra.postgres import pg_bin_dir

    java_executable()
    libs = ensure_kafka_jars()
    keycloak = ensure_keycloak()
    out.print(f"Kafka jars in {libs}; Keycloak in {keycloak}; PostgreSQL binaries in {pg_bin_dir()}.")


def main() -> None:
    app(prog_name="orchard")


if __name__ == "__main__":
    main()
