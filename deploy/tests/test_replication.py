import pytest

from chassis.settings import SERVICE_PORTS
from deploy.infra.errors import InfraError
from deploy.replication import FACTOR_SETTING, MIN_INSYNC_SETTING, Replication
from deploy.secrets import fresh_secrets
from deploy.tests.test_cli import orchard


def test_development_keeps_one_replica_and_production_three_with_two_in_sync():
    assert Replication.from_env({}, dev=True) == Replication(factor=1, min_insync=1)
    assert Replication.from_env({}, dev=False) == Replication(factor=3, min_insync=2)
    chosen = {FACTOR_SETTING: "5", MIN_INSYNC_SETTING: "3"}
    assert Replication.from_env(chosen, dev=False) == Replication(factor=5, min_insync=3)


def test_fewer_than_two_replicas_outside_development_is_refused_naming_the_setting():
    assert Replication(1, 1).refusals(dev=True) == []
    assert [line.split("=")[0] for line in Replication(1, 1).refusals(dev=False)] == [
        FACTOR_SETTING,
        MIN_INSYNC_SETTING,
    ]
    assert Replication(2, 3).refusals(dev=True) == [
        f"{MIN_INSYNC_SETTING}=3 exceeds {FACTOR_SETTING}=2: no write could ever be acknowledged"
    ]


@pytest.mark.parametrize("raw", ["zero", "0", "-2"])
def test_a_replication_setting_that_is_not_a_positive_number_is_an_error(raw):
    with pytest.raises(InfraError, match=FACTOR_SETTING):
        Replication.from_env({FACTOR_SETTING: raw}, dev=True)


def test_orchard_init_outside_development_refuses_a_single_replica_before_connecting(tmp_path):
    env = {
        **fresh_secrets(SERVICE_PORTS),
        "ORCHARD_VAR_DIR": str(tmp_path),
        "ORCHARD_ENV": "production",
        FACTOR_SETTING: "1",
        # Nothing listens there: the refusal must come before any connection.
        "DATABASE_URL": "postgresql://postgres:unused@127.0.0.1:9/postgres",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    }

    result = orchard("init", env=env)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"orchard: {FACTOR_SETTING}=1: outside development every topic needs at least 2 replicas",
        f"orchard: {MIN_INSYNC_SETTING}=2 exceeds {FACTOR_SETTING}=1: no write could ever be acknowledged",
    ]
