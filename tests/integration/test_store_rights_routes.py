"""The store side of participants' rights: what enrolment, dialogue and analytics
answer the rights service on their internal routes (access, rectification, retention),
and how they apply dialogue-scoped erasure and objection. Real broker, real store."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest

from support.apps import (
    INTERNAL_TOKEN,
    Platform,
    bearer,
    create_tenant,
    enrol_devices,
    tenant_known_to_dialogue,
)
from support.db import fetchval
from support.kafka import eventually, produce, read_topic
from tessera_common.events import (
    AnswerChanged,
    DeviceEnrolled,
    DeviceEnrolledData,
    ErasureRequested,
    ErasureRequestedData,
    ObjectionRecorded,
    ObjectionRecordedData,
    Topics,
    partition_key,
)

pytestmark = pytest.mark.connected

INTERNAL = bearer(INTERNAL_TOKEN)
QUESTIONS = [
    {"kind": "single_choice", "prompt": "Which park needs work first?",
     "choices": [{"key": "north", "label": "North park"}, {"key": "south", "label": "South park"}]},
    {"kind": "open_text", "prompt": "Why?"},
    {"kind": "scale", "prompt": "How safe do you feel there?", "scale": {"min": 1, "max": 5}},
]



async def new_tenant(platform: Platform) -> dict:
    tenant = await create_tenant(platform.gateway)
    await tenant_known_to_dialogue(platform, tenant)
    return tenant


async def published_dialogue(platform: Platform, tenant: dict, title: str = "Our parks") -> dict:
    base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
    created = await platform.dialogue.post(base, json={"title": title, "questions": QUESTIONS},
                                           headers=bearer(tenant["api_key"]))
    assert created.status_code == 201, created.text
    return await lifecycle(platform, tenant, created.json(), "publish")


async def lifecycle(platform: Platform, tenant: dict, dialogue: dict, move: str) -> dict:
    moved = await platform.dialogue.post(
        f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}/{move}",
        headers=bearer(tenant["api_key"]))
    assert moved.status_code == 200, moved.text
    return moved.json()


def qid(dialogue: dict, kind: str) -> str:
    return next(q["question_id"] for q in dialogue["questions"] if q["kind"] == kind)


async def answer(platform: Platform, device: dict, dialogue: dict, kind: str, value) -> dict:
    response = await platform.gateway.put(
        f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{qid(dialogue, kind)}/answer",
        json={"value": value}, headers=bearer(device["device_token"]))
    assert response.status_code in (200, 201), response.text
    return response.json()


def participant_path(tenant: dict, device: dict, tail: str = "") -> str:
    return f"/internal/v1/tenants/{tenant['tenant_id']}/participants/{device['participant_id']}{tail}"


async def exported(platform: Platform, tenant: dict, device: dict) -> list[dict]:
    response = await platform.dialogue.get(participant_path(tenant, device, "/data"), headers=INTERNAL)
    assert response.status_code == 200, response.text
    return response.json()["records"]


async def confirmations(stack, topic: str, request_id: str, until: Callable[[list[dict]], bool]) -> list[dict]:
    """The ``data`` of every confirmation of ``request_id`` on ``topic``, once ``until`` holds for them."""
    def of_request(records: list[dict]) -> list[dict]:
        return [r["value"]["data"] for r in records if r["value"]["data"]["request_id"] == request_id]

    return of_request(await read_topic(stack.kafka, topic, until=lambda rs: until(of_request(rs))))


async def assert_unauthorised(client: httpx.AsyncClient, method: str, path: str, **kwargs) -> None:
    """No token, a wrong token, and a tenant's API key in its place: each is 401."""
    for headers in ({}, bearer("not-the-internal-token"), bearer(f"tak_{uuid4().hex}.{'A' * 43}")):
        response = await client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 401, response.text
        assert response.json()["detail"]["code"] == "invalid_internal_token"


