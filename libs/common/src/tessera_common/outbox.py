"""Reliable publishing through a transactional outbox table.

A unit of work writes its change and the rows of the events it causes in one
transaction (:meth:`tessera_common.postgres.UnitOfWork.publish`). After the commit,
the relay publishes those rows to Kafka and deletes them:

- **Prompt.** An insert into ``outbox`` NOTIFYs at commit; the relay LISTENs and wakes
  at once. A periodic pass also runs, for a notification lost with a connection.
- **Nothing lost.** A crash between commit and publish leaves the rows; the next pass
  publishes them. A crash between publish and delete publishes them again with the
  same event id, which every consumer deduplicates.
- **In order, with several replicas.** One pass at a time per database: a pass holds a
  transaction-level advisory lock, so two replicas never publish interleaved batches
  and one aggregate's events reach Kafka in the order they were written (``seq``:
  writes of one aggregate are serialised by its own row or advisory lock, so their
  seq order is their commit order). A replica that finds the lock taken leaves the
  work to the holder. A pass deletes exactly the rows it published: a lower seq may
  commit after a higher one was read, and is published by the next pass.
- **In the writer's trace.** The writer's trace context is stored with the row and
  the publish runs inside it, so SRE follows a request into every consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry import propagate

from tessera_common.logs import get_logger

#: Topics.for_tenant's prefix (events.py imports nothing from here).
TENANT_TOPIC_PREFIX = "tenant."

if TYPE_CHECKING:
    from tessera_common.postgres import Database, Outgoing

log = get_logger(__name__)

#: The advisory lock key of a relay pass (any constant; one per database).
_RELAY_LOCK = 0x7E55E4A_0B0
_CHANNEL = "outbox"


def trace_carrier() -> dict[str, str]:
    """The current trace context, for an event written now and published later."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


async def insert_outbox(connection: asyncpg.Connection, outgoing: Sequence[Outgoing]) -> None:
    """Every event of a unit of work in one statement (one round trip however many it
    wrote), in the order written: ``seq`` follows the rows' order. One statement text
    per number of rows, so each is prepared once per connection."""
    rows = ", ".join(f"(${i * 8 + 1}, ${i * 8 + 2}, ${i * 8 + 3}, ${i * 8 + 4}, ${i * 8 + 5}, ${i * 8 + 6},"
                     f" ${i * 8 + 7}, ${i * 8 + 8})" for i in range(len(outgoing)))
    values = [value for o in outgoing for value in (
        o.event.id, o.aggregatetype, o.aggregateid, o.event.type, o.event.model_dump(mode="json"), o.topic,
        o.key.decode() if o.key is not None else None, o.headers)]
    await connection.execute(
        f"INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, topic, key, headers) VALUES {rows}",
        *values)


#: The relays of this process (one per service; several only where tests run several
#: apps in one process), for the one gauge below.
_RELAYS: weakref.WeakSet[OutboxRelay] = weakref.WeakSet()


def _observe_age(_options: CallbackOptions) -> Iterable[Observation]:
    yield Observation(max((relay.oldest_age_seconds() for relay in list(_RELAYS)), default=0.0))


metrics.get_meter("tessera.outbox").create_observable_gauge(
    "tessera_outbox_oldest_age", callbacks=[_observe_age], unit="s",
    description="age of the oldest event waiting in this service's outbox (0: none waits)")


