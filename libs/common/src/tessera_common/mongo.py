"""The MongoDB client: PyMongo's native async API (motor is deprecated).

Store rules (DESIGN.md §5), so that MongoDB and FerretDB behave the same: no
multi-document transactions, no TTL indexes, no change streams, aggregation only with
$match $group $sum $count $sort $project $unwind $limit $skip. A single-document atomic
write is the unit of consistency.
"""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase


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
