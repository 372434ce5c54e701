"""A tenant's own topic on the real broker (issue 16, in part): what its systems read,
valid against the AsyncAPI document, opened by the example consumer in docs/ with keys
fetched in batches while they exist, and unreadable after the participant's erasure."""

from __future__ import annotations

import importlib.util
import json
import secrets
from pathlib import Path

import jsonschema_rs
import pytest

from support.apps import (
    bearer,
    create_tenant,
    enrol_devices,
    tenant_known_to_dialogue,
    tenant_known_to_rights,
)
from support.kafka import eventually
from tessera_common.asyncapi import asyncapi_document

pytestmark = pytest.mark.connected

EXAMPLE = Path(__file__).parents[2] / "docs/examples/tenant_consumer.py"


def example_consumer():
    spec = importlib.util.spec_from_file_location("tenant_consumer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def validators() -> dict[str, jsonschema_rs.Draft202012Validator]:
    """Per CloudEvents type, a validator of the AsyncAPI document's payload schema."""
    document = asyncapi_document()
    return {
        message["name"]: jsonschema_rs.Draft202012Validator(
            {"$ref": message["payload"]["$ref"], "components": document["components"]})
        for message in document["components"]["messages"].values()
    }


async def test_the_tenants_topic_carries_its_answers_dialogues_and_requests_as_the_contract_says(platform, stack):
    tenant = await create_tenant(platform.gateway)
    await tenant_known_to_dialogue(platform, tenant)
    await tenant_known_to_rights(platform, tenant)
    auth = bearer(tenant["api_key"])
    base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
    dialogue = (await platform.dialogue.post(base, headers=auth, json={"title": "Park", "questions": [
        {"kind": "open_text", "prompt": "What would you change?"},
        {"kind": "single_choice", "prompt": "Which?", "choices": [{"key": "n", "label": "North"},
                                                                  {"key": "s", "label": "South"}]},
    ]})).json()
    assert (await platform.dialogue.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=auth)).status_code == 200
    erased, kept = await enrol_devices(platform, tenant, 2)
    texts = {erased["participant_id"]: f"Bankjes {secrets.token_hex(6)}",
             kept["participant_id"]: f"Bomen {secrets.token_hex(6)}"}
    open_q, choice_q = (q["question_id"] for q in dialogue["questions"])
    for device in (erased, kept):
        path = f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions"
        me = bearer(device["device_token"])
        assert (await platform.gateway.put(f"{path}/{open_q}/answer", json={"value": texts[device["participant_id"]]},
                                           headers=me)).status_code == 201
        assert (await platform.gateway.put(f"{path}/{choice_q}/answer", json={"value": "n"},
                                           headers=me)).status_code == 201
    withdrawn = await platform.gateway.delete(f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{choice_q}/answer",
                                              headers=bearer(kept["device_token"]))
    assert withdrawn.status_code == 204

    issued = await platform.gateway.post(f"/v1/tenants/{tenant['tenant_id']}/kafka-credentials", headers=auth,
                                         json={"name": "example consumer"})
    assert issued.status_code == 201, issued.text
    kafka = issued.json()
    consumer = example_consumer()
    seen: list[dict] = []
    async with consumer.TenantStream(kafka["connection"]["bootstrap_servers"], tenant["tenant_id"], tenant["api_key"],
                                     "http://rights.test", group="example", username=kafka["username"],
                                     password=kafka["password"]) as stream:
        stream.rights._transport = platform.rights._transport  # the in-process rights app, not a port

        async def answers_read():
            seen.extend(await stream.batch(timeout_ms=500))
            return len([e for e in seen if e["type"] == "io.tessera.tenant.answer.v1"]) >= 5 or None

        await eventually(answers_read, timeout=60)
        answers = [e["data"] for e in seen if e["type"] == "io.tessera.tenant.answer.v1"]
        # Texts open with keys fetched in one batch; choices and a withdrawal as they happened.
        assert {a["participant_id"]: a["text_opened"] for a in answers if a["question_kind"] == "open_text"} == texts
        assert sorted((a["change"], a["version"]) for a in answers if a["question_kind"] == "single_choice"
                      and a["participant_id"] == kept["participant_id"]) == [("submitted", 1), ("withdrawn", 2)]
        assert all("platform" not in a and "form_factor" not in a for a in answers)  # no device facts per answer
        assert [e["data"]["status"] for e in seen if e["type"] == "io.tessera.tenant.dialogue.v1"] == [
            "draft", "published"]

        # The participant is erased: a notice and the request come on the same topic...
        asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                            headers=bearer(erased["device_token"]))
        assert asked.status_code == 202
        request_id = asked.json()["request_id"]

        async def completed_on_topic():
            seen.extend(await stream.batch(timeout_ms=500))
            return any(e["type"] == "io.tessera.tenant.rights-request.v1" and e["data"]["status"] == "completed"
                       and e["data"]["request_id"] == request_id for e in seen) or None

        await eventually(completed_on_topic, timeout=90)
        notices = [e for e in seen if e["type"] == "io.tessera.tenant.participant-erasure.v1"]
        assert [n["data"]["participant_id"] for n in notices] == [erased["participant_id"]]
        requests = [e["data"] for e in seen if e["type"] == "io.tessera.tenant.rights-request.v1"]
        assert [(r["status"], r["participant_id"]) for r in requests] == [
            ("in_progress", erased["participant_id"]), ("completed", None)]
        # ...and the ciphertext a system kept no longer opens: the key is gone.
        keys = await stream.keys([erased["participant_id"], kept["participant_id"]])
        assert list(keys) == [kept["participant_id"]]
        kept_copy = next(a for a in answers if a["participant_id"] == erased["participant_id"] and a.get("text"))
        assert consumer.open_text(kept_copy["text"], keys.get(erased["participant_id"]),
                                  erased["participant_id"]) is None

    # Every event on the topic validates against the published contract.
    check = validators()
    for event in seen:
        event["data"].pop("text_opened", None)  # the example consumer's own addition
        errors = [e.message for e in check[event["type"]].iter_errors(event)]
        assert not errors, (event["type"], errors)
    assert {e["type"] for e in seen} == set(check)


