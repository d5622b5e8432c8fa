"""Postgres access: a pool bound to the service's schema, and a versioned migration runner."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeGuard

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

log = structlog.get_logger(__name__)

# What handlers and repositories receive: a plain connection or one borrowed from a pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

CHASSIS_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def advisory_lock_key(purpose: str, schema: str, name: str = "") -> int:
    """A stable 64-bit advisory-lock key (unlike hash(), the same in every process and version).

    Keyed by schema too, so services sharing one Postgres server never contend for each other's locks.
    """
    digest = hashlib.blake2b(f"orchard.{purpose}:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (schema names such as `order` are reserved words)."""
    return '"' + name.replace('"', '""') + '"'


class _StatelessPoolConnection(asyncpg.Connection):
    """A pooled connection handed back without asyncpg's reset query.

    That query (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) is a round trip and four
    statements on every release, and a consumer borrows a connection per fetched batch. Nothing we run
    on a pooled connection outlives its borrow: locks are transaction-scoped or released in a `finally`
    (migrations), listeners and session-level settings live on connections of their own (outbox relay,
    jobs, delivery's wake-ups), and cursors end with their transaction. asyncpg still rolls back an
    open transaction and drops callbacks on release.
    """

    schema: str | None = None
    """The schema the pool binds this connection to (set once it is connected)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_commit: dict[str, Callable[[], Awaitable[None]]] = {}
        self.hooked_transaction_open = False

    def get_reset_query(self) -> str:
        return ""

    def transaction(
        self, *, isolation: Any = None, readonly: bool = False, deferrable: bool = False
    ) -> Transaction:
        self._check_open()  # type: ignore[attr-defined]
        return _CommitHookedTransaction(self, isolation, readonly, deferrable)


class _CommitHookedTransaction(Transaction):
    """A transaction that runs its connection's after-commit callbacks once its outermost level
    commits, and drops them when it rolls back."""

    __slots__ = ()

    async def start(self) -> None:
        await super().start()
        if not self._nested:  # type: ignore[attr-defined]
            self._connection.hooked_transaction_open = True  # type: ignore[attr-defined]

    async def __aexit__(self, extype: Any, ex: Any, tb: Any) -> None:
        try:
            await super().__aexit__(extype, ex, tb)
        except BaseException:
            self._done(committed=False)
            raise
        await self._finished(committed=extype is None)

    async def commit(self) -> None:
        await super().commit()
        await self._finished(committed=True)

    async def rollback(self) -> None:
        await super().rollback()
        self._done(committed=False)

    def _done(self, *, committed: bool) -> list[Callable[[], Awaitable[None]]]:
        if self._nested:  # type: ignore[attr-defined]
            return []
        connection: _StatelessPoolConnection = self._connection  # type: ignore[attr-defined]
        callbacks = list(connection.after_commit.values()) if committed else []
        connection.after_commit.clear()
        connection.hooked_transaction_open = False
        return callbacks

    async def _finished(self, *, committed: bool) -> None:
        # The transaction has committed: what follows must not make it look failed to the caller (who
        # might redo it). After-commit work is a courtesy, such as a wake-up with a polling fallback.
        for callback in self._done(committed=committed):
            try:
                await callback()
            except Exception as exc:
                name = getattr(callback, "__qualname__", "?")
                log.warning("after_commit_failed", callback=name, error=repr(exc))


def after_commit(conn: Connection, key: str, callback: Callable[[], Awaitable[None]]) -> bool:
    """Run `callback` once `conn`'s current transaction commits (once per `key` and transaction).

    False when this connection cannot tell when that is (not one of `create_pool`'s, or no
    transaction begun with `transaction()`): the caller has to see to it another way.
    """
    raw = _unproxied(conn)
    if not _ours(raw) or not (raw.hooked_transaction_open and raw.is_in_transaction()):
        return False
    raw.after_commit.setdefault(key, callback)
    return True


def _ours(raw: asyncpg.Connection) -> TypeGuard[_StatelessPoolConnection]:
    # Not isinstance: asyncpg's connection metaclass answers it for any connection and any subclass.
    return _StatelessPoolConnection in type(raw).__mro__


def _unproxied(conn: Connection) -> asyncpg.Connection:
    if isinstance(conn, PoolConnectionProxy):
        return conn._con  # type: ignore[attr-defined,no-any-return]
    return conn


def schema_of(conn: Connection) -> str | None:
    """The schema `create_pool` bound the connection to; None for any other connection."""
    raw = _unproxied(conn)
    return raw.schema if _ours(raw) else None


async def create_pool(
    dsn: str,
    *,
    schema: str,
    min_size: int = 2,
    max_size: int = 10,
    idle_in_transaction_timeout_s: float = 15.0,
) -> asyncpg.Pool:
    """A pool whose connections all resolve unqualified names in the service's own schema.

    A session idle inside a transaction for `idle_in_transaction_timeout_s` is ended by Postgres,
    which releases its locks: a frozen process must not stall its live replicas (they would wait on
    its inbox rows and row locks), and our transactions never wait on anything but the database.
    The frozen process finds its connection gone when it wakes and its handler's work is redone.
    """
    settings = {
        "search_path": quote_ident(schema),
        "application_name": f"orchard-{schema}",
        "idle_in_transaction_session_timeout": str(int(idle_in_transaction_timeout_s * 1000)),
    }

    async def bind(conn: asyncpg.Connection) -> None:
        if _ours(conn):
            conn.schema = schema

    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=bind,
        connection_class=_StatelessPoolConnection,
        server_settings=settings,
        command_timeout=60,
    )
    assert pool is not None
    return pool


@dataclass(frozen=True)
class Migration:
    namespace: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """A migration history that does not match the files (edited or removed after it was applied)."""


def load_migrations(namespace: str, directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_snake_case.sql")
        migrations.append(Migration(namespace, int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return migrations


async def apply_migrations(pool: asyncpg.Pool, *, service_dir: Path | None = None) -> list[str]:
    """Apply the chassis migrations, then the service's; each file in its own transaction.

    Replicas starting together serialise on an advisory lock; a file changed after it was applied is
    refused rather than silently diverging.
    """
    sets = [("chassis", CHASSIS_MIGRATIONS)]
    if service_dir is not None and service_dir.is_dir():
        sets.append(("service", service_dir))
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        schema = await conn.fetchval("SELECT current_schema()")
        if schema is None:
            raise MigrationError("the connection's search_path names no existing schema")
        lock_key = advisory_lock_key("migrations", schema)
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    namespace  text NOT NULL,
                    version    integer NOT NULL,
                    name       text NOT NULL,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (namespace, version)
                )
                """
            )
            done = {
                (r["namespace"], r["version"]): r["checksum"]
                for r in await conn.fetch("SELECT namespace, version, checksum FROM schema_migrations")
            }
            for namespace, directory in sets:
                for migration in load_migrations(namespace, directory):
                    key = (namespace, migration.version)
                    label = f"{namespace}/{migration.version:04d}_{migration.name}"
                    if key in done:
                        if done[key] != migration.checksum:
                            raise MigrationError(f"{label} was changed after it was applied")
                        continue
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (namespace, version, name, checksum)"
                            " VALUES ($1, $2, $3, $4)",
                            namespace,
                            migration.version,
                            migration.name,
                            migration.checksum,
                        )
                    applied_now.append(label)
                    log.info("migration_applied", migration=label, schema=schema)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied_now
