import time

import psutil
import pytest

from deploy.infra.errors import InfraError
from deploy.infra.net import free_port
from deploy.runner import StackConfig, down, running_pid, status, up
from deploy.testing import runner_on_shared_infra

FAKE_SERVICE = "deploy.tests.fake_service"


@pytest.fixture
def stack(tmp_path, kafka_bootstrap, pg_admin_dsn):
    """The runner on the session's broker and database, with two stand-in services on free ports."""
    with runner_on_shared_infra(
        tmp_path,
        kafka_bootstrap,
        pg_admin_dsn,
        "runner",
        service_ports={"alpha": free_port(), "beta": free_port()},
        service_module=FAKE_SERVICE,
    ) as config:
        yield config


def _env_of(pid: int) -> dict[str, str]:
    return psutil.Process(pid).environ()


def test_up_starts_each_service_with_its_own_role_and_a_second_up_reuses_everything(stack, kafka_bootstrap):
    first = up(stack)
    pids = {name: running_pid(stack, spec) for spec in first.processes for name in [spec.name]}

    second = up(stack)

    assert first.started == ["alpha", "beta"]
    assert second.started == []
    assert {name: running_pid(stack, spec) for spec in second.processes for name in [spec.name]} == pids
    env = _env_of(pids["alpha"])
    assert env["ORCHARD_SERVICE"] == "alpha"
    assert env["ORCHARD_DB_SCHEMA"] == "alpha"
    assert env["ORCHARD_HTTP_PORT"] == str(stack.service_ports["alpha"])
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == kafka_bootstrap
    assert env["DATABASE_URL"].startswith("postgresql://orchard_alpha:")
    assert env["DATABASE_URL"].endswith(f"/{stack.database}")
    assert (stack.log_dir / "alpha.log").exists()


def test_down_stops_every_service_and_a_second_down_has_nothing_to_do(stack):
    up(stack)

    stopped = down(stack)

    assert stopped == ["alpha", "beta"]
    assert down(stack) == []
    assert not list(stack.run_dir.glob("*.pid"))


def test_up_names_the_service_that_crashes_while_starting_and_its_log(stack, monkeypatch):
    monkeypatch.setenv("FAKE_SERVICE_CRASH", "beta")

    with pytest.raises(InfraError, match=r"^beta exited while starting; see .*/log/beta\.log$"):
        up(stack)

    assert "crashing on purpose" in (stack.log_dir / "beta.log").read_text()


def test_status_is_green_only_while_every_component_answers(stack):
    up(stack)
    assert all(row.healthy for row in status(stack))

    alpha = next(spec for spec in up(stack).processes if spec.name == "alpha")
    psutil.Process(running_pid(stack, alpha)).kill()
    deadline = time.monotonic() + 5
    while running_pid(stack, alpha) is not None and time.monotonic() < deadline:
        time.sleep(0.05)

    rows = {row.name: row for row in status(stack)}
    assert not rows["alpha"].healthy
    assert rows["alpha"].detail == "stopped"
    assert rows["beta"].healthy
    assert rows["kafka"].healthy
    assert rows["postgres"].healthy


def test_up_with_its_own_kafka_and_postgres_is_fast_when_warm_and_down_stops_them(tmp_path):
    config = StackConfig(
        var_dir=tmp_path,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        postgres_port=free_port(),
        service_ports={"alpha": free_port()},
        service_module=FAKE_SERVICE,
        ready_timeout_s=60,
        stop_grace_s=5,
    )
    try:
        cold = up(config)
        warm = up(config)

        assert cold.started == ["kafka", "postgres", "alpha"]
        assert "contracts" not in cold.created_topics
        assert len(cold.created_topics) > 0
        assert warm.started == []
        assert warm.created_topics == []
        assert warm.seconds < 5
    finally:
        stopped = down(config)

    assert stopped == ["alpha", "kafka", "postgres"]
    assert not config.kafka().is_running()
    assert not config.postgres().is_running()
