"""PostgreSQL for every service: one pool per service, tenant-scoped transactions,
versioned migrations, and the unit of work that commits a change with its events.

Store rules (DESIGN.md §5):

- A transaction is the unit of consistency. A change and the events it causes commit
  together: :meth:`UnitOfWork.publish` writes the event into the service's ``outbox``
  table inside the same transaction (see :mod:`tessera_common.outbox`).
- Row-level security is the second wall between tenants. Every tenant table has a
  policy on ``tenant_id = current_setting('tessera.tenant_id')`` with ``FORCE ROW LEVEL
  SECURITY``; the service connects as a role that does not own the tables; and a unit
  of work sets its tenant with ``set_config(..., true)``, which lasts for that
  transaction only, so a pooled connection never carries a tenant into the next one.
  A unit of work without a tenant sees no tenant row at all. The few lookups that
  must cross tenants (a device token names a participant, an opp code names no
  tenant, a retry sweep looks at every tenant's open requests) are ``SECURITY
  DEFINER`` functions in the migrations that return only what that lookup needs.
- Consumers deduplicate by event id inside the transaction that applies the event
  (:meth:`UnitOfWork.first_delivery`), so a redelivery changes nothing.
- The schema is versioned migrations (yoyo: plain SQL files, applied under a lock so
  that replicas starting together apply each one once), run by ``tessera-migrate`` and
  by the service at start when it is behind, as the database's owner role.
- Vacuum after erasure: the tables erasure deletes from have eager autovacuum settings
  (each service's ``0090_vacuum``-style migration), and with the owner's address a
  service also runs ``VACUUM`` on them soon after an erasure
  (:meth:`Database.vacuum_soon`), so erased rows' space is reused promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from tessera_common.events import EventEnvelope
from tessera_common.logs import get_logger
from tessera_common.outbox import insert_outbox, trace_carrier

log = get_logger(__name__)

#: Migrations every service's database has: the outbox and the consumers' inbox.
COMMON_MIGRATIONS = Path(__file__).parent / "migrations"
#: The tenant-access tables of the services that check tenant API keys from the
#: gateway's ``tenant-access-changed`` (not the gateway, which owns the keys).
TENANT_ACCESS_MIGRATIONS = Path(__file__).parent / "migrations_tenant_access"

#: Errors that mean "the store is not reachable or is busy now", not "the request is
#: wrong": consumers wait and retry, routes answer 503 with Retry-After.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.QueryCanceledError,
    # The server going away under a connection (a restart): in a statement, or, on a
    # pooled connection it closed while idle, asyncpg's "cannot switch to state …;
    # another operation is in progress" (MagicStack/asyncpg#784) on its next use.
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,
    OSError,
)

UniqueViolation = asyncpg.UniqueViolationError


def now_ms() -> datetime:
    """Now, to the millisecond: a value written and read back compares equal with what
    a response carried (a stored replay returns exactly what was answered first)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def _init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("jsonb", "json"):
        await connection.set_type_codec(
            type_name, encoder=lambda value: json.dumps(value, separators=(",", ":")),
            decoder=json.loads, schema="pg_catalog",
        )


async def _keep_connection(connection: asyncpg.Connection) -> None:
    """Nothing to reset when a connection returns to the pool: the tenant setting is
    transaction-local, every lock is transaction-level, and the relay's LISTEN holds a
    connection of its own. asyncpg's default (``RESET ALL``, ``UNLISTEN *``, unlock
    all) is a round trip more on every unit of work."""


