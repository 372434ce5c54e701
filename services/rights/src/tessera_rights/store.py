"""The rights service's MongoDB collections; nothing else touches them.

- ``data_keys``: ``_id`` is the participant ID; the key only wrapped under the master
  key (:mod:`.domain`), never in plaintext.
- ``erased_participants``: ``_id`` is the erased marker (an HMAC of the participant ID,
  :func:`tessera_common.secrets.erased_marker`), never the raw ID.

Every write is one single-document insert or delete; ``_id`` uniqueness is what makes
concurrent creates of one participant's key end with a single key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tessera_rights.domain import WrappedDataKey


class RightsStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.data_keys = db["data_keys"]
        self.erased = db["erased_participants"]

    # --- data keys -------------------------------------------------------

    async def add_data_key(self, record: WrappedDataKey) -> tuple[WrappedDataKey | None, bool]:
        """Insert ``record`` unless the participant already has a key. Returns the key
        stored now and whether it is ``record``; ``(None, False)`` if the existing key
        was deleted in between (an erasure won the race)."""
        try:
            await self.data_keys.insert_one(_document(record))
            return record, True
        except DuplicateKeyError:
            return await self.data_key(record.participant_id), False

    async def data_key(self, participant_id: str) -> WrappedDataKey | None:
        document = await self.data_keys.find_one({"_id": participant_id})
        return _record(document) if document else None

    async def delete_data_key(self, participant_id: str) -> None:
        await self.data_keys.delete_one({"_id": participant_id})

    # --- erased participants ---------------------------------------------

    async def mark_erased(self, marker: str, now: datetime) -> None:
        """Idempotent: the first erasure's time stays."""
        try:
            await self.erased.insert_one({"_id": marker, "erased_at": now})
        except DuplicateKeyError:
            pass

    async def is_erased(self, marker: str) -> bool:
        return await self.erased.find_one({"_id": marker}, {"_id": 1}) is not None


def _document(record: WrappedDataKey) -> dict[str, Any]:
    return {
        "_id": record.participant_id,
        "tenant_id": record.tenant_id,
        "key_id": record.key_id,
        "nonce": record.nonce,
        "wrapped": record.wrapped,
        "created_at": record.created_at,
    }


def _record(document: dict[str, Any]) -> WrappedDataKey:
    return WrappedDataKey(
        participant_id=document["_id"],
        tenant_id=document["tenant_id"],
        key_id=document["key_id"],
        nonce=bytes(document["nonce"]),
        wrapped=bytes(document["wrapped"]),
        created_at=document["created_at"],
    )
