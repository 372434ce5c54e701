"""The data map declares every table the services really create (read from each
database's own catalogue), and every store holding participant data confirms an
erasure under the name the map gives it."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from support.apps import (
    bearer,
    create_tenant,
    enrol_devices,
    running_platform,
    tenant_known_to_dialogue,
)
from support.db import fetchval, tables
from support.kafka import eventually, produce, read_topic
from tessera_common.datamap import DATA_MAP, erasure_stores, tables_of
from tessera_common.events import DeviceEnrolled, DeviceEnrolledData, Topics

pytestmark = pytest.mark.connected


def test_every_erasure_consumer_confirms_under_a_name_the_map_declares():
    from tessera_analytics.handlers import STORE_NAME as analytics
    from tessera_dialogue.handlers import STORE_NAME as dialogue
    from tessera_enrolment.handlers import STORE_NAME as enrolment

    assert {enrolment, dialogue, analytics, "rights.data_keys"} == erasure_stores()
    assert len({(c.service, c.table) for c in DATA_MAP}) == len(DATA_MAP)


async def test_the_map_declares_every_table_the_services_create_and_erasure_reaches_each(stack):
    async with running_platform(stack) as platform:
        # Traffic that makes every kind of document: tenant, code, device, settings,
        # dialogue, answer, data key, rights requests, an objection and an erasure.
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

        analytics = platform.database_url("analytics", owner=True)

        async def contribution(table: str, participant_id: str):
            return await fetchval(analytics, f"SELECT count(*) FROM {table} WHERE participant_id = $1", participant_id)

        assert await eventually(lambda: contribution("answer_contributions", device["participant_id"]))
        objected = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "objection"},
                                               headers=bearer(other["device_token"]))
        assert objected.status_code == 202, objected.text
        erased = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                             headers=bearer(device["device_token"]))
        assert erased.status_code == 202, erased.text
        request_id = erased.json()["request_id"]
        confirmed = await read_topic(stack.kafka, Topics.STORE_ERASURE_COMPLETED, until=lambda rs: {
            r["value"]["data"]["store"] for r in rs if r["value"]["data"]["request_id"] == request_id
        } >= erasure_stores() - {"rights.data_keys"})
        assert {r["value"]["data"]["store"] for r in confirmed
                if r["value"]["data"]["request_id"] == request_id} == erasure_stores() - {"rights.data_keys"}

        # A late, redelivered device-enrolled brings nothing back into analytics.
        late = DeviceEnrolled(source="tessera/enrolment", subject=device["participant_id"],
                              tenant_id=tenant["tenant_id"],
                              data=DeviceEnrolledData(participant_id=device["participant_id"], platform="ios",
                                                      form_factor="phone", enrolled_at=datetime.now(UTC)))
        await produce(stack.kafka, Topics.DEVICE_ENROLLED, late.model_dump_json().encode(),
                      key=device["participant_id"].encode())
        # Barrier: a device enrolled after the late one on the same key is counted
        # only once the late one was handled.
        fresh = DeviceEnrolled(source="tessera/enrolment", subject=f"p_{uuid4().hex[:12]}",
                               tenant_id=tenant["tenant_id"],
                               data=DeviceEnrolledData(participant_id=f"p_{uuid4().hex[:12]}",
                                                       platform="ios", form_factor="phone",
                                                       enrolled_at=datetime.now(UTC)))
        await produce(stack.kafka, Topics.DEVICE_ENROLLED, fresh.model_dump_json().encode(),
                      key=device["participant_id"].encode())
        assert await eventually(lambda: contribution("device_contributions", fresh.data.participant_id))
        assert await contribution("device_contributions", device["participant_id"]) == 0

        for service in ("enrolment", "dialogue", "rights", "analytics"):
            existing = await tables(platform.database_url(service, owner=True))
            undeclared = existing - tables_of(service)
            assert not undeclared, f"{service} has tables the data map does not declare: {undeclared}"
            assert tables_of(service) <= existing, f"the data map names {service} tables never made"
