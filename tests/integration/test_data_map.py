"""The data map declares every collection the services really create, and every store
holding participant data confirms an erasure under the name the map gives it."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pymongo import AsyncMongoClient

from support.apps import (
    INTERNAL_TOKEN,
    MARKER_KEY,
    bearer,
    create_tenant,
    enrol_devices,
    running,
    running_platform,
    tenant_known_to_dialogue,
    unique_db,
)
from support.kafka import eventually, produce, read_topic
from tessera_analytics.app import AnalyticsSettings
from tessera_analytics.app import create_app as create_analytics
from tessera_common.datamap import DATA_MAP, collections_of, erasure_stores
from tessera_common.events import (
    DeviceEnrolled,
    DeviceEnrolledData,
    ErasureRequested,
    ErasureRequestedData,
    Topics,
)

pytestmark = pytest.mark.connected


def test_every_erasure_consumer_confirms_under_a_name_the_map_declares():
    from tessera_analytics.handlers import STORE_NAME as analytics
    from tessera_dialogue.handlers import STORE_NAME as dialogue
    from tessera_enrolment.handlers import STORE_NAME as enrolment

    assert {enrolment, dialogue, analytics, "rights.data_keys"} == erasure_stores()
    assert len({(c.service, c.collection) for c in DATA_MAP}) == len(DATA_MAP)


async def test_the_map_declares_every_collection_the_services_create_and_erasure_reaches_each(stack):
    analytics_app = create_analytics(AnalyticsSettings(
        kafka_bootstrap_servers=stack.kafka_bootstrap, mongo_url=stack.mongo_url,
        mongo_database=unique_db("analytics"), environment="test", erased_marker_key=MARKER_KEY))
    async with running_platform(stack) as platform, running(analytics_app):
        # Traffic that makes every kind of document: tenant, code, device, settings,
        # dialogue, answer, data key, and an erasure (markers).
        tenant = await create_tenant(platform.gateway)
        await tenant_known_to_dialogue(platform, tenant)
        auth = bearer(tenant["api_key"])
        await platform.dialogue.put(f"/v1/tenants/{tenant['tenant_id']}/settings", json={"min_group_size": 3},
                                    headers=auth)
        base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
        dialogue = (await platform.dialogue.post(base, headers=auth, json={
            "title": "Map", "questions": [{"kind": "open_text", "prompt": "Why?"}]})).json()
        await platform.dialogue.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=auth)
        device, other = await enrol_devices(platform, tenant, 2)
        path = f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{dialogue['questions'][0]['question_id']}/answer"
        for who in (device, other):
            response = await platform.gateway.put(path, json={"value": "More trees"},
                                                  headers=bearer(who["device_token"]))
            assert response.status_code == 201

        mongo = AsyncMongoClient(stack.mongo_url)
        contributions = mongo[analytics_app.state.wiring.settings.mongo_database]["device_contributions"]
        try:
            assert await eventually(lambda: contributions.find_one({"_id": device["participant_id"]}))
            destroyed = await platform.rights.delete(f"/internal/v1/data-keys/{device['participant_id']}",
                                                     headers=bearer(INTERNAL_TOKEN))
            assert destroyed.status_code == 204
            request_id = f"r_{uuid4().hex[:12]}"
            erasure = ErasureRequested(
                source="tessera/test", subject=request_id, tenant_id=tenant["tenant_id"],
                data=ErasureRequestedData(request_id=request_id, participant_id=device["participant_id"],
                                          reason="participant", requested_at=datetime.now(UTC)))
            await produce(stack.kafka_bootstrap, Topics.ERASURE_REQUESTED, erasure.model_dump_json().encode(),
                          key=device["participant_id"].encode())
            confirmed = await read_topic(stack.kafka_bootstrap, Topics.STORE_ERASURE_COMPLETED, until=lambda rs: {
                r["value"]["data"]["store"] for r in rs if r["value"]["data"]["request_id"] == request_id
            } >= erasure_stores() - {"rights.data_keys"})
            assert {r["value"]["data"]["store"] for r in confirmed
                    if r["value"]["data"]["request_id"] == request_id} == erasure_stores() - {"rights.data_keys"}

            # A late, redelivered device-enrolled brings nothing back into analytics.
            late = DeviceEnrolled(source="tessera/enrolment", subject=device["participant_id"],
                                  tenant_id=tenant["tenant_id"],
                                  data=DeviceEnrolledData(participant_id=device["participant_id"], platform="ios",
                                                          form_factor="phone", enrolled_at=datetime.now(UTC)))
            await produce(stack.kafka_bootstrap, Topics.DEVICE_ENROLLED, late.model_dump_json().encode(),
                          key=device["participant_id"].encode())
            # Barrier: a device of someone else enrolled after the late one is counted
            # only once the late one was handled (same consumer, one partition key each,
            # so wait on the other participant's contribution written after ours).
            fresh = DeviceEnrolled(source="tessera/enrolment", subject=f"p_{uuid4().hex[:12]}",
                                   tenant_id=tenant["tenant_id"],
                                   data=DeviceEnrolledData(participant_id=device["participant_id"][:2] + uuid4().hex[:12],
                                                           platform="ios", form_factor="phone",
                                                           enrolled_at=datetime.now(UTC)))
            await produce(stack.kafka_bootstrap, Topics.DEVICE_ENROLLED, fresh.model_dump_json().encode(),
                          key=device["participant_id"].encode())
            assert await eventually(lambda: contributions.find_one({"_id": fresh.data.participant_id}))
            assert await contributions.find_one({"_id": device["participant_id"]}) is None

            for service, app in (("enrolment", platform.gateway_app), ("dialogue", platform.dialogue_app),
                                 ("rights", platform.rights_app), ("analytics", analytics_app)):
                database = mongo[app.state.wiring.settings.mongo_database]
                existing = set(await database.list_collection_names())
                undeclared = existing - collections_of(service)
                assert not undeclared, f"{service} has collections the data map does not declare: {undeclared}"
                assert collections_of(service) <= existing, f"the data map names {service} collections never made"
        finally:
            await mongo.close()
