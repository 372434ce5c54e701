"""The dialogue service's PostgreSQL tables (``migrations/``); nothing else touches them.

- ``tenants``: tenant ID → API key hash (from ``tenant-registered``) and the settings
  this service owns (minimum group size k, personal-data policy, their revision).
- ``dialogues``: one per dialogue, its questions as one jsonb value; ``version`` grows
  with every change, so concurrent edits cannot overwrite each other; ``has_answers``
  is set by the first answer, in that answer's transaction, and from then on the
  questions are frozen; ``closed_at`` says since when it takes no answers, which the
  answers' retention counts from.
- ``answers``: one per participant and question (one per idea), ``answer_id`` derived
  from both (:func:`domain.answer_id_for`), so a retried create meets the same row.
  A withdrawn answer stays as a tombstone without any value: its ID comes back if the
  participant answers again, and its version must go on from where it was, because
  consumers keep the highest version of each answer. Erasure deletes tombstones too.
- ``erased``: erased participants as HMAC markers only (never the raw ID).

Every method is one unit of work scoped to its tenant by row-level security; a change
and its events commit together through the outbox (:mod:`tessera_common.outbox`).
Concurrent writers (several replicas) are serialised by the database alone: conditional
updates on ``version``/``revision``, ``INSERT ... ON CONFLICT``, and a per-participant
transaction lock shared by answer writes and erasure.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from tessera_common.events import EventEnvelope, Topics, partition_key
from tessera_common.tenant_access import TenantAccessStore
from tessera_common.postgres import Database, UnitOfWork

#: The answers table's name in the data map (tessera_common.datamap): erasure is
#: confirmed, and a participant's answers are exported, under it.
STORE_NAME = "dialogue.answers"

#: What a reader of an answer gets: everything but how a replay is recognised
#: (idempotency key, fingerprint), which a tenant must never see.
ANSWER_COLUMNS = (
    "answer_id, tenant_id, participant_id, dialogue_id, question_id, kind, text_key_id, text_sealed, choices,"
    " scale_value,"
    " screening_action, findings, screening_kinds, version, submitted_at, updated_at, withdrawn_at"
)
DIALOGUE_COLUMNS = (
    "dialogue_id, tenant_id, title, intro, status, opens_at, closes_at, questions, has_answers, version,"
    " created_at, updated_at, closed_at"
)
#: The dialogue columns an edit or a move may set (names come from here, never from input).
DIALOGUE_CHANGEABLE = frozenset({"title", "intro", "opens_at", "closes_at", "questions", "status", "updated_at",
                                 "closed_at"})
#: The answer columns a submission writes.
#: Free text only sealed (text_key_id, text_sealed): see migrations/0002_sealed_text.sql.
ANSWER_WRITTEN = ("kind", "text_key_id", "text_sealed", "choices", "scale_value", "screening_action", "findings",
                  "screening_kinds", "idempotency_key", "fingerprint", "updated_at")


class ParticipantErasedError(Exception):
    """The participant was erased: nothing of theirs may be written again."""

_CURRENT_ON_QUESTION = (
    "SELECT count(*) FROM answers WHERE tenant_id = $1 AND dialogue_id = $2 AND question_id = $3"
    " AND participant_id = $4 AND withdrawn_at IS NULL"
)


class TooManyIdeas(Exception):
    """The participant already has as many ideas on the prompt as it takes."""


class _Stale(Exception):
    """What a write was based on changed since it was read: roll back, re-read."""


def _columns(listed: str) -> list[str]:
    return [c.strip() for c in listed.split(",")]


#: (prefix, columns) of what answer_context reads: the dialogue, the answer, the tenant.
_CONTEXT_PARTS = (
    ("d_", _columns(DIALOGUE_COLUMNS)),
    ("a_", [*_columns(ANSWER_COLUMNS), "idempotency_key", "fingerprint"]),
    ("t_", ["tenant_id", "min_group_size", "pii_policy", "revision"]),
)
_ANSWER_CONTEXT = (
    "SELECT " + ", ".join(f"{prefix[0]}.{c} AS {prefix}{c}" for prefix, columns in _CONTEXT_PARTS for c in columns)
    + " FROM (SELECT $1::text AS tenant_id) k"
    " LEFT JOIN dialogues d ON d.tenant_id = k.tenant_id AND d.dialogue_id = $2"
    " LEFT JOIN answers a ON a.tenant_id = k.tenant_id AND a.answer_id = $3"
    " LEFT JOIN tenants t ON t.tenant_id = k.tenant_id"
)


def _part(row: asyncpg.Record, prefix: str, columns: list[str]) -> dict[str, Any] | None:
    """One table's columns of a joined row, or None where the join found no row (its
    first column, the key, is null)."""
    if row[prefix + columns[0]] is None:
        return None
    return {c: row[prefix + c] for c in columns}


def _with_id(row: asyncpg.Record | dict[str, Any], id_column: str) -> dict[str, Any]:
    record = dict(row)
    record["_id"] = record.pop(id_column)
    return record


def _answer(row: asyncpg.Record) -> dict[str, Any]:
    return _with_id(row, "answer_id")


def _dialogue(row: asyncpg.Record) -> dict[str, Any]:
    return _with_id(row, "dialogue_id")


async def _tell_tenant(uow: UnitOfWork, event: EventEnvelope | None, key: bytes, aggregatetype: str,
                       aggregateid: str) -> None:
    """The tenant's copy of a change, on its own topic, in the change's transaction
    (an answer's under the same aggregate type and key as the internal event, so a
    participant's erasure deletes both while they wait in the outbox)."""
    if event is not None:
        await uow.publish(event, Topics.for_tenant(event.tenant_id), key, aggregatetype=aggregatetype,
                          aggregateid=aggregateid)


def _deleted(status: str) -> int:
    return int(status.split()[-1])


class DialogueStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        #: which keys open the tenant's routes (from the gateway's ``tenant-access-changed``)
        self.access = TenantAccessStore(database, "dialogue")

    def unit(self, tenant_id: str | None) -> UnitOfWork:
        return UnitOfWork(self.database, tenant_id)

    # --- tenants ---------------------------------------------------------

    async def register_tenant(self, tenant_id: str, api_key_sha256: str, defaults: dict[str, Any],
                              event_id: str, consumer: str) -> None:
        """Idempotent: a redelivered registration changes nothing, and settings the
        tenant has changed since are never reset to the defaults."""
        async with self.unit(tenant_id) as uow:
            if not await uow.first_delivery(consumer, event_id):
                return
            await uow.connection.execute(
                "INSERT INTO tenants (tenant_id, api_key_sha256, min_group_size, pii_policy, revision)"
                " VALUES ($1, $2, $3, $4, 0)"
                " ON CONFLICT (tenant_id) DO UPDATE SET api_key_sha256 = EXCLUDED.api_key_sha256",
                tenant_id, api_key_sha256, defaults["min_group_size"], defaults["pii_policy"],
            )


    async def tenant(self, tenant_id: str) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT tenant_id, min_group_size, pii_policy, revision FROM tenants WHERE tenant_id = $1", tenant_id
            )
        return _with_id(row, "tenant_id") if row is not None else None

    async def change_settings(
        self, tenant_id: str, revision: int, settings: dict[str, Any], event: EventEnvelope, topic: str
    ) -> bool:
        """Apply settings read at ``revision`` with their event; False if someone changed
        them since. The event is keyed by tenant, so one tenant's changes keep their order."""
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "UPDATE tenants SET min_group_size = $3, pii_policy = $4, revision = revision + 1"
                " WHERE tenant_id = $1 AND revision = $2",
                tenant_id, revision, settings["min_group_size"], settings["pii_policy"],
            )
            if status != "UPDATE 1":
                return False
            await uow.publish(event, topic, tenant_id.encode(), aggregatetype="tenant")
        return True

    # --- dialogues -------------------------------------------------------

    async def add_dialogue(self, dialogue: dict[str, Any], event: EventEnvelope, topic: str,
                           tenant_event: EventEnvelope | None = None) -> None:
        """The new dialogue with its ``dialogue-changed`` event (and the tenant's), in one
        transaction."""
        async with self.unit(dialogue["tenant_id"]) as uow:
            await uow.connection.execute(
                f"INSERT INTO dialogues ({DIALOGUE_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                dialogue["_id"], dialogue["tenant_id"], dialogue["title"], dialogue["intro"], dialogue["status"],
                dialogue.get("opens_at"), dialogue.get("closes_at"), dialogue["questions"], dialogue["has_answers"],
                dialogue["version"], dialogue["created_at"], dialogue["updated_at"], dialogue.get("closed_at"),
            )
            await uow.publish(event, topic, dialogue["_id"].encode(), aggregatetype="dialogue")
            await _tell_tenant(uow, tenant_event, dialogue["_id"].encode(), "dialogue", dialogue["_id"])

    async def dialogue(self, tenant_id: str, dialogue_id: str) -> dict[str, Any] | None:
        """A dialogue of this tenant; another tenant's is as absent as a missing one."""
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                f"SELECT {DIALOGUE_COLUMNS} FROM dialogues WHERE tenant_id = $1 AND dialogue_id = $2",
                tenant_id, dialogue_id,
            )
        return _dialogue(row) if row is not None else None

    async def list_dialogues(
        self, tenant_id: str, statuses: list[str], limit: int, skip: int
    ) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                f"SELECT {DIALOGUE_COLUMNS} FROM dialogues WHERE tenant_id = $1 AND status = ANY($2::text[])"
                " ORDER BY created_at DESC, dialogue_id LIMIT $3 OFFSET $4",
                tenant_id, statuses, limit, skip,
            )
        return [_dialogue(row) for row in rows]

    async def dialogues_by_id(self, tenant_id: str, dialogue_ids: list[str]) -> dict[str, dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                f"SELECT {DIALOGUE_COLUMNS} FROM dialogues WHERE tenant_id = $1 AND dialogue_id = ANY($2::text[])",
                tenant_id, dialogue_ids,
            )
        return {row["dialogue_id"]: _dialogue(row) for row in rows}

    async def closed_dialogues(self, tenant_id: str, closed_before: datetime) -> list[dict[str, Any]]:
        """Closed and archived dialogues that stopped taking answers before
        ``closed_before``. One without ``closed_at`` (carried over from before it was
        recorded) counts from its last change, which is never earlier than its
        closing: retention waits longer for it rather than erasing early."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT dialogue_id, coalesce(closed_at, updated_at) AS closed_at FROM dialogues"
                " WHERE tenant_id = $1 AND status IN ('closed', 'archived')"
                " AND coalesce(closed_at, updated_at) < $2 ORDER BY dialogue_id",
                tenant_id, closed_before,
            )
        return [dict(row) for row in rows]

    async def update_dialogue(
        self, tenant_id: str, dialogue_id: str, version: int, changes: dict[str, Any], event: EventEnvelope,
        topic: str, *, questions_frozen_if_answered: bool, tenant_event: EventEnvelope | None = None,
    ) -> bool:
        """Apply ``changes`` to the dialogue as read at ``version``, with the event that
        describes the result; False if it changed since. With
        ``questions_frozen_if_answered`` the update also requires ``has_answers`` to be
        false when it runs: a first answer sets it in its own transaction while holding
        the row, so whichever commits first, the other's condition sees it (PostgreSQL
        re-checks an UPDATE's WHERE against the row a concurrent commit left), and an
        edit of the questions can never slip under a first answer, on any replica."""
        unknown = set(changes) - DIALOGUE_CHANGEABLE
        if unknown:
            raise ValueError(f"not a changeable dialogue column: {sorted(unknown)}")
        columns = sorted(changes)
        assignments = ", ".join(f"{column} = ${i + 4}" for i, column in enumerate(columns))
        frozen = " AND NOT has_answers" if questions_frozen_if_answered else ""
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                f"UPDATE dialogues SET {assignments}, version = version + 1"
                f" WHERE tenant_id = $1 AND dialogue_id = $2 AND version = $3{frozen}",
                tenant_id, dialogue_id, version, *(changes[column] for column in columns),
            )
            if status != "UPDATE 1":
                return False
            await uow.publish(event, topic, dialogue_id.encode(), aggregatetype="dialogue")
            await _tell_tenant(uow, tenant_event, dialogue_id.encode(), "dialogue", dialogue_id)
        return True

    # --- answers ---------------------------------------------------------

    async def answer_context(
        self, tenant_id: str, dialogue_id: str, answer_id: str | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
        """What an answer is checked against before it is written, in one unit of work:
        the dialogue, the answer as it stands (if any) and the tenant's settings. Every
        answer reads these: one statement (one snapshot, one round trip) with each part's
        columns under its own prefix.
        The write re-checks what matters (versions) in its own transaction."""
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(_ANSWER_CONTEXT, tenant_id, dialogue_id, answer_id)
        dialogue, answer, tenant = (_part(row, prefix, columns) for prefix, columns in _CONTEXT_PARTS)
        return (_dialogue(dialogue) if dialogue is not None else None,
                _answer(answer) if answer is not None else None,
                _with_id(tenant, "tenant_id") if tenant is not None else None)

    async def answer(self, tenant_id: str, answer_id: str) -> dict[str, Any] | None:
        """An answer of this tenant (a tombstone too), with what recognises a replay."""
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                f"SELECT {ANSWER_COLUMNS}, idempotency_key, fingerprint FROM answers"
                " WHERE tenant_id = $1 AND answer_id = $2",
                tenant_id, answer_id,
            )
        return _answer(row) if row is not None else None

    async def save_answer(
        self, answer: dict[str, Any], *, expected_version: int | None, marker: str,
        freeze_dialogue_at: int | None, event: EventEnvelope, topic: str, max_per_question: int | None = None,
        tenant_event: EventEnvelope | None = None,
    ) -> bool:
        """Create (``expected_version`` None) or replace the answer as read at
        ``expected_version``, with its event, in one transaction; False if what the
        write was based on changed since (the caller re-reads and decides again).

        - Under the participant's lock, the erasure marker is checked first: an
          erasure either committed before (then this raises
          :class:`ParticipantErasedError`) or waits for this commit and deletes what
          it wrote.
        - ``freeze_dialogue_at``: this may be the dialogue's first answer, validated
          against the dialogue at that version; the dialogue is marked as answered
          only if it is still at that version, in this same transaction.
        - ``max_per_question``: ideas; a new one only while the participant has fewer
          current ones on the question (counted under the participant's lock, so two
          replicas cannot both add the last one).
        """
        tenant_id, participant_id = answer["tenant_id"], answer["participant_id"]
        try:
            async with self.unit(tenant_id) as uow:
                connection = uow.connection
                await self._lock_participant(connection, tenant_id, participant_id)
                if await connection.fetchval(
                    "SELECT 1 FROM erased WHERE tenant_id = $1 AND marker = $2", tenant_id, marker
                ):
                    raise ParticipantErasedError
                if freeze_dialogue_at is not None:
                    status = await connection.execute(
                        "UPDATE dialogues SET has_answers = true"
                        " WHERE tenant_id = $1 AND dialogue_id = $2 AND version = $3",
                        tenant_id, answer["dialogue_id"], freeze_dialogue_at,
                    )
                    if status != "UPDATE 1":
                        raise _Stale
                if expected_version is None:
                    if max_per_question is not None and await connection.fetchval(
                        _CURRENT_ON_QUESTION, tenant_id, answer["dialogue_id"], answer["question_id"], participant_id,
                    ) >= max_per_question:
                        raise TooManyIdeas
                    inserted = await connection.fetchval(
                        "INSERT INTO answers (tenant_id, answer_id, participant_id, dialogue_id, question_id,"
                        " version, submitted_at, " + ", ".join(ANSWER_WRITTEN) + ")"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
                        " ON CONFLICT (tenant_id, answer_id) DO NOTHING RETURNING 1",
                        tenant_id, answer["_id"], participant_id, answer["dialogue_id"], answer["question_id"],
                        answer["version"], answer["submitted_at"], *(answer[c] for c in ANSWER_WRITTEN),
                    )
                    if inserted is None:
                        raise _Stale  # another request created it first
                else:
                    assignments = ", ".join(f"{c} = ${i + 5}" for i, c in enumerate(ANSWER_WRITTEN))
                    status = await connection.execute(
                        f"UPDATE answers SET {assignments}, text = NULL, version = $4, withdrawn_at = NULL"
                        " WHERE tenant_id = $1 AND answer_id = $2 AND version = $3 AND participant_id = $"
                        f"{len(ANSWER_WRITTEN) + 5}",
                        tenant_id, answer["_id"], expected_version, expected_version + 1,
                        *(answer[c] for c in ANSWER_WRITTEN), participant_id,
                    )
                    if status != "UPDATE 1":
                        raise _Stale
                await uow.publish(event, topic, partition_key(participant_id), aggregatetype="answer",
                                  aggregateid=answer["_id"])
                await _tell_tenant(uow, tenant_event, partition_key(participant_id), "answer", answer["_id"])
        except _Stale:
            return False
        return True

    async def withdraw_answer(
        self, tenant_id: str, answer_id: str, version: int, now: datetime, event: EventEnvelope,
        tenant_event: EventEnvelope | None = None,
    ) -> bool:
        """Leave a tombstone of the answer as read at ``version`` (its value, flags and
        replay key cleared) with its ``answer-changed`` event; False if it changed since.
        An answer deleted by an erasure meanwhile stays deleted: there is no row left
        to update."""
        async with self.unit(tenant_id) as uow:
            participant_id = await uow.connection.fetchval(
                "UPDATE answers SET withdrawn_at = $4, updated_at = $4, version = version + 1, text_key_id = NULL,"
                " text_sealed = NULL,"
                " choices = '{}', scale_value = NULL, screening_action = 'none', findings = '[]'::jsonb,"
                " screening_kinds = '{}', idempotency_key = NULL, fingerprint = NULL"
                " WHERE tenant_id = $1 AND answer_id = $2 AND version = $3 AND withdrawn_at IS NULL"
                " RETURNING participant_id",
                tenant_id, answer_id, version, now,
            )
            if participant_id is None:
                return False
            await uow.publish(event, Topics.ANSWER_CHANGED, partition_key(participant_id), aggregatetype="answer",
                              aggregateid=answer_id)
            await _tell_tenant(uow, tenant_event, partition_key(participant_id), "answer", answer_id)
        return True

    async def ideas_of(self, tenant_id: str, participant_id: str, dialogue_id: str, question_id: str) -> int:
        """The participant's current answers to one question (several only for ideas)."""
        async with self.unit(tenant_id) as uow:
            return await uow.connection.fetchval(_CURRENT_ON_QUESTION, tenant_id, dialogue_id, question_id,
                                                 participant_id)

    async def answers_of_participant(self, tenant_id: str, participant_id: str) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                f"SELECT {ANSWER_COLUMNS} FROM answers WHERE tenant_id = $1 AND participant_id = $2"
                " AND withdrawn_at IS NULL ORDER BY submitted_at, answer_id",
                tenant_id, participant_id,
            )
        return [_answer(row) for row in rows]

    async def answers_to_question(self, tenant_id: str, dialogue_id: str, question_id: str) -> list[dict[str, Any]]:
        """Every current answer to the question, as the group view needs it."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT participant_id, choices, scale_value, text_key_id, text_sealed, findings FROM answers"
                " WHERE tenant_id = $1 AND dialogue_id = $2 AND question_id = $3 AND withdrawn_at IS NULL",
                tenant_id, dialogue_id, question_id,
            )
        return [dict(row) for row in rows]

    async def answers_of_dialogue(
        self, tenant_id: str, dialogue_id: str, question_id: str | None, participant_id: str | None,
        limit: int, skip: int,
    ) -> list[dict[str, Any]]:
        # One statement per combination of filters (values always parameters), so each
        # is planned for the index that serves it.
        conditions = ["tenant_id = $1", "dialogue_id = $2", "withdrawn_at IS NULL"]
        arguments: list[Any] = [tenant_id, dialogue_id, limit, skip]
        if question_id is not None:
            arguments.append(question_id)
            conditions.append(f"question_id = ${len(arguments)}")
        if participant_id is not None:
            arguments.append(participant_id)
            conditions.append(f"participant_id = ${len(arguments)}")
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                f"SELECT {ANSWER_COLUMNS} FROM answers WHERE {' AND '.join(conditions)}"
                " ORDER BY submitted_at, answer_id LIMIT $3 OFFSET $4",
                *arguments,
            )
        return [_answer(row) for row in rows]

    async def participants_of_dialogue(self, tenant_id: str, dialogue_id: str, limit: int) -> list[str]:
        """Participants who still have answer rows in the dialogue, withdrawn
        tombstones included: retention must erase those too."""
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT DISTINCT participant_id FROM answers WHERE tenant_id = $1 AND dialogue_id = $2"
                " ORDER BY participant_id LIMIT $3",
                tenant_id, dialogue_id, limit,
            )
        return [row["participant_id"] for row in rows]

    # --- rows from before sealing ------------------------------------------

    async def tenants_with_plaintext(self) -> list[str]:
        async with self.unit(None) as uow:
            return [row[0] for row in await uow.connection.fetch("SELECT tenants_with_plaintext_answers()")]

    async def plaintext_answers(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT answer_id, participant_id, text FROM answers WHERE tenant_id = $1 AND text IS NOT NULL"
                " ORDER BY answer_id LIMIT $2", tenant_id, limit)
        return [dict(row) for row in rows]

    async def seal_plaintext(self, tenant_id: str, answer_id: str, text: str, key_id: str, sealed: bytes) -> bool:
        """Replace the row's plaintext with its sealed form, if the text is still the
        one that was sealed (an edit meanwhile wrote a sealed text already)."""
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "UPDATE answers SET text = NULL, text_key_id = $4, text_sealed = $5"
                " WHERE tenant_id = $1 AND answer_id = $2 AND text = $3", tenant_id, answer_id, text, key_id, sealed)
        return status == "UPDATE 1"

    async def drop_plaintext(self, tenant_id: str, answer_id: str) -> None:
        """The participant was erased (their key is gone): the text goes unsealed."""
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                "UPDATE answers SET text = NULL WHERE tenant_id = $1 AND answer_id = $2", tenant_id, answer_id)

    # --- erasure ---------------------------------------------------------

    async def erase_participant(self, tenant_id: str, participant_id: str, marker: str, now: datetime) -> int:
        """Remember the erasure (as a marker), then delete every answer and tombstone
        of the participant and their events not yet published, in one transaction under
        the participant's lock: an answer write either committed before (deleted here)
        or runs after and finds the marker. Redelivered, this deletes nothing more."""
        async with self.unit(tenant_id) as uow:
            connection = uow.connection
            await self._lock_participant(connection, tenant_id, participant_id)
            await connection.execute(
                "INSERT INTO erased (tenant_id, marker, erased_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                tenant_id, marker, now,
            )
            deleted = await connection.fetch(
                "DELETE FROM answers WHERE tenant_id = $1 AND participant_id = $2 RETURNING answer_id",
                tenant_id, participant_id,
            )
            # Answer events are keyed by participant: none may wait here naming them.
            await connection.execute(
                "DELETE FROM outbox WHERE aggregatetype = 'answer' AND key = $1", participant_id
            )
        return len(deleted)

    async def erase_answers_in_dialogue(self, tenant_id: str, participant_id: str, dialogue_id: str) -> int:
        """Delete the participant's answers and tombstones in one dialogue (retention
        after it closed), and their events not yet published. No erased marker: the
        participant stays, and may still answer other dialogues."""
        async with self.unit(tenant_id) as uow:
            connection = uow.connection
            await self._lock_participant(connection, tenant_id, participant_id)
            deleted = await connection.fetch(
                "DELETE FROM answers WHERE tenant_id = $1 AND participant_id = $2 AND dialogue_id = $3"
                " RETURNING answer_id",
                tenant_id, participant_id, dialogue_id,
            )
            answer_ids = [row["answer_id"] for row in deleted]
            if answer_ids:
                await connection.execute(
                    "DELETE FROM outbox WHERE aggregatetype = 'answer' AND aggregateid = ANY($1::text[])", answer_ids
                )
        return len(deleted)

    async def is_erased(self, tenant_id: str, marker: str) -> bool:
        async with self.unit(tenant_id) as uow:
            return await uow.connection.fetchval(
                "SELECT 1 FROM erased WHERE tenant_id = $1 AND marker = $2", tenant_id, marker
            ) is not None

    @staticmethod
    async def _lock_participant(connection: asyncpg.Connection, tenant_id: str, participant_id: str) -> None:
        """Serialise one participant's answer inserts with their erasure, across every
        replica, until the transaction ends. (Two participants whose keys hash alike
        only wait for each other.)"""
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"dialogue-participant/{tenant_id}/{participant_id}"
        )