async def test_enrolment_tells_only_the_participants_own_tenant_about_them_and_never_the_token(platform):
    tenant, other = await new_tenant(platform), await new_tenant(platform)
    (device,) = await enrol_devices(platform, tenant, 1)

    found = await platform.gateway.get(participant_path(tenant, device), headers=INTERNAL)
    assert found.status_code == 200
    assert found.json() == {"participant_id": device["participant_id"], "tenant_id": tenant["tenant_id"]}
    for path in (participant_path(other, device), participant_path(tenant, {"participant_id": "p_unknown"})):
        missing = await platform.gateway.get(path, headers=INTERNAL)
        assert missing.status_code == 404 and missing.json()["detail"]["code"] == "participant_not_found"

    data = await platform.gateway.get(participant_path(tenant, device, "/data"), headers=INTERNAL)
    assert data.status_code == 200
    body = data.json()
    assert (body["store"], body["categories"]) == ("enrolment.devices", ["device_facts"])
    (record,) = body["records"]
    assert set(record) == {"participant_id", "platform", "form_factor", "enrolled_at"}
    assert (record["participant_id"], record["platform"], record["form_factor"]) == (
        device["participant_id"], "ios", "phone")
    assert "token" not in data.text and "outbox" not in data.text
    device_secret = device["device_token"].split(".", 1)[1]
    assert device_secret not in data.text
    elsewhere = await platform.gateway.get(participant_path(other, device, "/data"), headers=INTERNAL)
    assert elsewhere.status_code == 200 and elsewhere.json()["records"] == []

    for path in (participant_path(tenant, device), participant_path(tenant, device, "/data")):
        await assert_unauthorised(platform.gateway, "GET", path)
    bad_id = await platform.gateway.get(participant_path(tenant, {"participant_id": "p.$where"}), headers=INTERNAL)
    assert bad_id.status_code == 422
    # The rights routes are forwarded by the gateway: a device token is required there.
    assert (await platform.gateway.get("/v1/me/rights-requests")).status_code == 401


async def test_dialogue_exports_every_current_answer_with_what_was_asked(platform):
    tenant, other = await new_tenant(platform), await new_tenant(platform)
    dialogue = await published_dialogue(platform, tenant, title="Parks 2030")
    (device,) = await enrol_devices(platform, tenant, 1)
    # Letters only: a random hex tail such as "9320fb" reads as a postcode and is flagged.
    text = f"More shade near the playground {''.join(random.choices(string.ascii_lowercase, k=8))}"
    choice = await answer(platform, device, dialogue, "single_choice", "north")
    written = await answer(platform, device, dialogue, "open_text", text)
    await answer(platform, device, dialogue, "scale", 3)
    withdrawn = await platform.gateway.delete(
        f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{qid(dialogue, 'scale')}/answer",
        headers=bearer(device["device_token"]))
    assert withdrawn.status_code == 204

    response = await platform.dialogue.get(participant_path(tenant, device, "/data"), headers=INTERNAL)
    assert response.status_code == 200
    body = response.json()
    assert (body["store"], body["categories"]) == ("dialogue.answers", ["answers"])
    records = {r["answer_id"]: r for r in body["records"]}
    assert set(records) == {choice["answer_id"], written["answer_id"]}  # the withdrawn one is gone
    assert records[written["answer_id"]] == {
        "answer_id": written["answer_id"], "dialogue_id": dialogue["dialogue_id"], "dialogue_title": "Parks 2030",
        "question_id": qid(dialogue, "open_text"), "question_prompt": "Why?", "question_kind": "open_text",
        "value": text, "screening_action": "none", "submitted_at": records[written["answer_id"]]["submitted_at"],
        "updated_at": records[written["answer_id"]]["updated_at"], "version": 1,
    }
    assert records[choice["answer_id"]]["value"] == "north"
    assert "fingerprint" not in response.text and "outbox" not in response.text

    assert await exported(platform, other, device) == []
    await assert_unauthorised(platform.dialogue, "GET", participant_path(tenant, device, "/data"))


async def test_rectification_reaches_a_closed_dialogue_is_published_and_bad_values_change_nothing(platform, stack):
    tenant, other = await new_tenant(platform), await new_tenant(platform)
    dialogue = await published_dialogue(platform, tenant)
    first, second = await enrol_devices(platform, tenant, 2)
    original = await answer(platform, first, dialogue, "single_choice", "north")
    await lifecycle(platform, tenant, dialogue, "close")
    path = participant_path(tenant, first, f"/answers/{original['answer_id']}")

    # The participant's own change is refused once the dialogue closed ...
    own = await platform.gateway.put(f"/v1/me/answers/{original['answer_id']}", json={"value": "south"},
                                     headers=bearer(first["device_token"]))
    assert own.status_code == 409 and own.json()["detail"]["code"] == "dialogue_not_open"
    # ... but their right to rectification outlives the window.
    rectified = await platform.dialogue.put(path, json={"value": "south"}, headers=INTERNAL)
    assert rectified.status_code == 200, rectified.text
    assert (rectified.json()["answer_id"], rectified.json()["value"], rectified.json()["version"]) == (
        original["answer_id"], "south", 2)

    records = await read_topic(stack.kafka, Topics.ANSWER_CHANGED, until=lambda rs: any(
        r["value"]["data"]["answer_id"] == original["answer_id"] for r in rs))
    (change,) = [AnswerChanged.model_validate(r["value"]) for r in records
                 if r["value"]["data"]["answer_id"] == original["answer_id"]]
    assert (change.data.change, change.data.version, change.data.choices) == ("edited", 2, ["south"])
    assert change.data.participant_id == first["participant_id"] and change.tenant_id == tenant["tenant_id"]

    for bad in ("west", ["north"], 3, {"$gt": ""}):
        refused = await platform.dialogue.put(path, json={"value": bad}, headers=INTERNAL)
        assert refused.status_code == 422, (bad, refused.text)
    assert (await platform.dialogue.put(path, json={"value": "south", "extra": 1}, headers=INTERNAL)).status_code == 422
    (kept,) = await exported(platform, tenant, first)
    assert (kept["value"], kept["version"]) == ("south", 2)

    for elsewhere in (participant_path(other, first, f"/answers/{original['answer_id']}"),
                      participant_path(tenant, second, f"/answers/{original['answer_id']}"),
                      participant_path(tenant, first, "/answers/a_unknown")):
        missing = await platform.dialogue.put(elsewhere, json={"value": "north"}, headers=INTERNAL)
        assert missing.status_code == 404 and missing.json()["detail"]["code"] == "answer_not_found"
    await assert_unauthorised(platform.dialogue, "PUT", path, json={"value": "north"})
    (still,) = await exported(platform, tenant, first)
    assert (still["value"], still["version"]) == ("south", 2)


