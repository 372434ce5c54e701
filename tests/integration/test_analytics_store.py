"""Analytics' store alone against the real PostgreSQL: tenants walled apart by row-level
security, and figures that stay exact with several replicas applying events and
erasures at once."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from support.apps import opened
from support.db import fetchval
from tessera_analytics.app import AnalyticsSettings
from tessera_analytics.store import AnalyticsStore, AnswerState
from tessera_common.secrets import new_id

pytestmark = pytest.mark.connected

TENANT_TABLES = ("tenants", "dialogues", "device_contributions", "answer_contributions", "erased", "objected")
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def analytics_settings(stack) -> AnalyticsSettings:
    return AnalyticsSettings(kafka_bootstrap_servers=stack.kafka_bootstrap, environment="test",
                             **stack.database("analytics"))


@contextlib.asynccontextmanager
async def replicas(stack, n: int) -> AsyncIterator[tuple[AnalyticsSettings, list[AnalyticsStore]]]:
    """``n`` stores on one database, each with its own pool: n replicas of the service."""
    settings = analytics_settings(stack)
    async with contextlib.AsyncExitStack() as stores:
        databases = [await stores.enter_async_context(opened(settings, "analytics")) for _ in range(n)]
        yield settings, [AnalyticsStore(database) for database in databases]


def answer(tenant_id: str, participant_id: str, question_id: str, *, choice: str | None = None,
           scale: int | None = None, version: int = 1, live: bool = True, day: str = "2026-11-02",
           device: str | None = "ios/phone", answer_no: int = 0, dialogue_id: str = "d_store") -> AnswerState:
    return AnswerState(
        tenant_id=tenant_id, participant_id=participant_id, dialogue_id=dialogue_id, question_id=question_id,
        question_kind="scale" if scale is not None else "single_choice",
        answer_id=f"a_{participant_id}_{question_id}_{answer_no}", version=version, live=live,
        choices=(choice,) if choice else (), scale_value=scale, day=day, submitted=version == 1, device=device,
        event_id=new_id("e"),
    )


async def test_a_tenants_unit_of_work_sees_and_changes_only_its_own_rows(stack):
    async with replicas(stack, 1) as (settings, [store]):
        alice, bob = new_id("t"), new_id("t")
        for tenant in (alice, bob):
            await store.upsert_tenant(tenant, "0" * 64, 5)
            await store.apply_dialogue(tenant, {"dialogue_id": f"d_{tenant}", "revision": 1, "title": "Parks",
                                                "status": "published", "questions": []})
            pid = new_id("p")
            await store.add_device({"_id": pid, "tenant_id": tenant, "platform": "ios", "form_factor": "phone",
                                    "event_id": new_id("e")}, f"m_{pid}")
            await store.apply_answer(answer(tenant, pid, "q_1", choice="a"), f"m_{pid}")
            await store.apply_objection(tenant, new_id("p"), f"m_{new_id('p')}", NOW)
            await store.erase_participant(tenant, new_id("p"), f"m_{new_id('p')}", NOW)

        database = store.database
        async with database.transaction(alice) as connection:
            for table in TENANT_TABLES:
                seen = {row["tenant_id"] for row in await connection.fetch(f"SELECT tenant_id FROM {table}")}
                assert seen == {alice}, table
            # Bob's rows can be neither changed nor deleted from Alice's unit of work...
            assert await connection.execute("UPDATE answer_contributions SET live = false WHERE tenant_id = $1",
                                             bob) == "UPDATE 0"
            assert await connection.execute("DELETE FROM device_contributions WHERE tenant_id = $1",
                                            bob) == "DELETE 0"
        # ... nor written in his name.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with database.transaction(alice) as connection:
                await connection.execute("INSERT INTO tenants (tenant_id, min_group_size) VALUES ($1, 3)", bob)
        async with database.transaction(None) as connection:
            for table in TENANT_TABLES:
                assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 0, table

        # Bob's data is all there (as the owner, whom row-level security does not bind).
        owner = settings.database_owner_url.get_secret_value()
        assert await fetchval(owner, "SELECT count(*) FROM answer_contributions WHERE tenant_id = $1", bob) == 1
        assert (await store.question_counters(bob, "d_store"))["q_1"]["respondents"] == 1


async def test_an_answer_folds_to_its_highest_version_dated_by_its_submission(stack):
    async with replicas(stack, 1) as (_, [store]):
        tenant, pid = new_id("t"), new_id("p")
        edit = answer(tenant, pid, "q_1", choice="b", version=2, day="2026-11-05", device=None)
        first = answer(tenant, pid, "q_1", choice="a", version=1, day="2026-11-02")
        assert await store.apply_answer(edit, "m") is True
        assert await store.apply_answer(first, "m") is True  # dates it, and says the device
        assert await store.apply_answer(first, "m") is False  # redelivered
        assert await store.apply_answer(answer(tenant, pid, "q_1", choice="a", version=1), "m") is False  # older
        counters = (await store.question_counters(tenant, "d_store"))["q_1"]
        assert counters == {"respondents": 1, "answers": 1, "choices": {"b": 1}, "scale": {},
                            "days": {"2026-11-02": 1}, "devices": {"ios/phone": 1}}
        await store.apply_answer(answer(tenant, pid, "q_1", version=3, live=False, day="2026-11-06"), "m")
        assert await store.question_counters(tenant, "d_store") == {}


def _events(tenant: str, pids: list[str]) -> list[AnswerState]:
    """Answers, edits and withdrawals of two questions: the same for every tenant given
    the same participants' indexes."""
    events = []
    for i, pid in enumerate(pids):
        events.append(answer(tenant, pid, "q_single", choice="abc"[i % 3],
                             device=("ios/phone", "android/tablet", None)[i % 3]))
        events.append(answer(tenant, pid, "q_scale", scale=1 + i % 5, day=("2026-11-02", "2026-11-03")[i % 2]))
        if i % 4 == 0:
            events.append(answer(tenant, pid, "q_single", choice="c", version=2, day="2026-11-04"))
        if i % 7 == 0:
            events.append(answer(tenant, pid, "q_scale", version=2, live=False, day="2026-11-05"))
    return events


