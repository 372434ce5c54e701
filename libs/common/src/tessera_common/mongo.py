"""The MongoDB client: PyMongo's native async API (motor is deprecated).

Store rules (DESIGN.md §5), so that MongoDB and FerretDB behave the same: no
multi-document transactions, no TTL indexes, no change streams, aggregation only with
$match $group $sum $count $sort $project $unwind $limit $skip. A single-document atomic
write is the unit of consistency.

FerretDB 1.24 on SQLite does not make that write atomic under concurrency: an update
reads the document and writes it back whole, so two concurrent updates of one
document both match a conditional filter (a version check "wins" twice) and one of two
``$set``s of different fields is lost. Measured on this stack (20 trials of 5
concurrent updates each): a version check won more than once in 19 of 20, and a
``$set`` was lost in 20 of 20 (see the README). MongoDB updates a document atomically.
So every update in Tessera goes through :func:`document_lock`, which serialises
updates of one document within the process: enough for the Docker-free stack (one
process per service); several replicas of a service need MongoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from datetime import UTC, datetime

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase


def now_ms() -> datetime:
    """Now, to the millisecond BSON keeps: a value written and read back compares equal
    (an outbox marker, a response and its stored replay)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def make_mongo_client(url: str) -> AsyncMongoClient:
    return AsyncMongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        retryWrites=False,  # FerretDB has no retryable writes; idempotence is ours
        appname="tessera",
    )


async def ping(db: AsyncDatabase) -> bool:
    try:
        await db.command("ping")
    except Exception:
        return False
    return True


class _DocumentLocks:
    """One asyncio lock per document being updated in this process, dropped when unused."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


_document_locks = _DocumentLocks()


def document_lock(collection: AsyncCollection, document_id: Hashable) -> contextlib.AbstractAsyncContextManager[None]:
    """Hold while updating one document: no other update of it in this process runs
    meanwhile (see the module docstring for why)."""
    return _document_locks.hold((collection.full_name, document_id))
