"""The local runner behind `orchard up|down|status`: a real Kafka broker, a real PostgreSQL, one schema
and role per service, the registry's topics, and the six services as separate processes.

State lives under `var/` (`ORCHARD_VAR_DIR`): `kafka/`, `postgres/`, `log/<name>.log`, `run/<name>.pid`.
Every step first looks at what already runs, so a second `up` reuses it and finishes in about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from chassis.production import DEV
from deploy.identity.keycloak import IDENTITY_PORT, REALM, ensure_keycloak, issuer_url
from deploy.infra.errors import InfraError, StartRefused
from deploy.infra.kafka import KafkaBroker, java_executable, live_broker_count
from deploy.infra.net import LOCALHOST, ensure_port_free, port_is_open
from deploy.infra.paths import REPO_ROOT, var_dir
from deploy.infra.postgres import DEFAULT_DATABASE, PostgresServer, provision_database, provision_service
from deploy.infra.process import pid_alive, read_pid_file, spawn, stop_processes, write_pid_file
from deploy.infra.topics import ensure_kafka_topics
from deploy.replication import Replication
from deploy.sinks.processes import (
    DEFAULT_SINK_PORTS,
    FAKE_PROVIDER,
    SMTP_SINK,
    fake_provider_process,
    smtp_sink_process,
)

CONSOLE_PORT = 8100


@dataclass(frozen=True)
class ProcessSpec:
    """A long-running local process the runner starts, watches and stops."""

    name: str
    module: str
    """Run as `python -m <module>` from the repository root."""
    port: int
    purpose: str
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str | None = "/health/ready"
    """HTTP path answering 200 when ready; None means an open TCP port is enough (e.g. an SMTP sink)."""

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"


@dataclass(frozen=True)
class StackConfig:
    """Where the local system lives and which ports it uses; `from_env()` gives the `orchard up` defaults."""

    var_dir: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    postgres_port: int = 5432
    external_kafka: str | None = None
    """KAFKA_BOOTSTRAP_SERVERS: use that broker, start none."""
    external_database: str | None = None
    """DATABASE_URL: an admin DSN of an existing server, start none."""
    database: str = DEFAULT_DATABASE
    service_ports: Mapping[str, int] = field(default_factory=dict)
    service_module: str = "services.{name}"
    replica_ports: Mapping[str, Sequence[int]] = field(default_factory=dict)
    """HTTP ports of extra replicas per service: each runs as `<name>-<n>` (n = 2, 3, …) in the same
    consumer groups, on the same schema, so the replicas share the work."""
    sink_ports: Mapping[str, int] = field(default_factory=dict)
    """The local sinks to run and their ports (LOCAL_SINKS); none unless named here."""
    identity_port: int | None = None
    """Port of the local OpenID Connect provider (Keycloak, realm `orchard`), run in development only;
    None runs none."""
    console_port: int | None = None
    """Port of the console; None runs none. Outside development it runs only beside an
    ORCHARD_OIDC_ISSUER of the organisation's own."""
    ready_timeout_s: float = 90.0
    stop_grace_s: float = 25.0
    env: str = DEV
    """ORCHARD_ENV of the services: `dev` (the default of `orchard up`) runs with development keys and
    the local sinks; any other mode needs every secret set and starts no sink."""

    @property
    def is_dev(self) -> bool:
        return self.env.strip().lower() == DEV

    """A service drains for up to ORCHARD_SHUTDOWN_GRACE (20 s by default) after SIGTERM; then SIGKILL."""

    @classmethod
    def from_env(cls) -> StackConfig:
        from chassis.settings import SERVICE_PORTS

        env = os.environ
        return cls(
            var_dir=var_dir(),
            kafka_port=int(env.get("ORCHARD_KAFKA_PORT", "9092")),
            kafka_controller_port=int(env.get("ORCHARD_KAFKA_CONTROLLER_PORT", "9093")),
            postgres_port=int(env.get("ORCHARD_PG_PORT", "5432")),
            external_kafka=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            external_database=env.get("DATABASE_URL") or None,
            service_ports=dict(SERVICE_PORTS),
            env=env.get("ORCHARD_ENV") or DEV,
            replica_ports=default_replica_ports(SERVICE_PORTS, int(env.get("ORCHARD_REPLICAS", "1"))),
            sink_ports={
                name: int(env.get(f"ORCHARD_{name.upper().replace('-', '_')}_PORT", str(port)))
                for name, port in DEFAULT_SINK_PORTS.items()
            },
            identity_port=int(env.get("ORCHARD_IDENTITY_PORT", str(IDENTITY_PORT))),
            console_port=int(env.get("ORCHARD_CONSOLE_PORT", str(CONSOLE_PORT))),
        )

    @property
    def oidc_issuer(self) -> str | None:
        """The issuer whose tokens the services accept: the local provider's in development."""
        if self.identity_port is not None and self.is_dev:
            return issuer_url(self.identity_port)
        return os.environ.get("ORCHARD_OIDC_ISSUER") or None

    @property
    def console_url(self) -> str | None:
        return f"http://{LOCALHOST}:{self.console_port}" if self.console_port is not None else None

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    def kafka(self) -> KafkaBroker:
        return KafkaBroker(self.var_dir / "kafka" / "broker", self.kafka_port, self.kafka_controller_port)

    def postgres(self) -> PostgresServer:
        return PostgresServer(self.var_dir / "postgres" / "data", self.postgres_port)

    @property
    def bootstrap_servers(self) -> str:
        return self.external_kafka or self.kafka().bootstrap_servers

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"


