"""Analytics' MongoDB collections; nothing else touches them.

- ``tenants``: tenant ID → API key hash and minimum group size (from ``tenant-registered``).
- ``device_contributions``: one document per enrolled participant (``_id`` is the
  participant ID), so a redelivered ``device-enrolled`` is a no-op insert.
- ``erased``: erased participants as HMAC markers only, so their late events are dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tessera_common.mongo import document_lock


class AnalyticsStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.tenants = db["tenants"]
        self.device_contributions = db["device_contributions"]
        self.erased = db["erased"]

    async def ensure_indexes(self) -> None:
        await self.device_contributions.create_index([("tenant_id", ASCENDING)])

    async def upsert_tenant(self, tenant_id: str, api_key_sha256: str, min_group_size: int) -> None:
        """From ``tenant-registered``: the key hash, and k only if no settings change
        (which may arrive first: another topic, another producer) has set it."""
        async with document_lock(self.tenants, tenant_id):
            await self.tenants.update_one(
                {"_id": tenant_id},
                {"$set": {"api_key_sha256": api_key_sha256},
                 "$setOnInsert": {"min_group_size": min_group_size, "settings_revision": 0}},
                upsert=True,
            )

    async def apply_settings(self, tenant_id: str, min_group_size: int, revision: int) -> bool:
        """From ``tenant-settings-changed``: k, unless a later revision is already here,
        so a late or redelivered event never rolls k back."""
        async with document_lock(self.tenants, tenant_id):
            newer = await self.tenants.update_one(
                {"_id": tenant_id, "settings_revision": {"$lt": revision}},
                {"$set": {"min_group_size": min_group_size, "settings_revision": revision}},
            )
        if newer.matched_count:
            return True
        try:
            await self.tenants.insert_one(
                {"_id": tenant_id, "min_group_size": min_group_size, "settings_revision": revision}
            )
        except DuplicateKeyError:
            return False  # the tenant is here with this revision or a later one
        return True

    async def api_key_hash(self, tenant_id: str) -> str | None:
        tenant = await self.tenants.find_one({"_id": tenant_id}, {"api_key_sha256": 1})
        return tenant.get("api_key_sha256") if tenant else None

    async def min_group_size(self, tenant_id: str) -> int | None:
        tenant = await self.tenants.find_one({"_id": tenant_id}, {"min_group_size": 1})
        return tenant["min_group_size"] if tenant else None

    async def add_device(self, contribution: dict[str, Any], marker: str) -> bool:
        """Record one participant's device once; False when it was already counted, or
        when the participant was erased (a late or redelivered event brings nothing
        back: the marker is looked at before the insert and, against a concurrent
        erasure, once more after it)."""
        if await self.is_erased(marker):
            return False
        try:
            await self.device_contributions.insert_one(contribution)
        except DuplicateKeyError:
            return False
        if await self.is_erased(marker):
            await self.device_contributions.delete_one({"_id": contribution["_id"]})
            return False
        return True

    async def is_erased(self, marker: str) -> bool:
        return await self.erased.find_one({"_id": marker}, {"_id": 1}) is not None

    async def device_counts(self, tenant_id: str) -> dict[tuple[str, str], int]:
        pipeline = [
            {"$match": {"tenant_id": tenant_id}},
            {"$group": {"_id": {"platform": "$platform", "form_factor": "$form_factor"}, "n": {"$sum": 1}}},
        ]
        cursor = await self.device_contributions.aggregate(pipeline)
        return {(row["_id"]["platform"], row["_id"]["form_factor"]): row["n"] async for row in cursor}

    async def erase_participant(self, tenant_id: str, participant_id: str, marker: str, now: datetime) -> int:
        """Remember the erasure as an HMAC marker first, then delete the participant's
        contributions; redelivered, it deletes nothing more."""
        async with document_lock(self.erased, marker):
            await self.erased.update_one({"_id": marker}, {"$setOnInsert": {"erased_at": now}}, upsert=True)
        result = await self.device_contributions.delete_one({"_id": participant_id, "tenant_id": tenant_id})
        return result.deleted_count
