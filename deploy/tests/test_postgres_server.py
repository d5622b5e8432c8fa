import uuid
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest

from deploy.infra.postgres import (
    provision_database,
    provision_service,
    quote_ident,
    with_credentials,
    with_database,
)
from deploy.testing import drop_service_db, new_service_db


async def test_service_role_cannot_read_another_schema(service_db, pg_admin_dsn):
    other = await new_service_db(pg_admin_dsn, "other")
    try:
        owner = await asyncpg.connect(service_db.dsn)
        try:
            await owner.execute("CREATE TABLE secrets (value text)")
            await owner.execute("INSERT INTO secrets VALUES ('only mine')")
        finally:
            await owner.close()

        intruder = await asyncpg.connect(other.dsn)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await intruder.fetch(f"SELECT * FROM {quote_ident(service_db.schema)}.secrets")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await intruder.execute(f"CREATE TABLE {quote_ident(service_db.schema)}.planted (x int)")
        finally:
            await intruder.close()
    finally:
        await drop_service_db(other)


async def test_service_role_cannot_create_tables_in_public(service_db):
    conn = await asyncpg.connect(service_db.dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.shared (x int)")
    finally:
        await conn.close()


async def test_unqualified_tables_land_in_the_role_s_own_schema(service_db):
    conn = await asyncpg.connect(service_db.dsn)
    try:
        await conn.execute("CREATE TABLE things (x int)")
        schema = await conn.fetchval(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'things'"
        )
    finally:
        await conn.close()

    assert schema == service_db.schema


async def test_provisioning_a_reserved_word_schema_twice_is_harmless(pg_admin_dsn):
    dbname = f"reserved_{uuid.uuid4().hex[:8]}"
    role = f"orchard_order_{uuid.uuid4().hex[:8]}"
    password = "it's a p@ss:/"
    admin = await provision_database(pg_admin_dsn, dbname)
    try:
        first = await provision_service(admin, service="order", schema="order", role=role, password=password)
        conn = await asyncpg.connect(first)
        await conn.execute("CREATE TABLE orders (id int)")
        await conn.close()

        again = await provision_service(admin, service="order", schema="order", role=role, password=password)

        conn = await asyncpg.connect(again)
        try:
            assert await conn.fetchval("SELECT count(*) FROM orders") == 0
            assert await conn.fetchval("SHOW search_path") == '"order"'
        finally:
            await conn.close()
    finally:
        server = await asyncpg.connect(pg_admin_dsn)
        await server.execute(f"DROP DATABASE {quote_ident(dbname)} WITH (FORCE)")
        await server.execute(f"DROP ROLE {quote_ident(role)}")
        await server.close()


@pytest.mark.fault
async def test_committed_rows_survive_a_postgres_kill_and_restart(private_postgres):
    server = private_postgres()
    conn = await asyncpg.connect(server.admin_dsn)
    await conn.execute("CREATE TABLE ledger (entry int)")
    await conn.execute("INSERT INTO ledger VALUES (1), (2)")
    await conn.close()

    server.kill()
    assert not server.is_running()
    server.start()
    server.restart()

    conn = await asyncpg.connect(server.admin_dsn)
    try:
        assert await conn.fetchval("SELECT sum(entry) FROM ledger") == 3
    finally:
        await conn.close()


def test_role_dsn_keeps_the_server_and_encodes_the_credentials():
    admin = "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable"

    dsn = with_credentials(with_database(admin, "orchard"), "orchard_order", "p@ss:/word")

    parts = urlsplit(dsn)
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", 5432, "/orchard")
    assert parts.query == "sslmode=disable"
    assert (parts.username, unquote(parts.password or "")) == ("orchard_order", "p@ss:/word")


def test_identifiers_are_always_quoted():
    assert quote_ident("order") == '"order"'
    assert quote_ident('we"ird') == '"we""ird"'
