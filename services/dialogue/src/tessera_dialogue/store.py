"""The dialogue service's MongoDB collections; nothing else touches them.

- ``tenants``: tenant ID → API key hash (from ``tenant-registered``) and the settings
  this service owns (minimum group size k, personal-data policy, their revision).
- ``dialogues``: one per dialogue, questions embedded; ``version`` grows with every
  change so concurrent edits cannot overwrite each other; ``has_answers`` is set once,
  by the first answer, and from then on the questions are frozen; ``closed_at`` says
  since when it takes no answers, which the answers' retention counts from.
- ``answers``: one per participant and question (one per idea), ``_id`` derived from
  both (:func:`domain.answer_id_for`), so a retried create lands on the same document.
  A withdrawn answer stays as a tombstone without any value, because its change event
  waits in its outbox; erasure deletes tombstones too.
- ``erased``: erased participants as HMAC markers only (never the raw ID), so an answer
  racing an erasure is deleted again rather than surviving it.

Every write is a single-document atomic write that carries its event in the
document's outbox (see :mod:`tessera_common.outbox`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tessera_common.events import EventEnvelope
from tessera_common.mongo import document_lock
from tessera_common.outbox import FIELD, SINCE, outbox_fields, outbox_update

#: The answers collection's name in the data map (tessera_common.datamap): erasure is
#: confirmed, and a participant's answers are exported, under it.
STORE_NAME = "dialogue.answers"

#: Fields a reader of an answer never needs (and a tenant must never see).
HIDDEN = {FIELD: 0, SINCE: 0, "fingerprint": 0, "idempotency_key": 0}


class AnswerExists(Exception):
    """Another request created this answer first; re-read and apply as a change."""


class DialogueStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.tenants = db["tenants"]
        self.dialogues = db["dialogues"]
        self.answers = db["answers"]
        self.erased = db["erased"]

    async def ensure_indexes(self) -> None:
        await self.dialogues.create_index([("tenant_id", ASCENDING), ("status", ASCENDING)])
        await self.answers.create_index([("dialogue_id", ASCENDING), ("question_id", ASCENDING)])
        await self.answers.create_index([("participant_id", ASCENDING)])

    # --- tenants ---------------------------------------------------------

    async def register_tenant(self, tenant_id: str, api_key_sha256: str, defaults: dict[str, Any]) -> None:
        """Idempotent: a redelivered registration sets the same hash and leaves
        settings the tenant has since changed alone."""
        async with document_lock(self.tenants, tenant_id):
            await self.tenants.update_one(
                {"_id": tenant_id},
                {"$set": {"api_key_sha256": api_key_sha256}, "$setOnInsert": {**defaults, "revision": 0}},
                upsert=True,
            )

    async def api_key_hash(self, tenant_id: str) -> str | None:
        tenant = await self.tenants.find_one({"_id": tenant_id}, {"api_key_sha256": 1})
        return tenant.get("api_key_sha256") if tenant else None

    async def tenant(self, tenant_id: str) -> dict[str, Any] | None:
        return await self.tenants.find_one({"_id": tenant_id}, {FIELD: 0, SINCE: 0, "api_key_sha256": 0})

    async def change_settings(
        self, tenant_id: str, revision: int, settings: dict[str, Any], event: EventEnvelope, topic: str
    ) -> dict[str, Any] | None:
        """Apply settings read at ``revision``; None if someone changed them since.
        The event is keyed by tenant, so one tenant's changes keep their order."""
        outbox_set, relay_view = outbox_update(tenant_id, event, topic, tenant_id.encode())
        async with document_lock(self.tenants, tenant_id):
            result = await self.tenants.update_one(
                {"_id": tenant_id, "revision": revision},
                {"$set": {**settings, **outbox_set}, "$inc": {"revision": 1}},
            )
        return relay_view if result.modified_count == 1 else None

    # --- dialogues -------------------------------------------------------

    async def add_dialogue(self, dialogue: dict[str, Any], event: EventEnvelope, topic: str) -> dict[str, Any]:
        """The new dialogue with its ``dialogue-changed`` event in its outbox (one write);
        returns what the relay publishes."""
        document = {**dialogue, **outbox_fields(event, topic, dialogue["_id"].encode())}
        await self.dialogues.insert_one(document)
        return document

    async def dialogue(self, tenant_id: str, dialogue_id: str) -> dict[str, Any] | None:
        """A dialogue of this tenant; another tenant's is as absent as a missing one."""
        found = await self.dialogues.find_one({"_id": dialogue_id})
        return found if found is not None and found["tenant_id"] == tenant_id else None

    async def list_dialogues(
        self, tenant_id: str, statuses: list[str], limit: int, skip: int
    ) -> list[dict[str, Any]]:
        cursor = (
            self.dialogues.find({"tenant_id": tenant_id, "status": {"$in": statuses}})
            .sort([("created_at", DESCENDING), ("_id", ASCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [d async for d in cursor]

    async def dialogues_by_id(self, tenant_id: str, dialogue_ids: list[str]) -> dict[str, dict[str, Any]]:
        cursor = self.dialogues.find({"_id": {"$in": dialogue_ids}, "tenant_id": tenant_id})
        return {d["_id"]: d async for d in cursor}

    async def closed_dialogues(self, tenant_id: str, closed_before: datetime) -> list[dict[str, Any]]:
        """Closed and archived dialogues that stopped taking answers before
        ``closed_before``. One closed before ``closed_at`` was recorded counts from its
        last change, which is never earlier than its closing: retention waits longer
        for it rather than erasing early."""
        cursor = self.dialogues.find(
            {
                "tenant_id": tenant_id,
                "status": {"$in": ["closed", "archived"]},
                "$or": [
                    {"closed_at": {"$lt": closed_before}},
                    {"closed_at": {"$exists": False}, "updated_at": {"$lt": closed_before}},
                ],
            },
            {"closed_at": 1, "updated_at": 1},
        ).sort([("_id", ASCENDING)])
        return [{"dialogue_id": d["_id"], "closed_at": d.get("closed_at") or d["updated_at"]} async for d in cursor]

    async def update_dialogue(
        self, dialogue_id: str, version: int, changes: dict[str, Any], event: EventEnvelope, topic: str, *,
        questions_frozen_if_answered: bool,
    ) -> dict[str, Any] | None:
        """Apply ``changes`` to the dialogue as read at ``version``, with the event that
        describes the result in the same write; None if it changed since. With
        ``questions_frozen_if_answered`` the write also fails if an answer arrived since
        the read, so an edit of the questions can never slip under a first answer."""
        condition: dict[str, Any] = {"_id": dialogue_id, "version": version}
        if questions_frozen_if_answered:
            condition["has_answers"] = False
        outbox_set, relay_view = outbox_update(dialogue_id, event, topic, dialogue_id.encode())
        async with document_lock(self.dialogues, dialogue_id):
            result = await self.dialogues.update_one(condition, {"$set": {**changes, **outbox_set},
                                                                 "$inc": {"version": 1}})
        return relay_view if result.modified_count == 1 else None

    async def mark_answered(self, dialogue_id: str, version: int) -> bool:
        """The first answer freezes the questions: only if they are still those of
        ``version`` (the ones the answer was validated against)."""
        async with document_lock(self.dialogues, dialogue_id):
            result = await self.dialogues.update_one(
                {"_id": dialogue_id, "version": version}, {"$set": {"has_answers": True}}
            )
        return result.matched_count == 1

    # --- answers ---------------------------------------------------------

    async def answer(self, answer_id: str) -> dict[str, Any] | None:
        return await self.answers.find_one({"_id": answer_id}, {FIELD: 0, SINCE: 0})

    async def insert_answer(
        self, answer: dict[str, Any], event: EventEnvelope, topic: str, key: bytes
    ) -> dict[str, Any]:
        document = {**answer, **outbox_fields(event, topic, key)}
        try:
            await self.answers.insert_one(document)
        except DuplicateKeyError:
            raise AnswerExists from None
        return document

    async def change_answer(
        self,
        answer_id: str,
        version: int,
        set_fields: dict[str, Any],
        unset_fields: list[str],
        event: EventEnvelope,
        topic: str,
        key: bytes,
    ) -> dict[str, Any] | None:
        """Apply a change to the answer as read at ``version``; None if it changed since."""
        outbox_set, relay_view = outbox_update(answer_id, event, topic, key)
        update: dict[str, Any] = {"$set": {**set_fields, **outbox_set}, "$inc": {"version": 1}}
        if unset_fields:
            update["$unset"] = dict.fromkeys(unset_fields, "")
        async with document_lock(self.answers, answer_id):
            result = await self.answers.update_one({"_id": answer_id, "version": version}, update)
        return relay_view if result.modified_count == 1 else None

    async def answers_of_participant(self, tenant_id: str, participant_id: str) -> list[dict[str, Any]]:
        cursor = self.answers.find(
            {"participant_id": participant_id, "tenant_id": tenant_id, "withdrawn_at": None}, HIDDEN
        ).sort([("submitted_at", ASCENDING), ("_id", ASCENDING)])
        return [a async for a in cursor]

    async def answers_to_question(self, dialogue_id: str, question_id: str) -> list[dict[str, Any]]:
        cursor = self.answers.find(
            {"dialogue_id": dialogue_id, "question_id": question_id, "withdrawn_at": None},
            {"participant_id": 1, "choices": 1, "scale_value": 1, "text": 1, "findings": 1},
        )
        return [a async for a in cursor]

    async def answers_of_dialogue(
        self, tenant_id: str, dialogue_id: str, question_id: str | None, participant_id: str | None,
        limit: int, skip: int,
    ) -> list[dict[str, Any]]:
        condition: dict[str, Any] = {"dialogue_id": dialogue_id, "tenant_id": tenant_id, "withdrawn_at": None}
        if question_id is not None:
            condition["question_id"] = question_id
        if participant_id is not None:
            condition["participant_id"] = participant_id
        cursor = (
            self.answers.find(condition, HIDDEN)
            .sort([("submitted_at", ASCENDING), ("_id", ASCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [a async for a in cursor]

    async def participants_of_dialogue(self, tenant_id: str, dialogue_id: str, limit: int) -> list[str]:
        """Participants who still have answer documents in the dialogue, withdrawn
        tombstones included: retention must erase those too."""
        cursor = await self.answers.aggregate([
            {"$match": {"tenant_id": tenant_id, "dialogue_id": dialogue_id}},
            {"$group": {"_id": "$participant_id"}},
            {"$sort": {"_id": 1}},
            {"$limit": limit},
        ])
        return [row["_id"] async for row in cursor]

    async def delete_answer(self, answer_id: str) -> None:
        await self.answers.delete_one({"_id": answer_id})

    # --- erasure ---------------------------------------------------------

    async def erase_participant(self, tenant_id: str, participant_id: str, marker: str, now: datetime) -> int:
        """Remember the erasure (as a marker) first, then delete every answer and
        tombstone of the participant, with any event still waiting in their outboxes.
        In that order, an answer written while this runs sees the marker afterwards
        and deletes itself (see ``api.py``); redelivered, this deletes nothing more."""
        async with document_lock(self.erased, marker):
            await self.erased.update_one({"_id": marker}, {"$setOnInsert": {"erased_at": now}}, upsert=True)
        result = await self.answers.delete_many({"participant_id": participant_id, "tenant_id": tenant_id})
        return result.deleted_count

    async def erase_answers_in_dialogue(self, tenant_id: str, participant_id: str, dialogue_id: str) -> int:
        """Delete the participant's answers and tombstones in one dialogue (retention
        after it closed), events waiting in their outboxes too. No erased marker: the
        participant stays, and may still answer other dialogues."""
        result = await self.answers.delete_many(
            {"participant_id": participant_id, "tenant_id": tenant_id, "dialogue_id": dialogue_id}
        )
        return result.deleted_count

    async def is_erased(self, marker: str) -> bool:
        return await self.erased.find_one({"_id": marker}, {"_id": 1}) is not None