LOCAL_SINKS: list[Callable[[StackConfig], ProcessSpec | None]] = [smtp_sink_process, fake_provider_process]
"""Extra local processes started after the services and stopped with them: the SMTP sink
(127.0.0.1:1025) and the fake SMS/WhatsApp provider (127.0.0.1:8190); None when the stack runs none."""


def default_replica_ports(service_ports: Mapping[str, int], replicas: int) -> dict[str, list[int]]:
    """Ports of replicas 2..N: the service's port plus 100 per replica (order 8101 → 8201, 8301, …)."""
    if replicas < 1:
        raise InfraError(f"ORCHARD_REPLICAS must be at least 1, not {replicas}")
    return {name: [port + 100 * n for n in range(1, replicas)] for name, port in service_ports.items()}


def replica_name(service: str, number: int) -> str:
    """The process name of a service's n-th replica (the first is the bare service name)."""
    return service if number == 1 else f"{service}-{number}"


def service_role(service: str) -> str:
    return f"orchard_{service}"


def sink_endpoints(config: StackConfig) -> dict[str, str]:
    """Where the delivery service finds this stack's local sinks (their ports may not be the defaults)."""
    env: dict[str, str] = {}
    if (smtp_port := config.sink_ports.get(SMTP_SINK)) is not None:
        env.update(ORCHARD_DELIVERY_SMTP_HOST=LOCALHOST, ORCHARD_DELIVERY_SMTP_PORT=str(smtp_port))
    if (provider_port := config.sink_ports.get(FAKE_PROVIDER)) is not None:
        url = f"http://{LOCALHOST}:{provider_port}"
        env.update(ORCHARD_DELIVERY_SMS_BASE_URL=url, ORCHARD_DELIVERY_WHATSAPP_BASE_URL=url)
    return env


def service_specs(config: StackConfig, database_urls: Mapping[str, str]) -> list[ProcessSpec]:
    """The six services; `database_urls` maps a service to its own role's DSN."""
    specs = []
    for name, port in config.service_ports.items():
        ports = [port, *config.replica_ports.get(name, ())]
        for number, replica_port in enumerate(ports, start=1):
            env = {
                "ORCHARD_SERVICE": name,
                "ORCHARD_HTTP_PORT": str(replica_port),
                "KAFKA_BOOTSTRAP_SERVERS": config.bootstrap_servers,
                "DATABASE_URL": database_urls.get(name, ""),
                "ORCHARD_DB_SCHEMA": name,
                "ORCHARD_VAR_DIR": str(config.var_dir),
                "ORCHARD_ENV": config.env,
            }
            if name == "delivery" and config.is_dev:
                env.update(sink_endpoints(config))
            if config.identity_port is not None and config.is_dev:
                env["ORCHARD_OIDC_ISSUER"] = issuer_url(config.identity_port)
            module = config.service_module.format(name=name)
            process = replica_name(name, number)
            specs.append(ProcessSpec(process, module, replica_port, f"{process} service HTTP", env))
    return specs


