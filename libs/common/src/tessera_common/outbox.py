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
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from tessera_common.events import EventEnvelope
from tessera_common.logs import get_logger
from tessera_common.mongo import document_lock, now_ms

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
        SINCE: now_ms(),
    }


def outbox_update(document_id: Any, event: EventEnvelope, topic: str, key: bytes | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """For a change to an existing document: the ``$set`` fields that add the event to
    its outbox (beside events still waiting there), and the view of the document that
    :meth:`OutboxRelay.publish_soon` needs afterwards."""
    fields = outbox_fields(event, topic, key)
    (event_id, entry), = fields[FIELD].items()
    return (
        {f"{FIELD}.{event_id}": entry, SINCE: fields[SINCE]},
        {"_id": document_id, FIELD: fields[FIELD], SINCE: fields[SINCE]},
    )


class OutboxRelay:
    """Publishes each written document's events at once, in the background, and removes
    them from the document afterwards, one document at a time.

    Publishing and removal are separate so that event latency never waits on the store:
    on FerretDB's SQLite backend an update by ``_id`` costs time in proportion to the
    collection (13 ms at 3,000 documents), and a multi-document update holds the write
    lock while it scans (105 ms for an ``$in`` of one ``_id`` at 3,000), so removals run
    singly and may lag behind under load; the sweep's grace period keeps it from
    republishing what is merely waiting for removal.
    """

    def __init__(self, broker: KafkaBroker, collections: list[AsyncCollection], grace_seconds: float = 5.0) -> None:
        self._broker = broker
        self._collections = collections
        self._grace = timedelta(seconds=grace_seconds)
        self._published: asyncio.Queue[tuple[AsyncCollection, dict[str, Any]]] = asyncio.Queue()
        #: Documents published by this process and waiting for removal: the sweep skips
        #: them rather than publish them again while removal lags.
        self._awaiting_removal: set[tuple[str, Any]] = set()
        self._tasks: set[asyncio.Task] = set()
        self._remover: asyncio.Task | None = None

    async def ensure_indexes(self) -> None:
        for collection in self._collections:
            await collection.create_index([(SINCE, ASCENDING)])

    def publish_soon(self, collection: AsyncCollection, document: dict[str, Any]) -> None:
        """Publish a just-written document's events in the background.

        The caller has already made them durable, so it need not wait; a failure here
        only leaves them for the sweep. The task inherits the request's trace context,
        so the publish (and every consumer after it) joins the request's trace."""
        task = asyncio.create_task(self._publish_then_queue_removal(collection, document))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_then_queue_removal(self, collection: AsyncCollection, document: dict[str, Any]) -> None:
        try:
            await self._publish(document)
        except Exception as exc:
            log.warning("publish_deferred", error=type(exc).__name__)
            return
        self._awaiting_removal.add((collection.full_name, document["_id"]))
        self._published.put_nowait((collection, document))
        if self._remover is None or self._remover.done():
            self._remover = asyncio.create_task(self._remove_published())

    async def _remove_published(self) -> None:
        while not self._published.empty():
            collection, document = self._published.get_nowait()
            try:
                await self._remove(collection, document)
            except Exception as exc:  # the sweep republishes (same ids) and removes later
                log.warning("outbox_removal_deferred", error=type(exc).__name__)
            finally:
                self._awaiting_removal.discard((collection.full_name, document["_id"]))

    async def drain(self) -> None:
        """Wait for background publishes and removals (at shutdown, and in tests)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._remover is not None:
            await asyncio.gather(self._remover, return_exceptions=True)

    async def _publish(self, document: dict[str, Any]) -> int:
        entries = document.get(FIELD) or {}
        for entry in entries.values():
            key = entry["key"].encode() if entry.get("key") is not None else None
            await self._broker.publish(entry["payload"], entry["topic"], key=key)
        return len(entries)

    async def _remove(self, collection: AsyncCollection, document: dict[str, Any]) -> None:
        entries = document.get(FIELD) or {}
        if not entries:
            return
        # One write normally: drop outbox and marker, but only if no other event was
        # added since we read (it would have moved the marker); else just our events.
        async with document_lock(collection, document["_id"]):
            cleared = await collection.update_one(
                {"_id": document["_id"], SINCE: document[SINCE]}, {"$unset": {FIELD: "", SINCE: ""}}
            )
            if cleared.matched_count == 0:
                await collection.update_one(
                    {"_id": document["_id"]}, {"$unset": {f"{FIELD}.{event_id}": "" for event_id in entries}}
                )

    async def sweep(self, limit: int = 500) -> int:
        """Publish whatever a crash or a broker outage left behind."""
        published = 0
        cutoff = datetime.now(UTC) - self._grace
        for collection in self._collections:
            cursor = collection.find({SINCE: {"$lte": cutoff}}, {FIELD: 1, SINCE: 1}).limit(limit)
            async for document in cursor:
                if (collection.full_name, document["_id"]) in self._awaiting_removal:
                    continue
                published += await self._publish(document)
                await self._remove(collection, document)
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