async def test_a_tenant_gets_only_its_own_participants_keys(platform):
    one, other = await create_tenant(platform.gateway), await create_tenant(platform.gateway)
    for tenant in (one, other):
        await tenant_known_to_rights(platform, tenant)
        await tenant_known_to_dialogue(platform, tenant)
    (device,) = await enrol_devices(platform, one, 1)
    internal = await platform.rights.put(f"/internal/v1/data-keys/{device['participant_id']}",
                                         headers=bearer(platform.rights_app.state.wiring.settings.internal_token
                                                        .get_secret_value()),
                                         json={"tenant_id": one["tenant_id"]})
    assert internal.status_code == 201
    route = "/v1/tenants/{}/data-keys:batchGet"
    body = {"participant_ids": [device["participant_id"], "p_unknown"]}
    own = await platform.rights.post(route.format(one["tenant_id"]), json=body, headers=bearer(one["api_key"]))
    assert own.status_code == 200
    assert [k["participant_id"] for k in own.json()["keys"]] == [device["participant_id"]]
    assert own.json()["missing"] == ["p_unknown"]
    foreign = await platform.rights.post(route.format(other["tenant_id"]), json=body, headers=bearer(other["api_key"]))
    assert foreign.json() == {"keys": [], "missing": sorted(body["participant_ids"])}
    wrong_key = await platform.rights.post(route.format(one["tenant_id"]), json=body, headers=bearer(other["api_key"]))
    too_many = await platform.rights.post(route.format(one["tenant_id"]), headers=bearer(one["api_key"]),
                                          json={"participant_ids": [f"p_{i}" for i in range(501)]})
    injected = await platform.rights.post(route.format(one["tenant_id"]), headers=bearer(one["api_key"]),
                                          json={"participant_ids": [{"$ne": ""}]})
    assert [r.status_code for r in (wrong_key, too_many, injected)] == [403, 422, 422]


async def test_the_gateway_serves_the_contract_and_a_page_to_read_it(platform):
    document = await platform.gateway.get("/asyncapi.json")
    page = await platform.gateway.get("/asyncapi")
    assert document.status_code == 200 and document.json()["asyncapi"] == "3.0.0"
    assert document.json() == json.loads((Path(__file__).parents[2] / "docs/asyncapi.json").read_text())
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "io.tessera.tenant.answer.v1" in page.text and "tenant.{tenant_id}.events.v1" in page.text
