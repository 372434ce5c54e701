"""Enrolment's MongoDB collections; nothing else touches them.

- ``tenants``: one per organisation; the API key only as its SHA-256.
- ``codes``: opp codes, ``_id`` is the canonical code.
- ``devices``: ``_id`` is the participant ID; only :data:`domain.DEVICE_FIELDS`.

Claiming a code and recording a device are single-document atomic writes; the
``device-enrolled`` event is written into the device document's outbox by the same
write (see :mod:`tessera_common.outbox`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tessera_common.events import DeviceEnrolled, Topics, TenantRegistered, partition_key
from tessera_common.mongo import document_lock
from tessera_common.outbox import outbox_fields


#: The devices collection's name in the data map (tessera_common.datamap): erasure is
#: confirmed, and a participant's data is exported, under it.
STORE_NAME = "enrolment.devices"


class CodeTaken(Exception):
    """A freshly generated code collided with an existing one (≈2^-49 per code)."""


class EnrolmentStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.tenants = db["tenants"]
        self.codes = db["codes"]
        self.devices = db["devices"]

    async def ensure_indexes(self) -> None:
        await self.codes.create_index([("tenant_id", ASCENDING)])
        await self.devices.create_index([("tenant_id", ASCENDING)])

    # --- tenants ---------------------------------------------------------

    async def add_tenant(self, tenant: dict[str, Any], event: TenantRegistered) -> dict[str, Any]:
        document = {**tenant, **outbox_fields(event, Topics.TENANT_REGISTERED, None)}
        await self.tenants.insert_one(document)
        return document

    async def api_key_hash(self, tenant_id: str) -> str | None:
        tenant = await self.tenants.find_one({"_id": tenant_id}, {"api_key_sha256": 1})
        return tenant["api_key_sha256"] if tenant else None

    # --- codes -----------------------------------------------------------

    async def add_code(self, code: dict[str, Any]) -> None:
        try:
            await self.codes.insert_one(code)
        except DuplicateKeyError:
            raise CodeTaken from None

    async def list_codes(self, tenant_id: str, limit: int, skip: int) -> list[dict[str, Any]]:
        cursor = self.codes.find({"tenant_id": tenant_id}).sort("created_at", ASCENDING).skip(skip).limit(limit)
        return [code async for code in cursor]

    async def revoke_code(self, tenant_id: str, code: str, now: datetime) -> bool:
        async with document_lock(self.codes, code):
            result = await self.codes.update_one(
                {"_id": code, "tenant_id": tenant_id},
                {"$set": {"revoked_at": now}},
            )
        return result.matched_count == 1

    async def claim_code(self, code: str, now: datetime) -> str | None:
        """Take one enrolment from a usable code; returns its tenant, or None.

        The conditions and the count are one atomic update, so two devices can never
        both take a limited code's last place. A limited code counts ``remaining``
        down; an unlimited one (``max_enrolments: null``) is matched by that instead,
        and its ``remaining`` goes negative, meaning nothing. (No projection: FerretDB
        does not implement one on findAndModify; and the lock, because FerretDB's
        findAndModify is not atomic under concurrency: see tessera_common.mongo.)"""
        async with document_lock(self.codes, code):
            claimed = await self.codes.find_one_and_update(
                {
                    "_id": code,
                    "revoked_at": None,
                    "$and": [
                        {"$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]},
                        {"$or": [{"max_enrolments": None}, {"remaining": {"$gt": 0}}]},
                    ],
                },
                {"$inc": {"remaining": -1, "enrolments": 1}},
            )
        return claimed["tenant_id"] if claimed else None

    # --- devices ---------------------------------------------------------

    async def add_device(self, device: dict[str, Any], event: DeviceEnrolled) -> dict[str, Any]:
        document = {**device, **outbox_fields(event, Topics.DEVICE_ENROLLED, partition_key(device["_id"]))}
        await self.devices.insert_one(document)
        return document

    async def device(self, participant_id: str) -> dict[str, Any] | None:
        return await self.devices.find_one({"_id": participant_id}, {"outbox": 0, "outbox_since": 0})

    async def device_facts(self, tenant_id: str, participant_id: str) -> dict[str, Any] | None:
        """The device of this tenant's participant, as the participant may see it: the
        facts of :data:`domain.DEVICE_FIELDS` without the token hash or any outbox.
        Another tenant's participant is as absent as an unknown one."""
        return await self.devices.find_one(
            {"_id": participant_id, "tenant_id": tenant_id},
            {"tenant_id": 1, "platform": 1, "form_factor": 1, "enrolled_at": 1},
        )

    async def touch_device(self, participant_id: str, today: str) -> None:
        async with document_lock(self.devices, participant_id):
            await self.devices.update_one({"_id": participant_id}, {"$set": {"last_used_on": today}})

    async def idle_participants(self, tenant_id: str, idle_since: datetime, limit: int) -> list[str]:
        """Devices last used on a day before ``idle_since``'s (a device from before
        ``last_used_on`` existed counts from its enrolment)."""
        day = idle_since.date().isoformat()
        cursor = self.devices.find(
            {"tenant_id": tenant_id, "$or": [{"last_used_on": {"$lt": day}},
                                              {"last_used_on": None, "enrolled_at": {"$lt": idle_since}}]},
            {"_id": 1},
        ).limit(limit)
        return [d["_id"] async for d in cursor]

    async def erase_device(self, tenant_id: str, participant_id: str) -> int:
        result = await self.devices.delete_one({"_id": participant_id, "tenant_id": tenant_id})
        return result.deleted_count
