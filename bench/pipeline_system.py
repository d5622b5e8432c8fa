"""The system the whole-pipeline bench drives: its own (`orchard up` on free ports in a temp dir, always
stopped and removed) or one already running (`--use-running`: the `orchard up` instance found through
ORCHARD_VAR_DIR, KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, the same variables `orchard` reads)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from deploy.demo import service_urls
from deploy.runner import StackConfig, managed_processes, running_pid
from deploy.testing import isolated_stack

# What the bench changes in its own system, printed with every run. The delivery service's default
# rate limits (100 e-mails/s, 50 SMS/s) protect a real provider's account; the local sinks have none,
# and left in place they, not the pipeline, would be what the bench measures.
OWN_SYSTEM_ENV: Mapping[str, str] = {
    "ORCHARD_DELIVERY_EMAIL_RATE": "100000",
    "ORCHARD_DELIVERY_SMS_RATE": "100000",
    "ORCHARD_DELIVERY_WHATSAPP_RATE": "100000",
    # The bench's batches are far above the approval thresholds; it measures the pipeline, not the wait
    # for a second person.
    "ORCHARD_ORDER_IPA_APPROVAL_ROWS_ABOVE": "1000000000",
    "ORCHARD_ORDER_IPA_APPROVAL_TOTAL_ABOVE": "1000000000000",
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
    with isolated_stack(
        "orchard-bench-pipeline-", env=env, on_step=lambda step: print(f"  system: {step}", flush=True)
    ) as config:
        yield System(config, owned=True, env=dict(env))


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
