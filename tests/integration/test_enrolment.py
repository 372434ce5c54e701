"""The gateway against the real Kafka broker and the real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from uuid import uuid4

from support.apps import client_from, create_code, create_tenant, enrol, enrolment_settings, opened, running
from support.db import fetch, fetchval
from support.kafka import eventually, read_topic
from tessera_common.events import DeviceEnrolled, Topics
from tessera_enrolment.app import create_app
from tessera_enrolment.domain import DEVICE_FIELDS

pytestmark = pytest.mark.connected


async def test_enrolment_returns_a_pseudonym_and_a_token_that_authenticates(gateway):
    tenant = await create_tenant(gateway)
    code = await create_code(gateway, tenant)

    response = await enrol(gateway, code["display"].lower(), "android", "tablet")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"participant_id", "device_token", "tenant_id"}
    assert body["tenant_id"] == tenant["tenant_id"]
    assert body["participant_id"].startswith("p_")
    assert len(body["device_token"]) >= 4 + 43  # "tdt_" + 256 bits base64url
    me = await gateway.get("/v1/me", headers={"Authorization": f"Bearer {body['device_token']}"})
    assert me.status_code == 200
    assert me.json()["participant_id"] == body["participant_id"]
    assert me.json()["platform"] == "android" and me.json()["form_factor"] == "tablet"


async def test_device_record_holds_only_the_allowed_fields_and_a_token_hash(gateway, gateway_app, stack):
    tenant = await create_tenant(gateway)
    code = await create_code(gateway, tenant)
    body = (await enrol(gateway, code["code"])).json()

    owner_url = gateway_app.state.wiring.settings.database_owner_url.get_secret_value()
    [device] = await fetch(owner_url, "SELECT * FROM devices WHERE participant_id = $1", body["participant_id"])
    columns = {row["column_name"] for row in await fetch(
        owner_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'devices'")}

    assert columns == (DEVICE_FIELDS - {"_id"}) | {"participant_id"}
    assert body["device_token"] not in repr(device)
    assert device["token_sha256"] != body["device_token"]
    async def outbox_empty():
        return await fetchval(owner_url, "SELECT count(*) FROM outbox") == 0

    assert await eventually(outbox_empty)  # published, then removed


async def test_device_enrolled_is_published_once_keyed_by_participant(gateway, stack):
    tenant = await create_tenant(gateway)
    code = await create_code(gateway, tenant)
    body = (await enrol(gateway, code["code"], "ios", "phone")).json()

    def mine(records):
        return [r for r in records if participant_of(r) == body["participant_id"]]

    records = await read_topic(stack.kafka, Topics.DEVICE_ENROLLED, lambda rs: mine(rs))
    [record] = mine(records)
    event = DeviceEnrolled.model_validate(record["value"])
    assert event.tenant_id == tenant["tenant_id"]
    assert record["key"] == body["participant_id"].encode()
    assert set(record["value"]["data"]) == {"participant_id", "platform", "form_factor", "enrolled_at"}
    assert body["device_token"] not in record["raw"].decode()
    assert "traceparent" in record["headers"]


async def test_an_event_left_in_the_outbox_by_a_crash_is_published_after_restart(stack):
    """Simulates a crash between the commit and the publish: the change and its event
    are committed by the store alone, with no relay running."""
    from tessera_common.events import DeviceEnrolledData, TenantRegistered, TenantRegisteredData
    from tessera_enrolment.store import EnrolmentStore

    settings = enrolment_settings(stack)
    app = create_app(settings)
    now = datetime.now(UTC)
    tenant_id = f"t_crash{uuid4().hex[:8]}"
    event = DeviceEnrolled(
        source="tessera/enrolment", subject="p_crashcrashcrash", tenant_id=tenant_id,
        data=DeviceEnrolledData(participant_id="p_crashcrashcrash", platform="ios", form_factor="phone",
                                enrolled_at=now),
    )
    async with opened(settings, "enrolment") as database:
        store = EnrolmentStore(database)
        await store.add_tenant(
            {"_id": tenant_id, "name": "Crash", "region": "eu-west", "api_key_sha256": "0" * 64, "created_at": now},
            TenantRegistered(source="tessera/enrolment", subject=tenant_id, tenant_id=tenant_id,
                             data=TenantRegisteredData(region="eu-west", api_key_sha256="0" * 64)),
        )
        await store.add_code({"_id": "CRASHCODE1", "tenant_id": tenant_id, "created_at": now})
        await store.enrol("CRASHCODE1", now, lambda tenant: (
            {"_id": "p_crashcrashcrash", "tenant_id": tenant, "token_sha256": "0" * 64,
             "platform": "ios", "form_factor": "phone", "enrolled_at": now}, event))
        # committed, never published: the process "died" here

    async with running(app):  # the restarted service publishes what its outbox holds
        records = await read_topic(
            stack.kafka, Topics.DEVICE_ENROLLED,
            lambda rs: any(event_id_of(r) == event.id for r in rs),
        )
    assert [event_id_of(r) for r in records].count(event.id) == 1


async def test_a_code_with_a_limit_stops_enrolling_when_used_up(gateway):
    tenant = await create_tenant(gateway)
    code = await create_code(gateway, tenant, max_enrolments=2)

    results = [(await enrol(gateway, code["code"])).status_code for _ in range(3)]

    assert results == [201, 201, 404]
    listing = await gateway.get(
        f"/v1/tenants/{tenant['tenant_id']}/codes", headers={"Authorization": f"Bearer {tenant['api_key']}"}
    )
    [listed] = listing.json()["codes"]
    assert listed["status"] == "exhausted" and listed["enrolments"] == 2


async def test_revoked_expired_and_unknown_codes_get_the_same_answer(gateway, gateway_app, stack):
    tenant = await create_tenant(gateway)
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    revoked = await create_code(gateway, tenant)
    assert (await gateway.delete(f"/v1/tenants/{tenant['tenant_id']}/codes/{revoked['display']}", headers=auth)).status_code == 204
    expiring = await create_code(gateway, tenant, expires_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    import asyncio

    await asyncio.sleep(1.2)

    answers = [await enrol(gateway, c) for c in (revoked["code"], expiring["code"], "ZZZZZ-ZZZZZ", "not a code")]

    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1  # nothing tells an expired code from a made-up one
    assert tenant["tenant_id"] not in answers[0].text


async def test_guessing_is_throttled_per_network_and_counted(stack):
    app = create_app(enrolment_settings(stack, enrol_failures_per_network="3/minute"))
    async with running(app, client_ip="198.51.100.23") as attacker, client_from(app, "192.0.2.9") as other:
        before = attempts_by_outcome((await attacker.get("/metrics")).text)
        tenant = await create_tenant(attacker)
        code = await create_code(attacker, tenant)
        guesses = [(await enrol(attacker, f"ABCDE-FGH{c}J")).status_code for c in "23456"]
        same_network = await enrol(attacker, code["code"])
        elsewhere = await enrol(other, code["code"])
        metrics = (await attacker.get("/metrics")).text

    assert guesses == [404, 404, 404, 429, 429]
    assert same_network.status_code == 429  # even a valid code: the budget is spent
    assert same_network.headers["Retry-After"].isdigit()
    assert elsewhere.status_code == 201
    after = attempts_by_outcome(metrics)
    counted = {outcome: after[outcome] - before.get(outcome, 0) for outcome in after}
    assert counted == {"invalid_code": 3, "throttled": 3, "enrolled": 1}


async def test_guessing_is_throttled_globally(stack):
    app = create_app(enrolment_settings(stack, enrol_failures_global="4/minute"))
    results = []
    async with running(app) as operator:
        tenant = await create_tenant(operator)
        code = await create_code(operator, tenant)
        for network in ("10.1.0.9", "10.2.0.9", "10.3.0.9", "10.4.0.9"):  # one guess from each
            async with client_from(app, network) as guesser:
                results.append((await enrol(guesser, "ABCDE-FGH2J")).status_code)
        async with client_from(app, "172.16.5.5") as innocent:
            results.append((await enrol(innocent, code["code"])).status_code)

    assert results == [404, 404, 404, 404, 429]


async def test_an_erasure_request_deletes_the_device_and_the_token_stops_working(gateway, stack):
    from tessera_common.events import ErasureRequested, ErasureRequestedData, partition_key
    from support.kafka import produce

    tenant = await create_tenant(gateway)
    code = await create_code(gateway, tenant)
    body = (await enrol(gateway, code["code"])).json()
    request = ErasureRequested(
        source="tessera/rights", subject=body["participant_id"], tenant_id=tenant["tenant_id"],
        data=ErasureRequestedData(request_id="r_test0001", participant_id=body["participant_id"],
                                  reason="participant", requested_at=datetime.now(UTC)),
    )
    await produce(stack.kafka, Topics.ERASURE_REQUESTED, request.model_dump_json().encode(),
                  partition_key(body["participant_id"]))

    records = await read_topic(
        stack.kafka, Topics.STORE_ERASURE_COMPLETED,
        lambda rs: any(request_of(r) == "r_test0001" for r in rs),
    )
    [done] = [r["value"] for r in records if request_of(r) == "r_test0001"]
    assert done["data"]["store"] == "enrolment.devices" and done["data"]["documents_deleted"] == 1
    me = await gateway.get("/v1/me", headers={"Authorization": f"Bearer {body['device_token']}"})
    assert me.status_code == 401


def attempts_by_outcome(exposition: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "tessera_enrolment_attempts_total":
                counts[sample.labels["outcome"]] = counts.get(sample.labels["outcome"], 0) + sample.value
    return counts


# Other tests put malformed records on the same topics on purpose; these readers
# skip anything that is not the event they look for.
def event_id_of(record) -> str | None:
    return record["value"].get("id") if isinstance(record["value"], dict) else None


def _data(record) -> dict:
    value = record["value"]
    data = value.get("data") if isinstance(value, dict) else None
    return data if isinstance(data, dict) else {}


def participant_of(record) -> str | None:
    return _data(record).get("participant_id")


def request_of(record) -> str | None:
    return _data(record).get("request_id")


async def test_readiness_fails_while_the_store_is_down_and_recovers(stack, tmp_path):
    from tessera_devstack.postgres import PostgresConfig, start_postgres

    config = PostgresConfig(tmp_path / "pg", durable=False)
    store = start_postgres(config)
    settings = enrolment_settings(stack, **store.database("enrolment"))
    try:
        async with running(create_app(settings)) as gateway:
            assert (await gateway.get("/readyz")).status_code == 200
            store.stop()
            down = await gateway.get("/readyz")
            alive = await gateway.get("/healthz")
            refused = await gateway.post("/v1/tenants", json={"name": "X", "region": "eu-west"},
                                         headers={"Authorization": f"Bearer {settings.operator_key.get_secret_value()}"})
            store = start_postgres(config)
            recovered = await eventually(lambda: _ready(gateway))
            created = await gateway.post("/v1/tenants", json={"name": "X", "region": "eu-west"},
                                         headers={"Authorization": f"Bearer {settings.operator_key.get_secret_value()}"})
    finally:
        store.stop()
        store.discard()

    assert down.status_code == 503 and down.json()["checks"] == {"broker": True, "store": False}
    assert alive.status_code == 200
    assert refused.status_code == 503 and refused.json()["detail"]["code"] == "temporarily_unavailable"
    assert refused.headers["Retry-After"].isdigit()
    assert recovered
    assert created.status_code == 201  # the pool reconnects by itself


async def _ready(client) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_concurrent_claims_never_take_more_places_than_a_code_has(stack):
    """The claim is one conditional UPDATE in PostgreSQL: of five concurrent claims of
    a one-place code, one wins, and the device of each loser is never written."""
    import asyncio

    from tessera_common.events import DeviceEnrolledData, TenantRegistered, TenantRegisteredData
    from tessera_enrolment.store import EnrolmentStore

    settings = enrolment_settings(stack)
    now = datetime.now(UTC)
    tenant_id = f"t_claims{uuid4().hex[:8]}"

    def new_device(tenant: str):
        participant_id = f"p_{uuid4().hex[:16]}"
        return ({"_id": participant_id, "tenant_id": tenant, "token_sha256": "0" * 64, "platform": "ios",
                 "form_factor": "phone", "enrolled_at": now},
                DeviceEnrolled(source="tessera/enrolment", subject=participant_id, tenant_id=tenant,
                               data=DeviceEnrolledData(participant_id=participant_id, platform="ios",
                                                       form_factor="phone", enrolled_at=now)))

    async with opened(settings, "enrolment") as database:
        store = EnrolmentStore(database)
        await store.add_tenant(
            {"_id": tenant_id, "name": "Claims", "region": "eu-west", "api_key_sha256": "0" * 64, "created_at": now},
            TenantRegistered(source="tessera/enrolment", subject=tenant_id, tenant_id=tenant_id,
                             data=TenantRegisteredData(region="eu-west", api_key_sha256="0" * 64)),
        )
        for trial in range(5):
            code = f"CODE{trial}"
            await store.add_code({"_id": code, "tenant_id": tenant_id, "created_at": now, "max_enrolments": 1})
            claims = await asyncio.gather(*(store.enrol(code, now, new_device) for _ in range(5)))
            assert len([c for c in claims if c is not None]) == 1
            [listed] = [c for c in await store.list_codes(tenant_id, 10, 0) if c["_id"] == code]
            assert listed["enrolments"] == 1
        owner_url = settings.database_owner_url.get_secret_value()
        assert await fetchval(owner_url, "SELECT count(*) FROM devices WHERE tenant_id = $1", tenant_id) == 5
