"""The rights service's MongoDB collections; nothing else touches them.

- ``data_keys``: ``_id`` is the participant ID; the key only wrapped under the master
  key (:mod:`.domain`), never in plaintext.
- ``erased_participants``: ``_id`` is the erased marker (an HMAC of the participant ID,
  :func:`tessera_common.secrets.erased_marker`), never the raw ID.
- ``tenants``: tenant ID → API key hash (from ``tenant-registered``) and retention rules.
- ``requests``: one per rights request, with its deadline and per-store progress, and
  the events it still has to publish (in-document outbox). The raw participant ID is
  kept (retries and access need it) until the participant's erasure completes, which
  removes it from all their requests; ``subject`` (the marker) stays.
- ``audit`` and ``audit_heads``: the hash-chained trail, ``_id`` ``<tenant>:<seq>`` so
  two appends of one position cannot both land, and per tenant the last seq and hash,
  so that removing the newest entries is detected too.

Every write is one single-document write; ``_id`` uniqueness is what makes concurrent
creates of one participant's key end with a single key, and one audit position hold
one entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tessera_common.mongo import document_lock
from tessera_common.outbox import FIELD, SINCE
from tessera_rights.domain import GENESIS_HASH, WrappedDataKey, chain_entry

HIDDEN = {FIELD: 0, SINCE: 0, "status_secret_sha256": 0}


class RightsStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.data_keys = db["data_keys"]
        self.erased = db["erased_participants"]
        self.tenants = db["tenants"]
        self.requests = db["requests"]
        self.audit = db["audit"]
        self.audit_heads = db["audit_heads"]

    async def ensure_indexes(self) -> None:
        await self.requests.create_index([("tenant_id", ASCENDING), ("open_rank", ASCENDING),
                                          ("deadline", ASCENDING)])
        await self.requests.create_index([("status", ASCENDING), ("next_retry_at", ASCENDING)])
        await self.audit.create_index([("tenant_id", ASCENDING), ("seq", ASCENDING)])

    # --- tenants ---------------------------------------------------------

    async def register_tenant(self, tenant_id: str, api_key_sha256: str) -> None:
        async with document_lock(self.tenants, tenant_id):
            await self.tenants.update_one({"_id": tenant_id}, {"$set": {"api_key_sha256": api_key_sha256}},
                                          upsert=True)

    async def api_key_hash(self, tenant_id: str) -> str | None:
        tenant = await self.tenants.find_one({"_id": tenant_id}, {"api_key_sha256": 1})
        return tenant.get("api_key_sha256") if tenant else None

    async def retention(self, tenant_id: str) -> dict[str, Any]:
        tenant = await self.tenants.find_one({"_id": tenant_id}, {"retention": 1})
        return (tenant or {}).get("retention") or {}

    async def set_retention(self, tenant_id: str, rules: dict[str, Any]) -> None:
        async with document_lock(self.tenants, tenant_id):
            await self.tenants.update_one({"_id": tenant_id}, {"$set": {"retention": rules}})

    async def tenants_with_retention(self) -> list[dict[str, Any]]:
        cursor = self.tenants.find({"retention": {"$ne": None}}, {"retention": 1})
        return [t async for t in cursor if any(v is not None for v in (t.get("retention") or {}).values())]

    # --- requests --------------------------------------------------------

    async def add_request(self, request: dict[str, Any]) -> None:
        await self.requests.insert_one(request)

    async def request(self, request_id: str, *, with_secret: bool = False) -> dict[str, Any] | None:
        hidden = {FIELD: 0, SINCE: 0} if with_secret else HIDDEN
        return await self.requests.find_one({"_id": request_id}, hidden)

    async def open_request(self, tenant_id: str, kind: str, subject: str, scope: str | None) -> dict[str, Any] | None:
        """The participant's open request of this kind and scope, if any: a second
        erasure while one runs returns the first rather than starting another."""
        return await self.requests.find_one(
            {"tenant_id": tenant_id, "subject": subject, "kind": kind, "status": "in_progress", "scope": scope},
            HIDDEN,
        )

    async def list_requests(self, tenant_id: str, condition: dict[str, Any], limit: int, skip: int,
                            ) -> list[dict[str, Any]]:
        """Open requests first, nearest deadline first (so overdue, then at risk), then
        closed ones, newest first."""
        cursor = (
            self.requests.find({"tenant_id": tenant_id, **condition}, HIDDEN)
            .sort([("open_rank", ASCENDING), ("deadline", ASCENDING), ("received_at", DESCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [r async for r in cursor]

    async def requests_of(self, tenant_id: str, subject: str, limit: int = 100) -> list[dict[str, Any]]:
        cursor = self.requests.find({"tenant_id": tenant_id, "subject": subject}, HIDDEN).sort(
            "received_at", DESCENDING).limit(limit)
        return [r async for r in cursor]

    async def forget_participant(self, tenant_id: str, subject: str) -> None:
        """After an erasure: no request of the participant keeps their raw ID (the
        marker stays, so the requests are still theirs to list, by status secret)."""
        for request in await self.requests_of(tenant_id, subject, limit=10_000):
            if request.get("participant_id") is not None:
                await self.update_request(request["_id"], {}, {"$unset": {"participant_id": ""}})

    async def update_request(self, request_id: str, condition: dict[str, Any], update: dict[str, Any]) -> bool:
        """One conditional write to a request; False if the condition no longer holds."""
        async with document_lock(self.requests, request_id):
            result = await self.requests.update_one({"_id": request_id, **condition}, update)
        return result.modified_count == 1

    async def due_retries(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        cursor = self.requests.find(
            {"status": "in_progress", "next_retry_at": {"$lte": now}}, {FIELD: 0}
        ).limit(limit)
        return [r async for r in cursor]

    # --- the audit trail -------------------------------------------------

    async def append_audit(self, tenant_id: str, record: dict[str, Any]) -> dict[str, Any]:
        """Append ``record`` to the tenant's chain and return the entry.

        The position's ``_id`` is unique, so if another writer took it, read the head
        again and retry; the head is moved after the entry is written (a crash in
        between leaves an entry past the head, which the next append repairs)."""
        async with document_lock(self.audit_heads, tenant_id):
            for _ in range(20):
                seq, prev_hash = await self._chain_end(tenant_id)
                entry = chain_entry(prev_hash, seq + 1, record)
                try:
                    await self.audit.insert_one({"_id": f"{tenant_id}:{seq + 1:012d}", "tenant_id": tenant_id,
                                                 **entry})
                except DuplicateKeyError:
                    continue
                await self.audit_heads.update_one({"_id": tenant_id},
                                                  {"$set": {"seq": seq + 1, "hash": entry["hash"]}}, upsert=True)
                return entry
        raise RuntimeError("could not append to the audit chain")

    async def _chain_end(self, tenant_id: str) -> tuple[int, str]:
        head = await self.audit_heads.find_one({"_id": tenant_id})
        seq, last_hash = (head["seq"], head["hash"]) if head else (0, GENESIS_HASH)
        # An entry written past the head by an append that crashed before moving it.
        while (after := await self.audit.find_one({"_id": f"{tenant_id}:{seq + 1:012d}"})) is not None:
            seq, last_hash = after["seq"], after["hash"]
        return seq, last_hash

    async def audit_head(self, tenant_id: str) -> tuple[int, str] | None:
        head = await self.audit_heads.find_one({"_id": tenant_id})
        return (head["seq"], head["hash"]) if head else None

    async def audit_entries(self, tenant_id: str, after_seq: int = 0, limit: int | None = None,
                            ) -> list[dict[str, Any]]:
        cursor = self.audit.find({"tenant_id": tenant_id, "seq": {"$gt": after_seq}}, {"_id": 0, "tenant_id": 0}
                                 ).sort("seq", ASCENDING)
        if limit is not None:
            cursor = cursor.limit(limit)
        return [e async for e in cursor]

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

    async def destroy_data_key(self, marker: str, participant_id: str, now: datetime) -> int:
        """The first step of an erasure: the marker first, so that nothing hands the key
        out again even if the delete that follows is interrupted (and retried)."""
        await self.mark_erased(marker, now)
        result = await self.data_keys.delete_one({"_id": participant_id})
        return result.deleted_count

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