async def test_retention_finds_closed_dialogues_and_a_dialogue_scoped_erasure_deletes_only_there(platform, stack):
    tenant, other = await new_tenant(platform), await new_tenant(platform)
    kept, expiring = await published_dialogue(platform, tenant, "Kept"), await published_dialogue(platform, tenant)
    device, withdrawer = await enrol_devices(platform, tenant, 2)
    # Expiring first: the kept dialogue's answers, behind them in the same partition,
    # are then the barrier that analytics has finished with the expiring ones.
    for dialogue in (expiring, kept):
        await answer(platform, device, dialogue, "single_choice", "north")
        await answer(platform, device, dialogue, "scale", 4)
    await answer(platform, withdrawer, expiring, "scale", 2)
    assert (await platform.gateway.delete(
        f"/v1/me/dialogues/{expiring['dialogue_id']}/questions/{qid(expiring, 'scale')}/answer",
        headers=bearer(withdrawer["device_token"]))).status_code == 204
    before_closing = datetime.now(UTC)
    await lifecycle(platform, tenant, expiring, "close")

    async def closed(tenant_id: str, before: datetime) -> list[dict]:
        response = await platform.dialogue.get(
            f"/internal/v1/tenants/{tenant_id}/retention/closed-dialogues",
            params={"closed_before": before.isoformat()}, headers=INTERNAL)
        assert response.status_code == 200, response.text
        return response.json()["dialogues"]

    later = datetime.now(UTC) + timedelta(minutes=1)
    (found,) = await closed(tenant["tenant_id"], later)
    assert found["dialogue_id"] == expiring["dialogue_id"]
    assert before_closing <= datetime.fromisoformat(found["closed_at"]) <= later
    assert await closed(tenant["tenant_id"], before_closing) == []
    assert await closed(other["tenant_id"], later) == []
    naive = await platform.dialogue.get(f"/internal/v1/tenants/{tenant['tenant_id']}/retention/closed-dialogues",
                                        params={"closed_before": "2030-01-01T00:00:00"}, headers=INTERNAL)
    assert naive.status_code == 422

    participants_path = (f"/internal/v1/tenants/{tenant['tenant_id']}/retention/dialogues/"
                         f"{expiring['dialogue_id']}/participants")

    async def participants(path: str = participants_path, **params) -> list[str]:
        response = await platform.dialogue.get(path, params=params, headers=INTERNAL)
        assert response.status_code == 200, response.text
        return response.json()["participant_ids"]

    # The withdrawer's tombstone still counts: retention must erase it too.
    assert sorted(await participants()) == sorted([device["participant_id"], withdrawer["participant_id"]])
    assert len(await participants(limit=1)) == 1
    assert await participants(participants_path.replace(tenant["tenant_id"], other["tenant_id"])) == []
    await assert_unauthorised(platform.dialogue, "GET", participants_path)

    # Analytics holds the two answers to the expiring dialogue before it expires, and
    # is done with them: it handles a partition in order, and the kept dialogue's
    # answers came later.
    analytics = platform.database_url("analytics", owner=True)

    async def both_counted():
        count = ("SELECT count(*) FROM answer_contributions WHERE participant_id = $1 AND dialogue_id = $2"
                 " AND ($3::text IS NULL OR question_id = $3)")
        return (await fetchval(analytics, count, device["participant_id"], expiring["dialogue_id"], None) == 2
                and await fetchval(analytics, count, device["participant_id"], kept["dialogue_id"],
                                   qid(kept, "scale")) == 1)

    assert await eventually(both_counted)
    request_id = f"r_{uuid4().hex[:12]}"
    erasure = ErasureRequested(
        source="tessera/test", subject=request_id, tenant_id=tenant["tenant_id"],
        data=ErasureRequestedData(request_id=request_id, participant_id=device["participant_id"],
                                  reason="retention", requested_at=datetime.now(UTC),
                                  dialogue_id=expiring["dialogue_id"]))
    await produce(stack.kafka, Topics.ERASURE_REQUESTED, erasure.model_dump_json().encode(),
                  key=partition_key(device["participant_id"]))
    ours = {"enrolment.devices", "dialogue.answers", "analytics.contributions"}
    confirmed = await confirmations(stack, Topics.STORE_ERASURE_COMPLETED, request_id,
                                    until=lambda cs: ours <= {c["store"] for c in cs})
    assert {c["store"]: c["documents_deleted"] for c in confirmed if c["store"] in ours} == {
        "enrolment.devices": 0, "dialogue.answers": 2, "analytics.contributions": 2}

    remaining = await exported(platform, tenant, device)
    assert {r["dialogue_id"] for r in remaining} == {kept["dialogue_id"]} and len(remaining) == 2
    assert await participants() == [withdrawer["participant_id"]]
    # The participant is still there: their device works and their facts are kept.
    assert (await platform.gateway.get("/v1/me", headers=bearer(device["device_token"]))).status_code == 200
    assert (await platform.gateway.get(participant_path(tenant, device), headers=INTERNAL)).status_code == 200
    # And may still answer elsewhere: no erased marker was left behind.
    assert (await answer(platform, device, kept, "scale", 5))["version"] == 2


