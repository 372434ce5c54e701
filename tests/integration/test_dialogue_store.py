"""The dialogue store alone against the real PostgreSQL: the tenant wall holds inside
the database, and its invariants hold with two replicas (two pools) writing at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import pytest

from support.apps import opened
from support.db import connected, fetch, fetchval
from tessera_common.events import (
    AnswerChanged,
    AnswerChangedData,
    AnswerSubmitted,
    AnswerSubmittedData,
    DialogueChanged,
    DialogueChangedData,
    Topics,
)
from tessera_common.postgres import Database, UnitOfWork, migration_dirs, now_ms
from tessera_dialogue import domain
from tessera_dialogue.app import DialogueSettings
from tessera_dialogue.store import DialogueStore, ParticipantErasedError

pytestmark = pytest.mark.connected

QUESTION = {"question_id": "q_scale", "kind": "scale", "prompt": "How much?", "choices": [], "scale_min": 1,
            "scale_max": 5, "scale_labels": {}}


@pytest.fixture(scope="module")
async def replicas(stack) -> AsyncIterator[tuple[DialogueStore, DialogueStore, str]]:
    """Two stores on one database, each with its own pool: two replicas of the service.
    Also the owner's address, for reading every row."""
    settings = DialogueSettings(**stack.database("dialogue"), environment="test")
    async with opened(settings, "dialogue") as first:
        second = Database(settings.database_url.get_secret_value(), None, migration_dirs("dialogue"))
        await second.open()
        try:
            yield DialogueStore(first), DialogueStore(second), settings.database_owner_url.get_secret_value()
        finally:
            await second.close()


async def new_tenant(store: DialogueStore) -> str:
    tenant_id = f"t_{uuid4().hex[:12]}"
    await store.register_tenant(tenant_id, "0" * 64, {"min_group_size": 3, "pii_policy": "warn"},
                                event_id=str(uuid4()), consumer="test")
    return tenant_id


async def new_dialogue(store: DialogueStore, tenant_id: str, status: str = "published") -> dict:
    now = now_ms()
    dialogue = {"_id": f"d_{uuid4().hex[:12]}", "tenant_id": tenant_id, "title": "Parks", "intro": "",
                "status": status, "questions": [QUESTION], "has_answers": False, "version": 1,
                "created_at": now, "updated_at": now}
    await store.add_dialogue(dialogue, dialogue_event(dialogue), Topics.DIALOGUE_CHANGED)
    return dialogue


def dialogue_event(dialogue: dict) -> DialogueChanged:
    return DialogueChanged(source="tessera/test", subject=dialogue["_id"], tenant_id=dialogue["tenant_id"],
                           data=DialogueChangedData(dialogue_id=dialogue["_id"], title=dialogue["title"],
                                                    status=dialogue["status"], revision=dialogue["version"],
                                                    questions=[], changed_at=dialogue["updated_at"]))


def answer_row(tenant_id: str, dialogue_id: str, participant_id: str, value: int, version: int = 1) -> dict:
    now = now_ms()
    return {"_id": domain.answer_id_for(participant_id, QUESTION["question_id"]), "tenant_id": tenant_id,
            "participant_id": participant_id, "dialogue_id": dialogue_id, "question_id": QUESTION["question_id"],
            "version": version, "submitted_at": now, "kind": "scale", "text_key_id": None, "text_sealed": None, "choices": [],
            "scale_value": value, "screening_action": "none", "findings": [], "screening_kinds": [],
            "idempotency_key": None, "fingerprint": None, "updated_at": now}


def answer_event(row: dict) -> AnswerSubmitted | AnswerChanged:
    common = dict(participant_id=row["participant_id"], dialogue_id=row["dialogue_id"],
                  question_id=row["question_id"], answer_id=row["_id"], question_kind="scale",
                  scale_value=row["scale_value"])
    if row["version"] == 1:
        return AnswerSubmitted(source="tessera/test", subject=row["_id"], tenant_id=row["tenant_id"],
                               data=AnswerSubmittedData(**common, submitted_at=row["submitted_at"]))
    return AnswerChanged(source="tessera/test", subject=row["_id"], tenant_id=row["tenant_id"],
                         data=AnswerChangedData(**common, change="edited", version=row["version"],
                                                changed_at=row["updated_at"]))


async def submit(store: DialogueStore, row: dict, *, expected_version: int | None = None,
                 freeze_at: int | None = None) -> bool:
    topic = Topics.ANSWER_SUBMITTED if expected_version is None else Topics.ANSWER_CHANGED
    return await store.save_answer(row, expected_version=expected_version, marker=f"m_{row['participant_id']}",
                                   freeze_dialogue_at=freeze_at, event=answer_event(row), topic=topic)