def managed_processes(
    config: StackConfig, database_urls: Mapping[str, str] | None = None
) -> list[ProcessSpec]:
    """The services and, in development, the local sinks, in start order."""
    sinks = [spec for make in LOCAL_SINKS if config.is_dev and (spec := make(config)) is not None]
    # The provider's JVM boots slowest: it starts first, and the services fetch its keys only when a
    # token of its own arrives.
    people = [spec for spec in (identity_process(config), console_process(config)) if spec is not None]
    return [*people[:1], *service_specs(config, database_urls or {}), *sinks, *people[1:]]


def identity_process(config: StackConfig) -> ProcessSpec | None:
    """The local Keycloak (development only)."""
    if config.identity_port is None or not config.is_dev:
        return None
    env = {"ORCHARD_IDENTITY_PORT": str(config.identity_port), "ORCHARD_ENV": config.env}
    if config.console_url:
        env["ORCHARD_CONSOLE_URL"] = config.console_url
    ready = f"/realms/{REALM}/.well-known/openid-configuration"
    return ProcessSpec(
        "identity", "deploy.identity", config.identity_port, "local identity provider", env, ready
    )


def console_process(config: StackConfig) -> ProcessSpec | None:
    """The console, signing people in through `config.oidc_issuer` (none without an issuer)."""
    issuer = config.oidc_issuer
    if config.console_port is None or config.console_url is None or issuer is None:
        return None
    env = {
        "ORCHARD_HTTP_PORT": str(config.console_port),
        "ORCHARD_CONSOLE_URL": config.console_url,
        "ORCHARD_OIDC_ISSUER": issuer,
        "ORCHARD_ENV": config.env,
        "ORCHARD_VAR_DIR": str(config.var_dir),
    }
    for name, port in config.service_ports.items():
        env[f"ORCHARD_{name.upper()}_URL"] = f"http://{LOCALHOST}:{port}"
    return ProcessSpec("console", "console", config.console_port, "console HTTP", env)


def running_pid(config: StackConfig, spec: ProcessSpec) -> int | None:
    pid = read_pid_file(config.pid_file(spec.name))
    return pid if pid_alive(pid, spec.module) else None


@dataclass
class UpReport:
    started: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    created_topics: list[str] = field(default_factory=list)
    processes: list[ProcessSpec] = field(default_factory=list)
    seconds: float = 0.0


def up(config: StackConfig, *, on_step: Callable[[str], None] = lambda _: None) -> UpReport:
    """Bring the whole local system up, reusing whatever already runs. Raises InfraError (one line)."""
    began = time.monotonic()
    report = UpReport()
    kafka = None if config.external_kafka else config.kafka()
    postgres = None if config.external_database else config.postgres()
    replication = Replication.from_env(os.environ, dev=config.is_dev)
    if not config.is_dev and (refusals := production_refusals(config) + replication.refusals(dev=False)):
        raise StartRefused(refusals)
    _preflight(config, kafka, postgres)

    # Launch both servers before waiting for either: Postgres is ready long before the JVM.
    for name, server in (("kafka", kafka), ("postgres", postgres)):
        if server is None:
            continue
        if server.is_running():
            report.reused.append(name)
        else:
            on_step(f"starting {name}")
            server.launch()
            report.started.append(name)
    if postgres is not None:
        postgres.wait_ready()
    admin_dsn = config.external_database or (postgres.admin_dsn if postgres else "")
    on_step("provisioning database schemas")
    database_urls = asyncio.run(_provision(config, admin_dsn, _role_passwords(config)))
    if kafka is not None:
        # After a kill -9 the broker first rescans its logs: show how far it got instead of timing out.
        kafka.wait_ready(on_progress=lambda line: on_step(f"kafka: {line}"))
    on_step("creating topics")
    report.created_topics = asyncio.run(create_registry_topics(config.bootstrap_servers, replication))

    report.processes = managed_processes(config, database_urls)
    pending = []
    for spec in report.processes:
        if running_pid(config, spec) is not None:
            report.reused.append(spec.name)
            continue
        on_step(f"starting {spec.name}")
        _start_process(config, spec)
        report.started.append(spec.name)
        pending.append(spec)
    _wait_until_ready(config, pending)
    report.seconds = time.monotonic() - began
    return report


