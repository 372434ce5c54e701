"""Reliable publishing with a transactional outbox inside the document itself.

A service writes its change and the event describing it in one single-document atomic
write: the event sits under ``outbox.<event_id>`` and ``outbox_since`` marks the
document as having something to publish. The request then returns; a background task
publishes the event and removes it. A crash between the write and the publish loses
nothing: the sweep finds the document by its (indexed) ``outbox_since`` and publishes
later. A crash between the publish and the removal publishes the same event again,
with the same ``id``, which every consumer deduplicates: the retry is invisible. No
multi-document transaction is needed, so MongoDB and FerretDB agree.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from tessera_common.events import EventEnvelope
from tessera_common.logs import get_logger

log = get_logger(__name__)

FIELD = "outbox"
SINCE = "outbox_since"


def outbox_fields(event: EventEnvelope, topic: str, key: bytes | None) -> dict[str, Any]:
    """The fields to write with a new document: its outbox and the pending marker."""
    return {
        FIELD: {
            event.id: {
                "topic": topic,
                "key": key.decode() if key is not None else None,
                "payload": event.model_dump(mode="json"),
            }
        },
        SINCE: _now_ms(),
    }


def _now_ms() -> datetime:
    """BSON dates hold milliseconds; the marker is compared for equality after a round trip."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class OutboxRelay:
    """Publishes outbox events and removes them, in batches.

    Batches because a store update is the expensive step on FerretDB's SQLite backend
    (an update by ``_id`` there costs time in proportion to the collection's size: one
    ``update_many`` for a batch of documents costs about what one ``update_one`` does).
    """

    def __init__(
        self,
        broker: KafkaBroker,
        collections: list[AsyncCollection],
        grace_seconds: float = 5.0,
        batch_size: int = 200,
    ) -> None:
        self._broker = broker
        self._collections = collections
        self._grace = timedelta(seconds=grace_seconds)
        self._batch_size = batch_size
        self._queue: asyncio.Queue[tuple[AsyncCollection, dict[str, Any], otel_context.Context | None]] = (
            asyncio.Queue()
        )
        self._worker: asyncio.Task | None = None

    async def ensure_indexes(self) -> None:
        for collection in self._collections:
            await collection.create_index([(SINCE, ASCENDING)])

    def publish_soon(self, collection: AsyncCollection, document: dict[str, Any]) -> None:
        """Publish a just-written document's events in the background.

        The caller has already made them durable, so it need not wait; a failure
        here only leaves them for the sweep."""
        # The request's trace context goes with the event, so the publish (and every
        # consumer after it) joins the request's trace even when published in a batch.
        self._queue.put_nowait((collection, document, otel_context.get_current()))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._publish_queued())

    async def _publish_queued(self) -> None:
        while not self._queue.empty():
            batch = [self._queue.get_nowait() for _ in range(min(self._batch_size, self._queue.qsize()))]
            try:
                await self._publish_batch(batch)
            except Exception as exc:
                log.warning("publish_deferred", error=type(exc).__name__, events=len(batch))

    async def drain(self) -> None:
        """Wait for background publishes (at shutdown, and in tests)."""
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)

    async def _send(self, entry: dict[str, Any], trace: otel_context.Context | None) -> None:
        token = otel_context.attach(trace) if trace is not None else None
        try:
            key = entry["key"].encode() if entry.get("key") is not None else None
            await self._broker.publish(entry["payload"], entry["topic"], key=key)
        finally:
            if token is not None:
                otel_context.detach(token)

    async def _publish_batch(
        self, batch: list[tuple[AsyncCollection, dict[str, Any], otel_context.Context | None]]
    ) -> int:
        sends = [
            self._send(entry, trace)
            for _, document, trace in batch
            for entry in (document.get(FIELD) or {}).values()
        ]
        await asyncio.gather(*sends)  # raises if any send failed: nothing is removed then
        by_collection: dict[str, tuple[AsyncCollection, list[dict[str, Any]]]] = {}
        for collection, document, _ in batch:
            by_collection.setdefault(collection.full_name, (collection, []))[1].append(document)
        for collection, documents in by_collection.values():
            # Clear outbox and marker where nothing was added since we read (the marker
            # would have moved); then drop just the published events everywhere else.
            await collection.update_many(
                {"$or": [{"_id": d["_id"], SINCE: d[SINCE]} for d in documents]},
                {"$unset": {FIELD: "", SINCE: ""}},
            )
            published = {f"{FIELD}.{event_id}": "" for d in documents for event_id in d.get(FIELD) or {}}
            await collection.update_many({"_id": {"$in": [d["_id"] for d in documents]}}, {"$unset": published})
        return len(sends)

    async def sweep(self) -> int:
        """Publish whatever a crash or a broker outage left behind."""
        published = 0
        cutoff = datetime.now(UTC) - self._grace
        for collection in self._collections:
            cursor = collection.find({SINCE: {"$lte": cutoff}}, {FIELD: 1, SINCE: 1}).limit(self._batch_size)
            batch = [(collection, document, None) async for document in cursor]
            if batch:
                published += await self._publish_batch(batch)
        return published

    async def run(self, interval_seconds: float) -> None:
        while True:
            try:
                published = await self.sweep()
                if published:
                    log.info("outbox_swept", published=published)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or store down: try again next round
                log.warning("outbox_sweep_failed", error=type(exc).__name__)
            await asyncio.sleep(interval_seconds)
