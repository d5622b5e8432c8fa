import asyncio
import base64
import hashlib
import hmac
import uuid

import asyncpg
import pytest
from pydantic import SecretStr

from chassis.sealed_codes import CodeOpener, CodeSealer
from chassis.settings import SERVICE_PORTS
from deploy.infra.errors import InfraError
from deploy.secrets import fresh_secrets, render_env_file, role_password_setting, role_passwords
from deploy.tests.test_cli import orchard
from services.delivery.codes import CodeVault as DeliveryVault
from services.voucher.crypto import CodeVault as VoucherVault
from services.voucher.crypto import parse_keys


def test_fresh_secrets_are_all_different_and_in_the_formats_the_services_read():
    values = fresh_secrets(SERVICE_PORTS)
    keys = parse_keys(values["ORCHARD_VOUCHER_ENCRYPTION_KEYS"])
    voucher = VoucherVault(keys, None, base64.b64decode(values["ORCHARD_VOUCHER_LOOKUP_KEY"]))
    delivery = DeliveryVault(SecretStr(values["ORCHARD_DELIVERY_CODE_KEY"]))

    assert len(set(values.values())) == len(values)
    assert [len(key) for key in keys.values()] == [32]
    sealed = voucher.seal("GIFT-1234", voucher.lookup_hash("GIFT-1234"))
    assert voucher.open(sealed.key_id, sealed.secret, voucher.lookup_hash("GIFT-1234")) == "GIFT-1234"
    assert delivery.open(delivery.seal(SecretStr("GIFT-1234"))).get_secret_value() == "GIFT-1234"
    code_id = uuid.uuid4()
    sealed_for_delivery = CodeSealer(values["ORCHARD_VOUCHER_SEAL_PUBLIC_KEY"]).seal("GIFT-1234", code_id)
    opener = CodeOpener([values["ORCHARD_DELIVERY_SEAL_KEY"]])
    assert opener.open(sealed_for_delivery, code_id).get_secret_value() == "GIFT-1234"
    assert fresh_secrets(SERVICE_PORTS) != values


def test_the_env_file_sets_every_secret_once():
    values = fresh_secrets(SERVICE_PORTS)
    lines = [line for line in render_env_file(values, SERVICE_PORTS).splitlines() if not line.startswith("#")]

    assert dict(line.split("=", 1) for line in lines) == values
    assert len(lines) == len(values)


def test_role_passwords_refuse_unset_short_and_shared_ones_naming_each_setting():
    good = {role_password_setting(name): f"{name}-password-long-enough" for name in SERVICE_PORTS}
    env = {
        **good,
        role_password_setting("voucher"): "",
        role_password_setting("wallet"): "short",
        role_password_setting("support"): good[role_password_setting("order")],
    }

    with pytest.raises(InfraError) as refused:
        role_passwords(env, SERVICE_PORTS)

    message = str(refused.value)
    assert "ORCHARD_DB_PASSWORD_VOUCHER is not set" in message
    assert "ORCHARD_DB_PASSWORD_WALLET is shorter than 16 characters" in message
    assert "ORCHARD_DB_PASSWORD_SUPPORT is the same as ORCHARD_DB_PASSWORD_ORDER" in message
    expected = {name: good[role_password_setting(name)] for name in SERVICE_PORTS}
    assert role_passwords(good, SERVICE_PORTS) == expected


def test_orchard_init_without_role_passwords_connects_to_nothing_and_says_which_are_missing(tmp_path):
    env = {
        "ORCHARD_VAR_DIR": str(tmp_path),
        # Nothing listens there: init must stop before it connects to anything.
        "DATABASE_URL": "postgresql://postgres:unused@127.0.0.1:9/postgres",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    }

    result = orchard("init", env=env)

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert all(role_password_setting(name) in line for name in SERVICE_PORTS)


def test_orchard_secrets_prints_an_env_file_compose_can_read():
    result = orchard("secrets", env={})

    assert result.returncode == 0
    settings = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if line and not line.startswith("#")
    )
    assert set(settings) == set(fresh_secrets(SERVICE_PORTS))


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether a PostgreSQL SCRAM-SHA-256 verifier (pg_authid.rolpassword) was made from `password`."""
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return method == "SCRAM-SHA-256" and hashlib.sha256(client_key).digest() == base64.b64decode(stored_key)


async def test_orchard_init_gives_every_service_role_its_own_password(
    private_postgres, kafka_bootstrap, tmp_path
):
    server = private_postgres()
    passwords = {name: fresh_secrets([name])[role_password_setting(name)] for name in SERVICE_PORTS}
    env = {
        "ORCHARD_VAR_DIR": str(tmp_path),
        "DATABASE_URL": server.admin_dsn,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        **{role_password_setting(name): password for name, password in passwords.items()},
    }

    result = await asyncio.to_thread(orchard, "init", env=env)

    assert result.returncode == 0, result.stderr
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        rows = await conn.fetch("SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE 'orchard\\_%'")
    finally:
        await conn.close()
    verifiers = {row["rolname"]: row["rolpassword"] for row in rows}
    assert set(verifiers) == {f"orchard_{name}" for name in SERVICE_PORTS}
    for name, password in passwords.items():
        assert _scram_matches(verifiers[f"orchard_{name}"], password), name
        assert not _scram_matches(
            verifiers[f"orchard_{name}"], passwords["order" if name != "order" else "voucher"]
        )
