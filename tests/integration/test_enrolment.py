"""The gateway against the real Kafka broker and the real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from support.apps import client_from, create_code, create_tenant, enrol, enrolment_settings, running
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

    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(stack.mongo_url)
    devices = client[gateway_app.state.wiring.settings.mongo_database]["devices"]

    async def published_and_drained():
        device = await devices.find_one({"_id": body["participant_id"]})
        return device if device and set(device) == DEVICE_FIELDS else None

    try:
        device = await eventually(published_and_drained)
    finally:
        await client.close()

    assert body["device_token"] not in repr(device)
    assert device["token_sha256"] != body["device_token"]


async def test_device_enrolled_is_published_once_keyed_by_participant(gateway, stack):
    tenant = await create_tenant(gateway)
    code = await create_code(gateway, tenant)
    body = (await enrol(gateway, code["code"], "ios", "phone")).json()

    def mine(records):
        return [r for r in records if participant_of(r) == body["participant_id"]]

    records = await read_topic(stack.kafka_bootstrap, Topics.DEVICE_ENROLLED, lambda rs: mine(rs))
    [record] = mine(records)
    event = DeviceEnrolled.model_validate(record["value"])
    assert event.tenant_id == tenant["tenant_id"]
    assert record["key"] == body["participant_id"].encode()
    assert set(record["value"]["data"]) == {"participant_id", "platform", "form_factor", "enrolled_at"}
    assert body["device_token"] not in record["raw"].decode()
    assert "traceparent" in record["headers"]


async def test_an_event_left_in_the_outbox_by_a_crash_is_published_by_the_sweep(stack):
    """Simulates a crash between the database write and the publish."""
    from tessera_common.events import DeviceEnrolledData
    from tessera_enrolment.store import EnrolmentStore

    settings = enrolment_settings(stack)
    app = create_app(settings)
    from pymongo import AsyncMongoClient

    mongo = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    store = EnrolmentStore(mongo[settings.mongo_database])
    now = datetime.now(UTC)
    event = DeviceEnrolled(
        source="tessera/enrolment", subject="p_crashcrashcrash", tenant_id="t_crashtenant01",
        data=DeviceEnrolledData(participant_id="p_crashcrashcrash", platform="ios", form_factor="phone",
                                enrolled_at=now),
    )
    await store.add_device(
        {"_id": "p_crashcrashcrash", "tenant_id": "t_crashtenant01", "token_sha256": "0" * 64,
         "platform": "ios", "form_factor": "phone", "enrolled_at": now},
        event,
    )  # written, never published: the process "died" here
    await mongo.close()

    async with running(app):  # the restarted service sweeps its outbox
        records = await read_topic(
            stack.kafka_bootstrap, Topics.DEVICE_ENROLLED,
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
    await produce(stack.kafka_bootstrap, Topics.ERASURE_REQUESTED, request.model_dump_json().encode(),
                  partition_key(body["participant_id"]))

    records = await read_topic(
        stack.kafka_bootstrap, Topics.STORE_ERASURE_COMPLETED,
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
    from tessera_devstack.processes import FerretConfig, start_ferretdb

    store = start_ferretdb(FerretConfig(tmp_path / "ferret"))
    settings = enrolment_settings(stack)
    settings.mongo_url = f"mongodb://127.0.0.1:{store.port}/?serverSelectionTimeoutMS=1000"
    try:
        async with running(create_app(settings)) as gateway:
            assert (await gateway.get("/readyz")).status_code == 200
            store.stop()
            down = await gateway.get("/readyz")
            alive = await gateway.get("/healthz")
            refused = await gateway.post("/v1/tenants", json={"name": "X", "region": "eu-west"},
                                         headers={"Authorization": f"Bearer {settings.operator_key.get_secret_value()}"})
            store = start_ferretdb(FerretConfig(tmp_path / "ferret", port=store.port))
            recovered = await eventually(lambda: _ready(gateway))
    finally:
        store.stop()

    assert down.status_code == 503 and down.json()["checks"] == {"broker": True, "store": False}
    assert alive.status_code == 200
    assert refused.status_code == 503 and refused.json()["detail"]["code"] == "temporarily_unavailable"
    assert refused.headers["Retry-After"].isdigit()
    assert recovered


async def _ready(client) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_concurrent_claims_never_take_more_places_than_a_code_has(stack):
    """The claim is one conditional update; on FerretDB that needs the document lock
    (tessera_common.mongo), without which several concurrent claims won the last place."""
    import asyncio

    from pymongo import AsyncMongoClient

    from support.apps import unique_db
    from tessera_enrolment.store import EnrolmentStore

    mongo = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    store = EnrolmentStore(mongo[unique_db("claims")])
    now = datetime.now(UTC)
    try:
        for trial in range(5):
            code = f"CODE{trial}"
            await store.add_code({"_id": code, "tenant_id": "t_claims", "created_at": now, "expires_at": None,
                                  "max_enrolments": 1, "remaining": 1, "enrolments": 0, "revoked_at": None})
            claims = await asyncio.gather(*(store.claim_code(code, now) for _ in range(5)))
            assert [c for c in claims if c is not None] == ["t_claims"]
            assert (await store.codes.find_one({"_id": code}))["enrolments"] == 1
    finally:
        await mongo.close()
