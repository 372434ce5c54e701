"""Reliable publishing with a transactional outbox inside the document itself.

A service writes its change and the event describing it in one single-document atomic
write (the event sits under ``outbox.<event_id>``), then publishes and removes it. A
crash between the write and the publish loses nothing: the sweep finds the pending event
and publishes it later. A crash between the publish and the removal publishes the same
event again, with the same ``id``, which every consumer deduplicates: the retry is
invisible. No multi-document transaction is needed, so MongoDB and FerretDB agree.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faststream.kafka import KafkaBroker
from pymongo.asynchronous.collection import AsyncCollection

from tessera_common.events import EventEnvelope
from tessera_common.logs import get_logger

log = get_logger(__name__)

FIELD = "outbox"


def outbox_entry(event: EventEnvelope, topic: str, key: bytes | None) -> dict[str, dict[str, Any]]:
    """The ``outbox`` sub-document to write with the change: ``{event_id: entry}``."""
    return {
        event.id: {
            "topic": topic,
            "key": key.decode() if key is not None else None,
            "payload": event.model_dump(mode="json"),
        }
    }


class OutboxRelay:
    def __init__(self, broker: KafkaBroker, collections: list[AsyncCollection]) -> None:
        self._broker = broker
        self._collections = collections

    async def relay(self, collection: AsyncCollection, document_id: Any) -> int:
        """Publish the pending events of one document; returns how many went out."""
        document = await collection.find_one({"_id": document_id}, {FIELD: 1})
        return await self._publish_pending(collection, document)

    async def _publish_pending(self, collection: AsyncCollection, document: dict | None) -> int:
        if not document:
            return 0
        published = 0
        for event_id, entry in (document.get(FIELD) or {}).items():
            key = entry["key"].encode() if entry.get("key") is not None else None
            await self._broker.publish(entry["payload"], entry["topic"], key=key)
            # Unset only this event: another write may have added one meanwhile.
            await collection.update_one({"_id": document["_id"]}, {"$unset": {f"{FIELD}.{event_id}": ""}})
            published += 1
        return published

    async def sweep(self, limit: int = 500) -> int:
        """Publish whatever a crash or a broker outage left behind."""
        published = 0
        for collection in self._collections:
            cursor = collection.find({FIELD: {"$exists": True, "$ne": {}}}, {FIELD: 1}).limit(limit)
            async for document in cursor:
                published += await self._publish_pending(collection, document)
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
