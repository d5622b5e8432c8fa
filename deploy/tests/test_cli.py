import os
import socket
import subprocess
import sys

import jwt

from chassis.testing import produce, read_topic
from contracts.registry import TOPICS
from deploy.infra.net import free_port

OVERRIDES = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")


def orchard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key not in OVERRIDES}
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _isolated(tmp_path, **ports: int) -> dict[str, str]:
    return {
        "ORCHARD_VAR_DIR": str(tmp_path),
        "ORCHARD_KAFKA_PORT": str(ports.get("kafka", free_port())),
        "ORCHARD_KAFKA_CONTROLLER_PORT": str(free_port()),
        "ORCHARD_PG_PORT": str(ports.get("postgres", free_port())),
    }


def test_up_reports_port_in_use_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = orchard("up", env=_isolated(tmp_path, postgres=port))

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"orchard: port {port} (PostgreSQL) is already in use by another process")
    assert not (tmp_path / "run").exists()


def test_up_without_java_says_java_is_required_in_one_line(tmp_path):
    empty_path = tmp_path / "bin"
    empty_path.mkdir()

    result = orchard("up", env={**_isolated(tmp_path / "var"), "PATH": str(empty_path)})

    assert result.returncode == 1
    assert result.stderr.strip() == "orchard: Java 17+ is required: not found on PATH"


def test_status_exits_non_zero_when_nothing_runs(tmp_path):
    result = orchard("status", env=_isolated(tmp_path))

    assert result.returncode == 1
    assert "postgres" in result.stdout
    assert "stopped" in result.stdout


def test_token_prints_a_jwt_with_the_role_and_subject():
    result = orchard("token", "--role", "auditor", "--sub", "u-17")

    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert (claims["sub"], claims["roles"]) == ("u-17", ["auditor"])


def test_topics_lists_every_registry_topic_and_creates_them(kafka_bootstrap):
    result = orchard("topics", "--create", env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})

    assert result.returncode == 0, result.stderr
    assert all(spec.name in result.stdout for spec in TOPICS)
    again = orchard("topics", "--create", env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert "All topics exist." in again.stdout


async def test_dlq_list_of_a_clean_topic_is_empty(kafka_bootstrap, new_topic):
    topic = await new_topic("clean")

    result = orchard("dlq", "list", "--topic", topic, env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})

    assert result.returncode == 0, result.stderr
    assert "0 dead letter(s)." in result.stdout


async def test_dlq_list_and_replay_by_group_take_only_the_letters_that_group_failed(
    kafka_bootstrap, new_topic
):
    topic = await new_topic("failed")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    for n, group in enumerate(("orchard.a.ticks", "orchard.b.ticks")):
        headers = [
            ("x-orchard-dlq-consumer", group.encode()),
            ("x-orchard-dlq-original-topic", topic.encode()),
        ]
        await produce(kafka_bootstrap, f"{topic}.dlq", [(str(n).encode(), b"{}")], headers=headers)

    listed = orchard("dlq", "list", "--topic", topic, "--group", "orchard.b.ticks", env=env)
    replayed = orchard("dlq", "replay", "--topic", topic, "--group", "orchard.b.ticks", env=env)

    assert listed.returncode == 0, listed.stderr
    assert "1 dead letter(s)." in listed.stdout
    assert replayed.returncode == 0, replayed.stderr
    assert f"Replayed 1 dead letter(s) from {topic}.dlq." in replayed.stdout
    [record] = await read_topic(kafka_bootstrap, topic)
    assert record.key == b"1"
    assert dict(record.headers)["x-orchard-replay-for"] == b"orchard.b.ticks"


def test_outbox_parked_of_an_unknown_service_says_so_in_one_line(tmp_path):
    result = orchard("outbox", "parked", "--service", "nope", env=_isolated(tmp_path))

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("orchard: ValueError: unknown service 'nope'")