def _renamed(events: list[AnswerState], tenant: str, names: dict[str, str]) -> list[AnswerState]:
    out = []
    for event in events:
        pid = names.setdefault(event.participant_id, new_id("p"))
        out.append(AnswerState(**{**event.__dict__, "tenant_id": tenant, "participant_id": pid,
                                  "answer_id": event.answer_id.replace(event.participant_id, pid),
                                  "event_id": new_id("e")}))
    return out


async def test_replicas_applying_events_and_erasures_at_once_keep_the_figures_exact(stack):
    """Three replicas, four partitions each, take a shuffled stream (every event twice, versions out of order)
    and erasures of some participants racing their own answers; the figures then
    equal those of a twin tenant sent, in order, only the answers of those who stay.
    No deadlock or lost update: the store raises nothing, and nothing erased is left."""
    async with replicas(stack, 3) as (settings, stores):
        tenant, twin = new_id("t"), new_id("t")
        pids = [new_id("p") for _ in range(60)]
        erased = set(random.Random(3).sample(pids, 12))
        events = _events(tenant, pids)
        names: dict[str, str] = {}
        for event in _renamed([e for e in events if e.participant_id not in erased], twin, names):
            await stores[0].apply_answer(event, f"m_{event.participant_id}")

        work = [("answer", e) for e in events] * 2 + [("erase", pid) for pid in erased]
        random.Random(5).shuffle(work)

        lanes = 4 * len(stores)  # each replica consumes several partitions at once

        async def lane(index: int) -> None:
            store = stores[index % len(stores)]
            for kind, item in work[index::lanes]:
                if kind == "answer":
                    await store.apply_answer(item, f"m_{item.participant_id}")
                else:
                    await store.erase_participant(tenant, item, f"m_{item}", NOW)

        await asyncio.gather(*(lane(i) for i in range(lanes)))
        # Late and redelivered events of the erased bring nothing back.
        for event in events:
            if event.participant_id in erased:
                assert await stores[1].apply_answer(event, f"m_{event.participant_id}") is False

        assert await stores[2].question_counters(tenant, "d_store") == \
               await stores[2].question_counters(twin, "d_store")
        owner = settings.database_owner_url.get_secret_value()
        assert await fetchval(owner, "SELECT count(*) FROM answer_contributions WHERE participant_id = ANY($1)",
                              list(erased)) == 0
        expected = await stores[0].cross_counts(twin, ("q_single", "single_choice"), ("q_scale", "scale"))
        assert await stores[1].cross_counts(tenant, ("q_single", "single_choice"), ("q_scale", "scale")) == expected
        assert sum(expected.values()) == len([i for i, p in enumerate(pids) if p not in erased and i % 7])


async def test_an_erasure_waits_for_an_answer_in_flight_and_then_deletes_it(stack):
    """The answer's transaction holds the participant's lock (shared) until it commits;
    the erasure, from another replica, waits for it and then sees and deletes its row."""
    async with replicas(stack, 2) as (settings, [first, second]):
        tenant, pid = new_id("t"), new_id("p")
        marker = f"m_{pid}"
        async with first.unit(tenant) as uow:
            assert await first._admit(uow, marker, "d_store", new_id("e"))
            erasure = asyncio.create_task(second.erase_participant(tenant, pid, marker, NOW))
            await asyncio.sleep(0.3)
            assert not erasure.done()  # waiting for the answer's transaction
            await uow.connection.execute(
                "INSERT INTO answer_contributions (tenant_id, question_id, participant_id, answer_id, dialogue_id,"
                " question_kind, version, live, day, day_exact) VALUES ($1, 'q', $2, 'a', 'd_store', 'idea', 1,"
                " true, current_date, true)", tenant, pid)
        assert await erasure == 1
        owner = settings.database_owner_url.get_secret_value()
        assert await fetchval(owner, "SELECT count(*) FROM answer_contributions WHERE participant_id = $1", pid) == 0
        assert await first.apply_answer(answer(tenant, pid, "q"), marker) is False
