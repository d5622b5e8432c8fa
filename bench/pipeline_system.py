"""The system the whole-pipeline bench drives: its own (`orchard up` on free ports in a temp dir, always
stopped and removed) or one already running (`--use-running`: the `orchard up` instance found through
ORCHARD_VAR_DIR, KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, the same variables `orchard` reads)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from chassis.settings import SERVICE_PORTS
from deploy.demo import service_urls
from deploy.infra.net import free_port
from deploy.runner import StackConfig, down, managed_processes, running_pid, up
from deploy.sinks.processes import DEFAULT_SINK_PORTS

# What the bench changes in its own system, printed with every run. The delivery service's default
# rate limits (100 e-mails/s, 50 SMS/s) protect a real provider's account; the local sinks have none,
# and left in place they, not the pipeline, would be what the bench measures.
OWN_SYSTEM_ENV: Mapping[str, str] = {
    "ORCHARD_EMAIL_RATE": "100000",
    "ORCHARD_SMS_RATE": "100000",
    "ORCHARD_WHATSAPP_RATE": "100000",
}


@dataclass(frozen=True)
class System:
    config: StackConfig
    owned: bool
    env: Mapping[str, str]

    @property
    def bootstrap(self) -> str:
        return self.config.bootstrap_servers

    @property
    def urls(self) -> dict[str, str]:
        return service_urls(self.config.service_ports)

    @property
    def server_dsn(self) -> str:
        """An admin DSN of the system's PostgreSQL server (for the baselines' scratch database)."""
        return self.config.external_database or self.config.postgres().admin_dsn

    @property
    def orchard_dsn(self) -> str:
        """A superuser DSN of the services' database (pg_stat_database is read there)."""
        if self.config.external_database:
            return self.config.external_database
        return self.config.postgres().dsn(self.config.database)

    def pids(self) -> dict[str, int]:
        """Every running managed process (services, replicas, sinks) by name, from var/run/*.pid."""
        return {
            spec.name: pid
            for spec in managed_processes(self.config)
            if (pid := running_pid(self.config, spec)) is not None
        }

    def infra_pids(self) -> dict[str, int]:
        pids = {"kafka": self.config.kafka().pid, "postgres": self.config.postgres().pid}
        return {name: pid for name, pid in pids.items() if pid is not None}


@contextlib.contextmanager
def own_system(*, env: Mapping[str, str] = OWN_SYSTEM_ENV) -> Iterator[System]:
    """The whole system on free ports in a temp dir, with `env` added to the services' environment;
    stopped and removed on the way out, also on errors and Ctrl-C."""
    var_dir = Path(tempfile.mkdtemp(prefix="orchard-bench-pipeline-"))
    var_dir.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user
    config = StackConfig(
        var_dir=var_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        postgres_port=free_port(),
        service_ports={name: free_port() for name in SERVICE_PORTS},
        sink_ports={name: free_port() for name in DEFAULT_SINK_PORTS},
        ready_timeout_s=180,
        stop_grace_s=25,
    )
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # the runner starts each process with os.environ plus its own settings
    try:
        up(config, on_step=lambda step: print(f"  system: {step}", flush=True))
        yield System(config, owned=True, env=dict(env))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        print("  system: stopping", flush=True)
        down(config)
        shutil.rmtree(var_dir, ignore_errors=True)


def running_system() -> System:
    config = StackConfig.from_env()
    system = System(config, owned=False, env={})
    missing = [spec.name for spec in managed_processes(config) if running_pid(config, spec) is None]
    if missing:
        raise SystemExit(
            f"--use-running: not running under {config.var_dir}: {', '.join(missing)} (start it with"
            " `orchard up`, or set ORCHARD_VAR_DIR to the system's var dir)"
        )
    return system