class Database:
    """A service's database: its pool (as the service's own role, which owns no table)
    and, for migrations only, the owner's address."""

    def __init__(self, url: str, owner_url: str | None, migrations: Sequence[Path],
                 min_size: int = 1, max_size: int = 10, vacuum_interval_seconds: float = 60.0) -> None:
        self._url = url
        self._owner_url = owner_url
        self._migrations = list(migrations)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._vacuum_interval = vacuum_interval_seconds
        self._vacuum_pending: set[str] = set()
        self._vacuum_task: asyncio.Task | None = None
        self._vacuumed_at = 0.0

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database is not open yet (the app's lifespan opens it)")
        return self._pool

    async def open(self) -> None:
        if self._owner_url:
            await asyncio.to_thread(migrate, self._owner_url, self._migrations)
        self._pool = await asyncpg.create_pool(
            self._url, min_size=self._min_size, max_size=self._max_size,
            init=_init_connection, reset=_keep_connection, command_timeout=30,
            # Statements are prepared per connection; with a pooler in transaction mode
            # (PgBouncer) in front this would need statement_cache_size=0.
        )

    def vacuum_soon(self, tables: Sequence[str]) -> None:
        """Ask for ``VACUUM`` of ``tables`` (after an erasure, so the erased rows' space is
        reused promptly): run as the owner (PostgreSQL lets only a table's owner vacuum
        it, and never inside a transaction), a few seconds from now and at most once per
        ``vacuum_interval_seconds``, all tables asked for meanwhile together. Without
        the owner's address it does nothing (autovacuum, tuned by the migrations, does
        it). A failure is logged, never raised: the erasure does not depend on it."""
        if not self._owner_url or self._pool is None:
            return
        self._vacuum_pending.update(tables)
        if self._vacuum_task is None or self._vacuum_task.done():
            self._vacuum_task = asyncio.get_running_loop().create_task(self._vacuum_later())

    async def _vacuum_later(self) -> None:
        delay = max(2.0, self._vacuumed_at + self._vacuum_interval - time.monotonic())
        await asyncio.sleep(delay)
        tables, self._vacuum_pending = sorted(self._vacuum_pending), set()
        self._vacuumed_at = time.monotonic()
        try:
            connection = await asyncpg.connect(self._owner_url)
            try:
                for table in tables:
                    await connection.execute(f'VACUUM "{table}"')
            finally:
                await connection.close()
            log.info("vacuumed_after_erasure", tables=tables)
        except Exception as exc:
            log.warning("vacuum_failed", error=type(exc).__name__)

    async def close(self, timeout: float = 10.0) -> None:
        """Close gracefully; a connection still held after ``timeout`` (a request that
        never finished) must not keep the process from stopping, so then terminate."""
        if self._vacuum_task is not None:
            self._vacuum_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._vacuum_task
            self._vacuum_task = None
        if self._pool is not None:
            try:
                async with asyncio.timeout(timeout):  # not wait_for: see outbox.py
                    await self._pool.close()
            except TimeoutError:
                log.warning("database_close_timed_out", timeout=timeout)
                self._pool.terminate()
            self._pool = None

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
        except Exception:
            return False
        return True

    async def forget_old_deliveries(self, retention_days: int) -> int:
        """Drop inbox entries older than ``retention_days`` (see the setting)."""
        status = await self.pool.execute(
            "DELETE FROM inbox WHERE applied_at < now() - make_interval(days => $1)", retention_days)
        return int(status.split()[-1])

    @contextlib.asynccontextmanager
    async def transaction(self, tenant_id: str | None) -> AsyncIterator[asyncpg.Connection]:
        """One transaction, scoped to ``tenant_id`` by row-level security (None: no
        tenant, so no tenant row is visible)."""
        async with self.pool.acquire() as connection, connection.transaction():
            if tenant_id is not None:
                # Local to this transaction: the pooled connection's next user starts
                # with no tenant again (unset or '' both match no row).
                await connection.execute("SELECT set_config('tessera.tenant_id', $1, true)", tenant_id)
            yield connection


@dataclass(frozen=True)
class Outgoing:
    event: EventEnvelope
    topic: str
    key: bytes | None
    aggregatetype: str
    aggregateid: str
    #: the trace context of the code that wrote the event (the relay publishes in it)
    headers: dict[str, str]


class UnitOfWork:
    """One transaction that holds a change and its outbox rows, committed once.

    Repositories are built on :attr:`connection`; :meth:`publish` adds an event to the
    outbox in the same transaction. Leaving the block normally commits; an exception
    rolls everything back, events included. The trace context of the code that wrote
    an event travels with it (the relay publishes inside that trace)."""

    def __init__(self, database: Database, tenant_id: str | None) -> None:
        self._database = database
        self.tenant_id = tenant_id
        self._context: contextlib.AbstractAsyncContextManager[asyncpg.Connection] | None = None
        self.connection: asyncpg.Connection = None  # type: ignore[assignment]
        self.published = 0
        self._pending: list[Outgoing] = []

    async def __aenter__(self) -> UnitOfWork:
        self._context = self._database.transaction(self.tenant_id)
        self.connection = await self._context.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._context is not None
        try:
            if exc_info[0] is None and self._pending:
                try:
                    await self._write_pending()
                except BaseException as error:  # the change and its events roll back together
                    await self._context.__aexit__(type(error), error, error.__traceback__)
                    raise
            return await self._context.__aexit__(*exc_info)
        finally:
            self.connection = None  # type: ignore[assignment]

    async def _write_pending(self) -> None:
        """The events published in this unit, into the outbox in one statement."""
        pending, self._pending = self._pending, []
        if pending:
            await insert_outbox(self.connection, pending)

    async def publish(self, event: EventEnvelope, topic: str, key: bytes | None = None, *,
                      aggregatetype: str, aggregateid: str | None = None) -> None:
        """Write ``event`` to the outbox; it reaches Kafka after this unit commits.

        ``aggregateid`` orders events: one aggregate's events are published in the
        order they were written (default: the partition key, else the event's subject)."""
        aggregate = aggregateid or (key.decode() if key is not None else event.subject or event.id)
        # Written with the unit's other events just before it commits: one round trip.
        self._pending.append(Outgoing(event, topic, key, aggregatetype, aggregate, trace_carrier()))
        self.published += 1

    async def discard_pending(self, key: bytes) -> int:
        """Delete the events keyed ``key`` (a participant) that still wait in the outbox:
        erasure leaves nothing of the participant in this database, and an event about
        data that is gone must not be published after it (a relay pass that holds them
        now finishes first: the delete waits for its lock)."""
        await self._write_pending()  # what this unit published so far is deleted too
        status = await self.connection.execute("DELETE FROM outbox WHERE key = $1", key.decode())
        return int(status.split()[-1])

    async def first_delivery(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` applies ``event_id`` in this transaction; False if
        it did already (a redelivery), in which case the caller changes nothing."""
        inserted = await self.connection.fetchval(
            "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
            consumer, event_id,
        )
        return inserted is not None


def migrate(owner_url: str, directories: Sequence[Path]) -> int:
    """Apply what is not yet applied, as the owner, under yoyo's lock (replicas that
    start together apply each migration once). Returns how many were applied."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_url(owner_url))
    try:
        migrations = read_migrations(*[str(d) for d in directories])
        with backend.lock():
            pending = backend.to_apply(migrations)
            if pending:
                backend.apply_migrations(pending)
                log.info("migrations_applied", count=len(pending))
            return len(pending)
    finally:
        with contextlib.suppress(Exception):
            backend.connection.close()


def _yoyo_url(url: str) -> str:
    """yoyo names its driver in the scheme (psycopg 3)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url


def migrate_main() -> None:
    """``tessera-migrate <service>``: bring that service's database up to date (as its
    owner role, from ``TESSERA_DATABASE_OWNER_URL``), e.g. from a Kubernetes Job."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog="tessera-migrate", description=migrate_main.__doc__)
    parser.add_argument("service", choices=["enrolment", "dialogue", "rights", "analytics"])
    args = parser.parse_args()
    app_module = importlib.import_module(f"tessera_{args.service}.app")
    settings = app_module.SETTINGS_CLASS()
    if settings.database_owner_url is None:
        parser.error("TESSERA_DATABASE_OWNER_URL is not set")
    applied = migrate(settings.database_owner_url.get_secret_value(), migration_dirs(args.service))
    print(f"{args.service}: {applied} migration(s) applied")


def migration_dirs(service: str) -> list[Path]:
    """The common migrations, then the service's own (``services/<name>/migrations``,
    shipped inside its package as ``tessera_<name>/migrations``); behind the gateway also
    the tenant-access tables."""
    import importlib

    package = importlib.import_module(f"tessera_{service}")
    shared = [COMMON_MIGRATIONS] if service == "enrolment" else [COMMON_MIGRATIONS, TENANT_ACCESS_MIGRATIONS]
    return [*shared, Path(package.__file__).parent / "migrations"]