async def test_a_unit_of_work_reads_and_changes_only_its_own_tenants_rows(replicas):
    store, _, owner_url = replicas
    mine, theirs = await new_tenant(store), await new_tenant(store)
    dialogue = await new_dialogue(store, mine)
    row = answer_row(mine, dialogue["_id"], f"p_{uuid4().hex[:12]}", 3)
    assert await submit(store, row, freeze_at=1)

    # Through the store: another tenant's dialogue and answer are as absent as missing ones.
    assert await store.dialogue(theirs, dialogue["_id"]) is None
    assert await store.answer(theirs, row["_id"]) is None
    assert await store.dialogue(mine, dialogue["_id"]) is not None

    # Below the store: row-level security, whatever the SQL asks for.
    async with UnitOfWork(store.database, theirs) as uow:
        for table in ("tenants", "dialogues", "answers", "erased"):
            seen = await uow.connection.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", mine)
            assert seen == 0, table
        assert await uow.connection.execute("UPDATE answers SET scale_value = 1 WHERE answer_id = $1",
                                            row["_id"]) == "UPDATE 0"
        assert await uow.connection.execute("DELETE FROM dialogues WHERE dialogue_id = $1",
                                            dialogue["_id"]) == "DELETE 0"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # a row for another tenant cannot be written
        async with UnitOfWork(store.database, theirs) as uow:
            await uow.connection.execute(
                "INSERT INTO erased (tenant_id, marker, erased_at) VALUES ($1, 'm_x', now())", mine)
    async with UnitOfWork(store.database, None) as uow:  # no tenant: no tenant row at all
        for table in ("tenants", "dialogues", "answers"):
            assert await uow.connection.fetchval(f"SELECT count(*) FROM {table}") == 0, table

    # The other tenant's erasure of "the same" participant touches nothing of mine.
    assert await store.erase_participant(theirs, row["participant_id"], "m_other", datetime.now(UTC)) == 0
    [kept] = await fetch(owner_url, "SELECT scale_value FROM answers WHERE answer_id = $1", row["_id"])
    assert kept["scale_value"] == 3


async def test_a_question_edit_and_a_first_answer_on_two_replicas_never_both_win(replicas):
    one, two, owner_url = replicas
    tenant_id = await new_tenant(one)
    for _ in range(15):
        dialogue = await new_dialogue(one, tenant_id)
        edited = {**dialogue, "questions": [{**QUESTION, "prompt": "Changed?"}], "version": 2,
                  "updated_at": now_ms()}
        answered, changed = await asyncio.gather(
            submit(one, answer_row(tenant_id, dialogue["_id"], f"p_{uuid4().hex[:12]}", 2), freeze_at=1),
            two.update_dialogue(tenant_id, dialogue["_id"], 1, {"questions": edited["questions"],
                                                               "updated_at": edited["updated_at"]},
                                dialogue_event(edited), Topics.DIALOGUE_CHANGED, questions_frozen_if_answered=True),
        )
        assert answered != changed, (answered, changed)  # exactly one of them
        [stored] = await fetch(owner_url, "SELECT has_answers, version, questions FROM dialogues"
                                          " WHERE dialogue_id = $1", dialogue["_id"])
        answers = await fetchval(owner_url, "SELECT count(*) FROM answers WHERE dialogue_id = $1", dialogue["_id"])
        if answered:
            assert (stored["has_answers"], stored["version"], answers) == (True, 1, 1)
            assert json.loads(stored["questions"]) == [QUESTION]  # (read without the jsonb codec)
        else:
            assert (stored["has_answers"], stored["version"], answers) == (False, 2, 0)


async def test_an_answer_racing_an_erasure_on_another_replica_never_survives_it(replicas):
    one, two, owner_url = replicas
    tenant_id = await new_tenant(one)
    dialogue = await new_dialogue(one, tenant_id)
    for _ in range(20):
        participant_id = f"p_{uuid4().hex[:12]}"
        row = answer_row(tenant_id, dialogue["_id"], participant_id, 4)
        results = await asyncio.gather(
            submit(one, row),
            two.erase_participant(tenant_id, participant_id, f"m_{participant_id}", datetime.now(UTC)),
            return_exceptions=True,
        )
        written, deleted = results
        assert written is True or isinstance(written, ParticipantErasedError), written
        assert deleted == (1 if written is True else 0)
        left = await fetchval(owner_url, "SELECT count(*) FROM answers WHERE participant_id = $1", participant_id)
        waiting = await fetchval(owner_url, "SELECT count(*) FROM outbox WHERE key = $1", participant_id)
        assert (left, waiting) == (0, 0)
        with pytest.raises(ParticipantErasedError):  # and nothing afterwards either
            await submit(two, answer_row(tenant_id, dialogue["_id"], participant_id, 5))


