"""What the participant app needs of the API (issue 15), through the real gateway:
the platform's own screening of a text before it is sent, an erasure's status and
receipt by its status secret once the device token no longer works, a rectification
refused for personal data that still says where, and an erasure asked for again while
it runs answering with the open one."""

from __future__ import annotations


import pytest

from support.apps import (
    Platform,
    bearer,
    create_tenant,
    enrol_devices,
    tenant_known_to_dialogue,
    tenant_known_to_rights,
)
from support.kafka import eventually
from tessera_rights.domain import verify_receipt

pytestmark = pytest.mark.connected

EMAIL_TEXT = "Mail me at jan.jansen@example.nl about the benches"



async def tenant_with_text_question(platform: Platform, policy: str = "warn") -> tuple[dict, dict]:
    tenant = await create_tenant(platform.gateway)
    await tenant_known_to_dialogue(platform, tenant)
    await tenant_known_to_rights(platform, tenant)
    auth = bearer(tenant["api_key"])
    assert (await platform.dialogue.put(f"/v1/tenants/{tenant['tenant_id']}/settings", headers=auth,
                                        json={"pii_policy": policy})).status_code == 200
    base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
    dialogue = (await platform.dialogue.post(base, headers=auth, json={
        "title": "Park", "questions": [{"kind": "open_text", "prompt": "What would you change?"}]})).json()
    assert (await platform.dialogue.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=auth)).status_code == 200
    return tenant, dialogue


async def test_the_app_can_screen_a_text_before_sending_it(platform):
    tenant, _ = await tenant_with_text_question(platform, policy="reject")
    (device,) = await enrol_devices(platform, tenant, 1)
    me = bearer(device["device_token"])

    found = await platform.gateway.post("/v1/me/screening", json={"text": EMAIL_TEXT}, headers=me)
    assert found.status_code == 200, found.text
    assert found.json()["policy"] == "reject"
    (finding,) = [f for f in found.json()["findings"] if f["kind"] == "email"]
    assert EMAIL_TEXT[finding["start"]:finding["end"]] == "jan.jansen@example.nl"
    clean = await platform.gateway.post("/v1/me/screening", json={"text": "More benches, please"}, headers=me)
    assert clean.json() == {"findings": [], "policy": "reject"}

    refused = [
        await platform.gateway.post("/v1/me/screening", json={"text": EMAIL_TEXT}),
        await platform.gateway.post("/v1/me/screening", json={"text": ""}, headers=me),
        await platform.gateway.post("/v1/me/screening", json={"text": "x" * 2001}, headers=me),
        await platform.gateway.post("/v1/me/screening", json={"text": {"$gt": ""}}, headers=me),
    ]
    assert [r.status_code for r in refused] == [401, 422, 422, 422]


async def test_a_rectification_refused_for_personal_data_says_where(platform):
    tenant, dialogue = await tenant_with_text_question(platform, policy="reject")
    (device,) = await enrol_devices(platform, tenant, 1)
    question = dialogue["questions"][0]["question_id"]
    answered = await platform.gateway.put(
        f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{question}/answer",
        json={"value": "More benches"}, headers=bearer(device["device_token"]))
    assert answered.status_code == 201, answered.text

    rectified = await platform.gateway.post("/v1/me/rights-requests", headers=bearer(device["device_token"]), json={
        "kind": "rectification", "answer_id": answered.json()["answer_id"], "value": EMAIL_TEXT})
    assert rectified.status_code == 422, rectified.text
    detail = rectified.json()["detail"]
    assert detail["code"] == "personal_data"
    assert any(EMAIL_TEXT[f["start"]:f["end"]] == "jan.jansen@example.nl" for f in detail["findings"])


async def test_status_and_receipt_reach_the_phone_through_the_gateway_and_a_repeat_returns_the_open_one(platform):
    tenant, _ = await tenant_with_text_question(platform)
    (device,) = await enrol_devices(platform, tenant, 1)
    await platform.stop("analytics")  # the erasure waits for it: still running below
    try:
        asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                            headers=bearer(device["device_token"]))
        assert asked.status_code == 202, asked.text
        request_id, secret = asked.json()["request_id"], asked.json()["status_secret"]

        async def device_gone():
            return (await platform.gateway.get("/v1/me", headers=bearer(device["device_token"]))).status_code == 401

        assert await eventually(device_gone, timeout=60)
        # The token is refused now; the status secret still reaches the request, on the gateway.
        status = await platform.gateway.get(f"/v1/rights-requests/{request_id}", headers=bearer(secret))
        assert status.status_code == 200 and status.json()["status"] == "in_progress", status.text
        assert (await platform.gateway.get(f"/v1/rights-requests/{request_id}",
                                           headers=bearer("rss_forged"))).status_code == 401
        # The tenant asking for the same erasure again gets the open one.
        again = await platform.rights.post(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                           headers=bearer(tenant["api_key"]),
                                           json={"kind": "erasure", "participant_id": device["participant_id"]})
        assert again.status_code == 200 and again.json()["request_id"] == request_id, again.text
    finally:
        await platform.start("analytics")

    async def completed():
        now = await platform.gateway.get(f"/v1/rights-requests/{request_id}", headers=bearer(secret))
        return now.json() if now.json()["status"] == "completed" else None

    await eventually(completed, timeout=90)
    receipt = await platform.gateway.get(f"/v1/rights-requests/{request_id}/receipt", headers=bearer(secret))
    key = await platform.gateway.get("/v1/rights/receipt-key")
    assert receipt.status_code == 200 and key.status_code == 200
    assert verify_receipt(key.json()["public_key"], receipt.json())
    # Once completed, asking again is refused with the reason.
    after = await platform.rights.post(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                       headers=bearer(tenant["api_key"]),
                                       json={"kind": "erasure", "participant_id": device["participant_id"]})
    assert after.status_code == 409 and after.json()["detail"]["code"] == "participant_erased"