async def test_an_objection_removes_the_contribution_confirms_and_a_late_enrolment_stays_out(platform, stack):
    analytics = platform.analytics
    tenant, other = await new_tenant(platform), await new_tenant(platform)
    (device,) = await enrol_devices(platform, tenant, 1)
    path = participant_path(tenant, device, "/data")

    async def contribution(p: str = path) -> dict:
        response = await analytics.get(p, headers=INTERNAL)
        assert response.status_code == 200, response.text
        return response.json()

    counted = await eventually(lambda: _with_records(contribution()))
    assert counted == {"store": "analytics.contributions", "categories": ["device_facts", "aggregates"],
                       "records": [{"platform": "ios", "form_factor": "phone"}], "objected": False}
    assert await contribution(participant_path(other, device, "/data")) == {
        "store": "analytics.contributions", "categories": ["device_facts", "aggregates"], "records": [],
        "objected": False}
    await assert_unauthorised(analytics, "GET", path)

    request_id = f"r_{uuid4().hex[:12]}"
    objection = ObjectionRecorded(
        source="tessera/test", subject=request_id, tenant_id=tenant["tenant_id"],
        data=ObjectionRecordedData(request_id=request_id, participant_id=device["participant_id"],
                                   recorded_at=datetime.now(UTC)))
    raw = objection.model_dump_json().encode()
    await produce(stack.kafka, Topics.OBJECTION_RECORDED, raw, key=partition_key(device["participant_id"]))
    (applied,) = await confirmations(stack, Topics.OBJECTION_APPLIED, request_id, until=lambda cs: len(cs) >= 1)
    assert (applied["store"], applied["documents_deleted"]) == ("analytics.contributions", 1)
    assert await contribution() == {"store": "analytics.contributions", "categories": ["device_facts", "aggregates"],
                                    "records": [], "objected": True}
    assert (await contribution(participant_path(other, device, "/data")))["objected"] is False

    # Redelivered, the objection deletes nothing more and confirms again.
    await produce(stack.kafka, Topics.OBJECTION_RECORDED, raw, key=partition_key(device["participant_id"]))
    again = await confirmations(stack, Topics.OBJECTION_APPLIED, request_id, until=lambda cs: len(cs) >= 2)
    assert [c["documents_deleted"] for c in again] == [1, 0]

    # A redelivered device-enrolled of the objector brings nothing back. Barrier: a
    # newcomer's enrolment on the same partition is counted only after it was handled.
    def enrolled(participant_id: str) -> DeviceEnrolled:
        return DeviceEnrolled(source="tessera/enrolment", subject=participant_id, tenant_id=tenant["tenant_id"],
                              data=DeviceEnrolledData(participant_id=participant_id, platform="android",
                                                      form_factor="tablet", enrolled_at=datetime.now(UTC)))

    newcomer = f"p_{uuid4().hex[:16]}"
    for event in (enrolled(device["participant_id"]), enrolled(newcomer)):
        await produce(stack.kafka, Topics.DEVICE_ENROLLED, event.model_dump_json().encode(),
                      key=partition_key(device["participant_id"]))
    await eventually(lambda: _with_records(contribution(participant_path(tenant, {"participant_id": newcomer},
                                                                         "/data"))))
    assert (await contribution())["records"] == []


async def _with_records(body) -> dict | None:
    found = await body
    return found if found["records"] else None