async def test_concurrent_edits_of_one_answer_from_two_replicas_lose_no_update(replicas):
    one, two, owner_url = replicas
    tenant_id = await new_tenant(one)
    dialogue = await new_dialogue(one, tenant_id)
    participant_id = f"p_{uuid4().hex[:12]}"
    first = answer_row(tenant_id, dialogue["_id"], participant_id, 1)
    assert await submit(one, first, freeze_at=1)

    async def edit(store: DialogueStore, value: int) -> int:
        """Read, change, write against the version read; again from a fresh read when
        someone else wrote first. Returns the version written."""
        while True:
            current = await store.answer(tenant_id, first["_id"])
            row = answer_row(tenant_id, dialogue["_id"], participant_id, value, version=current["version"] + 1)
            if await submit(store, row, expected_version=current["version"]):
                return row["version"]

    written = await asyncio.gather(*(edit(one if i % 2 else two, i % 5 + 1) for i in range(20)))
    assert sorted(written) == list(range(2, 22))  # every edit landed, each on its own version
    [final] = await fetch(owner_url, "SELECT version FROM answers WHERE answer_id = $1", first["_id"])
    assert final["version"] == 21


async def test_a_redelivered_registration_keeps_the_settings_the_tenant_changed(replicas):
    store, _, _ = replicas
    tenant_id = f"t_{uuid4().hex[:12]}"
    event_id = str(uuid4())
    await store.register_tenant(tenant_id, "a" * 64, {"min_group_size": 5, "pii_policy": "warn"},
                                event_id=event_id, consumer="test")
    from tessera_common.events import TenantSettingsChanged, TenantSettingsChangedData

    settings = {"min_group_size": 7, "pii_policy": "redact"}
    event = TenantSettingsChanged(source="tessera/test", subject=tenant_id, tenant_id=tenant_id,
                                  data=TenantSettingsChangedData(**settings, revision=1))
    assert await store.change_settings(tenant_id, 0, settings, event, Topics.TENANT_SETTINGS_CHANGED)
    assert not await store.change_settings(tenant_id, 0, settings, event, Topics.TENANT_SETTINGS_CHANGED)
    await store.register_tenant(tenant_id, "a" * 64, {"min_group_size": 5, "pii_policy": "warn"},
                                event_id=event_id, consumer="test")
    await store.register_tenant(tenant_id, "a" * 64, {"min_group_size": 5, "pii_policy": "warn"},
                                event_id=str(uuid4()), consumer="test")
    tenant = await store.tenant(tenant_id)
    assert (tenant["min_group_size"], tenant["pii_policy"], tenant["revision"]) == (7, "redact", 1)


async def test_the_group_view_and_a_participants_answers_are_read_through_indexes(replicas):
    """At a size where a scan would cost, the planner uses the indexes for the reads
    every participant makes (and row-level security does not stop it)."""
    store, _, owner_url = replicas
    tenant_id = await new_tenant(store)
    async with connected(owner_url) as owner:
        await owner.execute(
            "INSERT INTO answers (tenant_id, answer_id, participant_id, dialogue_id, question_id, kind,"
            " scale_value, version, submitted_at, updated_at)"
            " SELECT $1, 'a_bulk' || n, 'p_bulk' || (n % 5000), 'd_bulk' || (n % 40), 'q_bulk' || (n % 400),"
            " 'scale', 3, 1, now(), now() FROM generate_series(1, 40000) AS n",
            tenant_id,
        )
        await owner.execute("ANALYZE answers")
    reads = {
        "group view": ("SELECT participant_id, choices, scale_value, text, findings FROM answers"
                       " WHERE tenant_id = $1 AND dialogue_id = $2 AND question_id = $3 AND withdrawn_at IS NULL",
                       (tenant_id, "d_bulk7", "q_bulk7")),
        "my answers": ("SELECT answer_id FROM answers WHERE tenant_id = $1 AND participant_id = $2"
                       " AND withdrawn_at IS NULL ORDER BY submitted_at, answer_id", (tenant_id, "p_bulk7")),
    }
    async with UnitOfWork(store.database, tenant_id) as uow:
        for name, (query, arguments) in reads.items():
            plan = "\n".join(row[0] for row in await uow.connection.fetch(f"EXPLAIN {query}", *arguments))
            assert "Seq Scan" not in plan and "answers_by_" in plan, f"{name}:\n{plan}"
