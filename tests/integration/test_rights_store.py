"""The rights store alone against the real PostgreSQL: row-level security keeps one
tenant's requests, audit trail and data keys from another; the service role cannot
rewrite the audit trail; and two replicas (two pools on one database) working on the
same requests lose no update and apply nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from support.apps import opened
from support.db import fetch, fetchval
from tessera_common.datamap import erasure_stores
from tessera_common.events import StoreErasureCompleted, StoreErasureCompletedData, Topics
from tessera_common.identity import generate_signing_key
from tessera_rights.app import RightsSettings
from tessera_rights.desk import KEY_CACHES, Desk, Timing
from tessera_rights.domain import parse_signing_key, verify_chain
from tessera_rights.handlers import CONSUMER
from tessera_rights.store import RightsStore

pytestmark = pytest.mark.connected

MARKER_KEY = "test-erased-marker-key-" + uuid4().hex


@pytest.fixture
def settings(stack) -> RightsSettings:
    return RightsSettings(kafka_bootstrap_servers=stack.kafka_bootstrap, environment="test",
                          erased_marker_key=MARKER_KEY, **stack.database("rights"))


@pytest.fixture
async def replicas(settings) -> AsyncIterator[tuple[Desk, Desk]]:
    """Two desks, each with its own pool on the one database: two replicas."""
    signing_key = parse_signing_key(generate_signing_key()[0])

    async def no_topic(_: str) -> None:
        return None

    async with contextlib.AsyncExitStack() as stack:
        desks = []
        for _ in range(2):
            database = await stack.enter_async_context(opened(settings, "rights"))
            desks.append(Desk(RightsStore(database), {}, MARKER_KEY, signing_key,
                              Timing(retry_base_seconds=30.0), no_topic))
        yield desks[0], desks[1]


def owner(settings: RightsSettings) -> str:
    return settings.database_owner_url.get_secret_value()


def tenant() -> str:
    return f"t_{uuid4().hex[:12]}"


def participant() -> str:
    return f"p_{uuid4().hex[:16]}"


def confirmation(tenant_id: str, request_id: str, store: str) -> StoreErasureCompleted:
    return StoreErasureCompleted(
        source="tessera/test", subject=request_id, tenant_id=tenant_id,
        data=StoreErasureCompletedData(request_id=request_id, store=store, documents_deleted=1,
                                       completed_at=datetime.now(UTC)))


async def test_a_tenants_unit_sees_and_changes_only_its_own_rows(replicas, settings):
    desk, _ = replicas
    store = desk.store
    mine, theirs = tenant(), tenant()
    request = (await desk.receive("tenant", mine, participant(), "erasure")).request

    assert (await store.request(mine, request["_id"]))["subject"] == request["subject"]
    assert await store.request(theirs, request["_id"]) is None
    assert await store.list_requests(theirs) == []
    assert await store.audit_entries(theirs) == []
    assert await store.audit_head(theirs) is None
    async with store.unit(theirs) as uow:
        # Naming the other tenant's rows explicitly finds nothing to change either.
        assert await uow.connection.execute(
            "UPDATE requests SET status = 'completed' WHERE request_id = $1", request["_id"]) == "UPDATE 0"
        assert await uow.connection.execute(
            "DELETE FROM requests WHERE tenant_id = $1", mine) == "DELETE 0"
        assert await uow.connection.fetchval("SELECT count(*) FROM audit_heads") == 0
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # no writing into another tenant
        async with store.unit(theirs) as uow:
            await uow.connection.execute(
                "INSERT INTO tenants (tenant_id, api_key_sha256) VALUES ($1, 'x')", mine)
    async with store.unit(None) as uow:  # no tenant: no tenant row at all
        for table in ("requests", "audit", "audit_heads", "tenants", "data_keys"):
            assert await uow.connection.fetchval(f"SELECT count(*) FROM {table}") == 0, table

    assert (await store.request(mine, request["_id"]))["status"] == "in_progress"
    assert await fetchval(owner(settings), "SELECT count(*) FROM audit WHERE tenant_id = $1", mine) == 3


async def test_the_service_role_can_add_audit_entries_but_never_change_or_remove_one(replicas, settings):
    desk, _ = replicas
    tenant_id = tenant()
    await desk.receive("tenant", tenant_id, participant(), "objection")
    for statement in ("UPDATE audit SET record = '{}'::jsonb WHERE tenant_id = $1",
                      "DELETE FROM audit WHERE tenant_id = $1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with desk.store.unit(tenant_id) as uow:
                await uow.connection.execute(statement, tenant_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with desk.store.unit(tenant_id) as uow:
            await uow.connection.execute("TRUNCATE audit")
    head, entries = await desk.store.audit_chain(tenant_id)
    assert verify_chain(entries, head).valid and len(entries) == 1


async def test_concurrent_confirmations_from_two_replicas_lose_no_store(replicas, settings):
    one, two = replicas
    tenant_id = tenant()
    request = (await one.receive("participant", tenant_id, participant(), "erasure")).request
    pending = [p["store"] for p in request["progress"] if p["status"] == "pending"]
    assert len(pending) == len(erasure_stores()) - 1 >= 2

    events = [confirmation(tenant_id, request["_id"], store) for store in pending]
    # Every confirmation delivered twice (a redelivery), to both replicas at once.
    await asyncio.gather(*(desk.confirm(event, event.data.store, 1, kind="erasure", consumer=CONSUMER)
                           for event in events for desk in (one, two)))

    done = await one.store.request(tenant_id, request["_id"])
    assert done["status"] == "completed" and done["participant_id"] is None and done["receipt"]
    assert {p["store"] for p in done["progress"] if p["status"] == "confirmed"} == set(erasure_stores()) | {KEY_CACHES}
    head, entries = await one.store.audit_chain(tenant_id)
    assert verify_chain(entries, head).valid
    actions = [e["record"]["action"] for e in entries]
    assert actions.count("store_confirmed") == len(pending) and actions.count("request_completed") == 1
    assert actions[-1] == "request_completed"


async def test_two_replicas_taking_the_same_erasure_open_one_request(replicas, settings):
    one, two = replicas
    tenant_id, participant_id = tenant(), participant()
    received = await asyncio.gather(*(desk.receive("tenant", tenant_id, participant_id, "erasure")
                                      for desk in (one, two, one, two)))

    assert sum(r.created for r in received) == 1
    assert len({r.request["_id"] for r in received}) == 1
    rows = await fetch(owner(settings), "SELECT request_id FROM requests WHERE tenant_id = $1", tenant_id)
    assert len(rows) == 1
    head, entries = await one.store.audit_chain(tenant_id)
    assert verify_chain(entries, head).valid and len(entries) == 3  # received, key destroyed, requested
    assert await fetchval(owner(settings), "SELECT count(*) FROM outbox WHERE topic = $1",
                          Topics.ERASURE_REQUESTED) >= 1


async def test_a_due_retry_swept_by_two_replicas_at_once_is_sent_once(replicas, settings):
    one, two = replicas
    tenant_id = tenant()
    request = (await one.receive("tenant", tenant_id, participant(), "erasure")).request
    async with one.store.unit(tenant_id) as uow:
        await uow.update_request(request["_id"], {"next_retry_at": datetime.now(UTC) - timedelta(seconds=1)})
    sent_before = await fetchval(owner(settings), "SELECT count(*) FROM outbox WHERE payload->>'subject' = $1",
                                 request["_id"])

    retried = await asyncio.gather(one.retry_due(), two.retry_due(), one.retry_due())

    assert sum(retried) == 1
    after = await one.store.request(tenant_id, request["_id"])
    assert after["attempts"] == 1 and after["next_retry_at"] > datetime.now(UTC)
    assert await fetchval(owner(settings), "SELECT count(*) FROM outbox WHERE payload->>'subject' = $1",
                          request["_id"]) == sent_before + 1
    head, entries = await one.store.audit_chain(tenant_id)
    assert [e["record"]["action"] for e in entries].count("retry") == 1 and verify_chain(entries, head).valid


async def test_many_concurrent_appends_from_two_replicas_keep_one_unbroken_chain(replicas):
    one, two = replicas
    tenant_id = tenant()

    async def append(desk: Desk, n: int) -> None:
        async with desk.store.unit(tenant_id) as uow:
            await uow.append_audit({"action": "test", "n": n})

    await asyncio.gather(*(append((one, two)[n % 2], n) for n in range(40)))

    head, entries = await one.store.audit_chain(tenant_id)
    result = verify_chain(entries, head)
    assert result.valid and result.entries == 40 and head == (40, entries[-1]["hash"])
    assert sorted(e["record"]["n"] for e in entries) == list(range(40))
