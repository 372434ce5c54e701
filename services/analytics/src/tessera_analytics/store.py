"""Analytics' MongoDB collections; nothing else touches them.

- ``tenants``: tenant ID → API key hash and minimum group size (from ``tenant-registered``).
- ``device_contributions``: one document per enrolled participant (``_id`` is the
  participant ID), so a redelivered ``device-enrolled`` is a no-op insert.
- ``answer_contributions``: one document per answer (``_id`` is the answer ID) with its
  current version and value, never its text (which stays sealed): what figures about
  answers are made of. A version only replaces a lower one, so the two answer topics'
  events may arrive in any order, and twice.
- ``erased``: erased participants as HMAC markers only, so their late events are dropped.
- ``objected``: participants who objected to analysis, as the same HMAC markers (with
  their tenant, so only that tenant's questions see the objection): they count in no
  figure from then on, and their late events are dropped like an erased participant's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tessera_common.mongo import document_lock

#: The contributions' name in the data map (tessera_common.datamap): erasure and
#: objection are confirmed, and a participant's data is exported, under it.
STORE_NAME = "analytics.contributions"


class AnalyticsStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.tenants = db["tenants"]
        self.device_contributions = db["device_contributions"]
        self.answer_contributions = db["answer_contributions"]
        self.erased = db["erased"]
        self.objected = db["objected"]

    async def ensure_indexes(self) -> None:
        await self.device_contributions.create_index([("tenant_id", ASCENDING)])
        await self.answer_contributions.create_index([("participant_id", ASCENDING)])
        await self.answer_contributions.create_index([("dialogue_id", ASCENDING), ("question_id", ASCENDING)])

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
        when the participant was erased or objected (a late or redelivered event brings
        nothing back: the markers are looked at before the insert and, against a
        concurrent erasure or objection, once more after it)."""
        if await self.excluded(marker):
            return False
        try:
            await self.device_contributions.insert_one(contribution)
        except DuplicateKeyError:
            return False
        if await self.excluded(marker):
            await self.device_contributions.delete_one({"_id": contribution["_id"]})
            return False
        return True

    async def apply_answer(self, contribution: dict[str, Any], marker: str) -> bool:
        """Keep the answer at its highest version; False when this version is not newer
        than the one held, or when the participant was erased or objected, or their
        answers to this dialogue expired (looked at before and, against a concurrent
        erasure, after the write)."""
        scoped = f"{marker}:{contribution['dialogue_id']}"
        if await self.excluded(marker) or await self.is_erased(scoped):
            return False
        answer_id = contribution["_id"]
        async with document_lock(self.answer_contributions, answer_id):
            held = await self.answer_contributions.find_one({"_id": answer_id}, {"version": 1})
            if held is not None and held["version"] >= contribution["version"]:
                return False
            if held is None:
                try:
                    await self.answer_contributions.insert_one(contribution)
                except DuplicateKeyError:
                    return False
            else:
                await self.answer_contributions.replace_one({"_id": answer_id, "version": held["version"]},
                                                            contribution)
        if await self.excluded(marker) or await self.is_erased(scoped):
            await self.answer_contributions.delete_one({"_id": answer_id})
            return False
        return True

    async def erase_dialogue_answers(self, tenant_id: str, participant_id: str, dialogue_id: str, marker: str,
                                     now: datetime) -> int:
        """Retention: the participant's answers to one dialogue expired. A marker for
        that pair (the participant stays) keeps a late answer event out as well."""
        scoped = f"{marker}:{dialogue_id}"
        async with document_lock(self.erased, scoped):
            await self.erased.update_one({"_id": scoped}, {"$setOnInsert": {"erased_at": now}}, upsert=True)
        result = await self.answer_contributions.delete_many(
            {"participant_id": participant_id, "tenant_id": tenant_id, "dialogue_id": dialogue_id})
        return result.deleted_count

    async def is_erased(self, marker: str) -> bool:
        return await self.erased.find_one({"_id": marker}, {"_id": 1}) is not None

    async def is_objected(self, marker: str, tenant_id: str) -> bool:
        return await self.objected.find_one({"_id": marker, "tenant_id": tenant_id}, {"_id": 1}) is not None

    async def excluded(self, marker: str) -> bool:
        """Erased or objected: the participant counts in no figure."""
        return (await self.is_erased(marker)
                or await self.objected.find_one({"_id": marker}, {"_id": 1}) is not None)

    async def contribution(self, tenant_id: str, participant_id: str) -> dict[str, Any] | None:
        return await self.device_contributions.find_one(
            {"_id": participant_id, "tenant_id": tenant_id}, {"platform": 1, "form_factor": 1}
        )

    async def device_counts(self, tenant_id: str) -> dict[tuple[str, str], int]:
        pipeline = [
            {"$match": {"tenant_id": tenant_id}},
            {"$group": {"_id": {"platform": "$platform", "form_factor": "$form_factor"}, "n": {"$sum": 1}}},
        ]
        cursor = await self.device_contributions.aggregate(pipeline)
        return {(row["_id"]["platform"], row["_id"]["form_factor"]): row["n"] async for row in cursor}

    async def erase_participant(self, tenant_id: str, participant_id: str, marker: str, now: datetime) -> int:
        """Remember the erasure as an HMAC marker, then delete the participant's
        contributions; redelivered, it deletes nothing more."""
        return await self._exclude(self.erased, {"erased_at": now}, tenant_id, participant_id, marker)

    async def apply_objection(self, tenant_id: str, participant_id: str, marker: str, now: datetime) -> int:
        """Remember the objection as an HMAC marker, then delete the participant's
        contributions; redelivered, it deletes nothing more."""
        return await self._exclude(self.objected, {"tenant_id": tenant_id, "objected_at": now},
                                   tenant_id, participant_id, marker)

    async def _exclude(self, markers: AsyncCollection, fields: dict[str, Any], tenant_id: str,
                       participant_id: str, marker: str) -> int:
        """Marker first, delete second: a contribution inserted meanwhile finds the
        marker on its second look and removes itself (see :meth:`add_device`)."""
        async with document_lock(markers, marker):
            await markers.update_one({"_id": marker}, {"$setOnInsert": fields}, upsert=True)
        devices = await self.device_contributions.delete_one({"_id": participant_id, "tenant_id": tenant_id})
        answers = await self.answer_contributions.delete_many({"participant_id": participant_id,
                                                               "tenant_id": tenant_id})
        return devices.deleted_count + answers.deleted_count