def init_external(config: StackConfig, env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Prepare servers that something else runs (Docker Compose, Kubernetes): the database, one schema
    and role per service (each with its own password, `ORCHARD_DB_PASSWORD_<SERVICE>` in `env`), and
    the registry's topics. Returns each service's DSN and the topics created.
    """
    from deploy.secrets import role_passwords

    if not config.external_database or not config.external_kafka:
        raise InfraError("orchard init needs DATABASE_URL (an admin DSN) and KAFKA_BOOTSTRAP_SERVERS")
    # Unlike `orchard up`, init serves deployments: production unless ORCHARD_ENV says dev.
    dev = (env.get("ORCHARD_ENV") or "production").strip().lower() == DEV
    replication = Replication.from_env(env, dev=dev)
    if refusals := replication.refusals(dev=dev):
        raise StartRefused(refusals)
    by_service = role_passwords(env, config.service_ports)
    passwords = {service_role(service): password for service, password in by_service.items()}
    database_urls = asyncio.run(_provision(config, config.external_database, passwords))
    created = asyncio.run(create_registry_topics(config.external_kafka, replication))
    return database_urls, created


def production_refusals(config: StackConfig) -> list[str]:
    """Outside development: every service's reasons not to start (DESIGN.md §5), one line per setting,
    each naming the services it applies to. Read from this process's environment, which the services
    inherit."""
    from deploy.catalog import service_settings_class

    by_line: dict[str, list[str]] = {}
    for name in config.service_ports:
        settings_class = service_settings_class(config.service_module.format(name=name))
        for line in settings_class(ORCHARD_ENV=config.env).startup_refusals():
            by_line.setdefault(line, []).append(name)
    lines = [f"{', '.join(names)}: {line}" for line, names in by_line.items()]
    if console_process(config) is not None:
        from console.settings import ConsoleSettings

        lines += [f"console: {line}" for line in ConsoleSettings(ORCHARD_ENV=config.env).startup_refusals()]
    return lines


def _preflight(config: StackConfig, kafka: KafkaBroker | None, postgres: PostgresServer | None) -> None:
    # Everything a person can fix is checked before anything starts, so a failed `up` changes nothing.
    if kafka is not None and not kafka.is_running():
        java_executable()
        ensure_port_free(kafka.port, "Kafka broker")
        ensure_port_free(kafka.controller_port, "Kafka controller")
    if postgres is not None and not postgres.is_running():
        ensure_port_free(postgres.port, "PostgreSQL")
    for spec in managed_processes(config):
        if running_pid(config, spec) is None:
            ensure_port_free(spec.port, spec.purpose)
    if kafka is not None:
        kafka.ensure_jars()
    if identity_process(config) is not None:
        ensure_keycloak()


async def create_registry_topics(bootstrap: str, replication: Replication) -> list[str]:
    """The registry's topics and their `.dlq` twins, with the replication asked for; returns those created."""
    return await ensure_kafka_topics(
        bootstrap,
        registry_topics(),
        replication_factor=replication.factor,
        min_insync_replicas=replication.min_insync,
    )


def registry_topics() -> list[Any]:
    """Every topic of contracts.registry with its dead-letter twin, as the registry configures them."""
    from contracts.registry import kafka_topics

    return list(kafka_topics())


async def _provision(config: StackConfig, server_dsn: str, passwords: Mapping[str, str]) -> dict[str, str]:
    admin_dsn = await provision_database(server_dsn, config.database)
    urls = {}
    for service in config.service_ports:
        role = service_role(service)
        urls[service] = await provision_service(
            admin_dsn, service=service, schema=service, role=role, password=passwords[role]
        )
    return urls


def _role_passwords(config: StackConfig) -> dict[str, str]:
    # Kept across runs: re-provisioning with a new password would lock out services that already run.
    path = config.var_dir / "secrets" / "postgres-roles.json"
    known: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(path.read_text())
    roles = [service_role(service) for service in config.service_ports]
    if all(role in known for role in roles):
        return known
    known |= {role: secrets.token_urlsafe(24) for role in roles if role not in known}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_text(json.dumps(known, indent=2))
    return known


def _start_process(config: StackConfig, spec: ProcessSpec) -> None:
    log_file = config.log_file(spec.name)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as log:
        log.write(f"\n=== orchard up: starting {spec.name} at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
    env = {**os.environ, **spec.env}
    process = spawn([sys.executable, "-m", spec.module], log_file=log_file, env=env, cwd=REPO_ROOT)
    write_pid_file(config.pid_file(spec.name), process.pid)


def is_ready(spec: ProcessSpec, client: httpx.Client) -> bool:
    """The process answers its readiness path (or, without one, its port is open)."""
    if spec.ready_path is None:
        return port_is_open(spec.port)
    try:
        return client.get(spec.base_url + spec.ready_path).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_until_ready(config: StackConfig, specs: Sequence[ProcessSpec]) -> None:
    deadline = time.monotonic() + config.ready_timeout_s
    pending = list(specs)
    with httpx.Client(timeout=2.0) as client:
        while pending:
            for spec in list(pending):
                if is_ready(spec, client):
                    pending.remove(spec)
                elif running_pid(config, spec) is None:
                    raise InfraError(f"{spec.name} exited while starting; see {config.log_file(spec.name)}")
            if pending and time.monotonic() > deadline:
                spec = pending[0]
                raise InfraError(
                    f"{spec.name} did not answer {spec.ready_path or 'on its port'} on port {spec.port} "
                    f"within {config.ready_timeout_s:.0f}s; see {config.log_file(spec.name)}"
                )
            if pending:
                time.sleep(0.2)


def down(config: StackConfig, *, on_step: Callable[[str], None] = lambda _: None) -> list[str]:
    """Stop the services (SIGTERM, then SIGKILL after their grace), then Kafka, then Postgres.

    Returns what it stopped; stopping what is not running is fine.
    """
    stopped: list[str] = []
    running = {spec.name: pid for spec in managed_processes(config) if (pid := running_pid(config, spec))}
    # Replicas started by an earlier `up --replicas N` are stopped too, though this config names fewer.
    for pid_file in sorted(config.run_dir.glob("*.pid")) if config.run_dir.is_dir() else []:
        pid = read_pid_file(pid_file)
        if pid is not None and pid_file.stem not in running and pid_alive(pid, "services."):
            running[pid_file.stem] = pid
            pid_file.unlink(missing_ok=True)
    if running:
        on_step("stopping " + ", ".join(running))
        stop_processes(running.values(), grace=config.stop_grace_s)
        stopped += running
    for spec in managed_processes(config):
        config.pid_file(spec.name).unlink(missing_ok=True)
    for name, server in (("kafka", config.kafka()), ("postgres", config.postgres())):
        if server.is_running():
            on_step(f"stopping {name}")
            server.stop()
            stopped.append(name)
    return stopped


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    port: int | None
    healthy: bool
    detail: str


def status(config: StackConfig) -> list[ComponentStatus]:
    rows = [_postgres_status(config), _kafka_status(config)]
    with httpx.Client(timeout=2.0) as client:
        for spec in managed_processes(config):
            pid = running_pid(config, spec)
            healthy = pid is not None and is_ready(spec, client)
            detail = "ready" if healthy else ("not ready" if pid else "stopped")
            rows.append(ComponentStatus(spec.name, pid, spec.port, healthy, detail))
    return rows


def _postgres_status(config: StackConfig) -> ComponentStatus:
    if config.external_database:
        healthy = asyncio.run(_database_answers(config.external_database))
        return ComponentStatus("postgres", None, None, healthy, "external (DATABASE_URL)")
    server = config.postgres()
    healthy = server.is_ready()
    return ComponentStatus("postgres", server.pid, server.port, healthy, "ready" if healthy else "stopped")


async def _database_answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        return bool(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


def _kafka_status(config: StackConfig) -> ComponentStatus:
    if config.external_kafka:
        host, _, port = config.external_kafka.split(",")[0].rpartition(":")
        try:
            healthy = live_broker_count(int(port), host or LOCALHOST) > 0
        except (OSError, ValueError):
            healthy = False
        return ComponentStatus("kafka", None, None, healthy, "external (KAFKA_BOOTSTRAP_SERVERS)")
    broker = config.kafka()
    healthy = broker.is_ready()
    return ComponentStatus("kafka", broker.pid, broker.port, healthy, "ready" if healthy else "stopped")