class OutboxRelay:
    """Publishes committed outbox rows to Kafka and deletes them (see module docstring)."""

    def __init__(self, broker: KafkaBroker, database: Database, batch: int = 200,
                 gather_seconds: float = 0.005,
                 ensure_topic: Callable[[str], Awaitable[None]] | None = None) -> None:
        self._broker = broker
        #: Tenants' topics are made on first use (one per tenant, not known at start):
        #: created before their first event, with the platform's partitions and
        #: replication rather than a broker's auto-create defaults (which production
        #: turns off).
        self._ensure_topic = ensure_topic
        self._known_topics: set[str] = set()
        #: When the oldest row this replica has seen waiting was written (None: none
        #: waits); ``tessera_outbox_oldest_age`` is the time since, so a relay that
        #: cannot publish (broker down) shows an age that grows.
        self._oldest_waiting: datetime | None = None
        _RELAYS.add(self)
        self._gather_seconds = gather_seconds
        self._database = database
        self._batch = batch
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    def oldest_age_seconds(self) -> float:
        oldest = self._oldest_waiting
        return (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0

    def wake(self) -> None:
        """Run a pass now (the request that just committed need not wait for NOTIFY)."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """One pass: publish and delete what is committed, in order; 0 if another
        replica holds the pass (it publishes these rows)."""
        published = 0
        while True:
            async with self._database.transaction(None) as connection:
                # The pass's lock and its rows in one round trip: no rows when another
                # replica holds the lock (it publishes them) or when there are none.
                rows = await connection.fetch(
                    "WITH pass AS (SELECT pg_try_advisory_xact_lock($1) AS mine)"
                    " SELECT seq, aggregateid, payload, topic, key, headers, created_at FROM outbox, pass"
                    " WHERE pass.mine ORDER BY seq LIMIT $2",
                    _RELAY_LOCK, self._batch,
                )
                if not rows:
                    self._oldest_waiting = None
                    return published
                self._oldest_waiting = rows[0]["created_at"]
                # Events of one Kafka key (else one aggregate) one after another, in seq
                # order; different keys side by side (no order is promised among them).
                by_aggregate: dict[str, list[asyncpg.Record]] = {}
                for row in rows:
                    by_aggregate.setdefault(row["key"] or row["aggregateid"], []).append(row)
                await asyncio.gather(*(self._publish_in_order(group) for group in by_aggregate.values()))
                # Exactly the rows published: a transaction that took a lower seq may
                # have committed since the SELECT, and "seq <= last" would delete its
                # row unpublished (READ COMMITTED: the DELETE sees newer commits).
                await connection.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])",
                                         [row["seq"] for row in rows])
                published += len(rows)
            if len(rows) < self._batch:
                return published

    async def _publish_in_order(self, rows: list[asyncpg.Record]) -> None:
        for row in rows:
            await self._publish(row)

    async def _publish(self, row: asyncpg.Record) -> None:
        if self._ensure_topic is not None and row["topic"] not in self._known_topics:
            if row["topic"].startswith(TENANT_TOPIC_PREFIX):
                await self._ensure_topic(row["topic"])
            self._known_topics.add(row["topic"])
        parent = propagate.extract(row["headers"] or {})
        token = otel_context.attach(parent)
        try:
            key = row["key"].encode() if row["key"] is not None else None
            await self._broker.publish(row["payload"], row["topic"], key=key)
        finally:
            otel_context.detach(token)

    async def _listen(self) -> None:
        """Hold one pooled connection that LISTENs (a broken one is given back first;
        a connection never given back would keep the pool from closing)."""
        if self._listener is not None and self._listening():
            return
        await self._unlisten()
        with contextlib.suppress(Exception):
            connection = await self._database.pool.acquire()
            try:
                await connection.add_listener(_CHANNEL, self._notified)
            except BaseException:
                await self._database.pool.release(connection)
                raise
            self._listener = connection

    def _listening(self) -> bool:
        """Whether the LISTEN connection still works. When the store drops it (a
        PostgreSQL restart), asyncpg hands it back to the pool itself and every call on
        what we hold raises InterfaceError: then it does not."""
        try:
            return not self._listener.is_closed()
        except asyncpg.InterfaceError:
            return False

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _unlisten(self) -> None:
        if self._listener is None:
            return
        with contextlib.suppress(Exception):
            await self._listener.remove_listener(_CHANNEL, self._notified)
        with contextlib.suppress(Exception):
            await self._database.pool.release(self._listener)
        self._listener = None

    async def run(self, interval_seconds: float) -> None:
        """Publish on every notification, and every ``interval_seconds`` regardless."""
        try:
            while True:
                try:
                    # Inside the try: a relay that died of a store outage would leave
                    # every later commit's events in the outbox until the next restart.
                    await self._listen()
                    published = await self.publish_pending()
                    if published:
                        log.debug("outbox_published", published=published)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # broker or store down: the rows wait for the next pass
                    log.warning("outbox_publish_deferred", error=type(exc).__name__)
                    await self._unlisten()
                    await asyncio.sleep(min(interval_seconds, 1.0))
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
                # cancellation that arrives as the event is set (CPython gh-86296), and
                # the relay then never stops: the app's shutdown waited on it for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval_seconds):
                        await self._wake.wait()
                # A moment for the commits arriving together to land in one pass: a
                # pass per commit would double the round trips of a busy service.
                await asyncio.sleep(self._gather_seconds)
                self._wake.clear()
        finally:
            await self._unlisten()

    async def drain(self) -> None:
        """Publish what is committed now (at shutdown, and in tests)."""
        with contextlib.suppress(Exception):
            await self.publish_pending()
