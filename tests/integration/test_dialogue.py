"""Dialogues end to end in-process: tenant → dialogue service; phone → gateway →
dialogue (assertion) → rights (data key) → store → Kafka. Real broker, real store."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from support.apps import (
    Platform,
    bearer,
    enrol_devices,
    opened,
)
from support.apps import PARK_QUESTIONS as QUESTIONS
from support.apps import dialogue_tenant as new_tenant
from support.db import fetchval
from support.kafka import eventually, produce, read_topic
from tessera_common.crypto import open_text
from tessera_common.events import (
    AnswerChanged,
    AnswerSubmitted,
    EncryptedText,
    ErasureRequested,
    ErasureRequestedData,
    StoreErasureCompleted,
    Topics,
)
from tessera_common.identity import ASSERTION_HEADER, Participant, sign_assertion

pytestmark = pytest.mark.connected



async def published_dialogue(platform: Platform, tenant: dict, questions=QUESTIONS) -> dict:
    base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
    auth = bearer(tenant["api_key"])
    created = await platform.dialogue.post(base, json={"title": "Our parks", "intro": "Tell us.",
                                                       "questions": questions}, headers=auth)
    assert created.status_code == 201, created.text
    dialogue = created.json()
    published = await platform.dialogue.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=auth)
    assert published.status_code == 200, published.text
    return published.json()


def qid(dialogue: dict, kind: str) -> str:
    return next(q["question_id"] for q in dialogue["questions"] if q["kind"] == kind)


def answer_path(dialogue: dict, kind: str, tail: str = "answer") -> str:
    return f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{qid(dialogue, kind)}/{tail}"


async def answer(platform: Platform, device: dict, dialogue: dict, kind: str, value, key: str | None = None):
    headers = bearer(device["device_token"])
    if key:
        headers["Idempotency-Key"] = key
    return await platform.gateway.put(answer_path(dialogue, kind), json={"value": value}, headers=headers)


async def group(platform: Platform, device: dict, dialogue: dict, kind: str):
    return await platform.gateway.get(answer_path(dialogue, kind, "group"), headers=bearer(device["device_token"]))


async def test_answers_group_view_at_k_edits_and_withdrawals_through_the_gateway(platform, stack):
    tenant = await new_tenant(platform, min_group_size=4)
    dialogue = await published_dialogue(platform, tenant)
    devices = await enrol_devices(platform, tenant, 4)

    listed = await platform.gateway.get("/v1/me/dialogues", headers=bearer(devices[0]["device_token"]))
    assert listed.status_code == 200
    assert [d["dialogue_id"] for d in listed.json()["dialogues"]] == [dialogue["dialogue_id"]]
    fetched = await platform.gateway.get(f"/v1/me/dialogues/{dialogue['dialogue_id']}",
                                         headers=bearer(devices[0]["device_token"]))
    assert [q["kind"] for q in fetched.json()["questions"]] == [q["kind"] for q in QUESTIONS]

    for i, device in enumerate(devices[:3]):
        first = await answer(platform, device, dialogue, "single_choice", "north" if i < 2 else "south")
        assert first.status_code == 201, first.text
        assert (await group(platform, device, dialogue, "single_choice")).json() == {
            "status": "not_enough_answers", "min_group_size": 4}

    fourth = await answer(platform, devices[3], dialogue, "single_choice", "south")
    assert fourth.status_code == 201
    view = (await group(platform, devices[3], dialogue, "single_choice")).json()
    assert view["status"] == "ready" and view["respondents"] == 4
    assert {c["key"]: c["count"] for c in view["choices"]} == {"north": 2, "south": 2}
    assert not any(d["participant_id"] in repr(view) for d in devices)

    # Edit: 201 becomes 200, version 2, and the view follows.
    edited = await answer(platform, devices[3], dialogue, "single_choice", "north")
    assert edited.status_code == 200 and edited.json()["version"] == 2
    view = (await group(platform, devices[0], dialogue, "single_choice")).json()
    assert {c["key"]: c["count"] for c in view["choices"]} == {"north": 3, "south": 1}

    # Withdraw: back below k, and the participant's own list no longer has it.
    withdrawn = await platform.gateway.delete(answer_path(dialogue, "single_choice"),
                                              headers=bearer(devices[3]["device_token"]))
    assert withdrawn.status_code == 204
    assert (await group(platform, devices[0], dialogue, "single_choice")).json()["status"] == "not_enough_answers"
    mine = await platform.gateway.get("/v1/me/answers", headers=bearer(devices[3]["device_token"]))
    assert mine.json()["answers"] == []
    # The group view is for those who answered.
    refused = await group(platform, devices[3], dialogue, "single_choice")
    assert refused.status_code == 409 and refused.json()["detail"]["code"] == "answer_first"

    answer_ids = {edited.json()["answer_id"]}
    events = await read_topic(stack.kafka, Topics.ANSWER_CHANGED,
                              until=lambda rs: sum(r["value"]["data"]["answer_id"] in answer_ids for r in rs) >= 2)
    changes = [AnswerChanged.model_validate(r["value"]) for r in events if r["value"]["data"]["answer_id"] in answer_ids]
    assert [(c.data.change, c.data.version, c.data.choices) for c in changes] == [
        ("edited", 2, ["north"]), ("withdrawn", 3, [])]
    assert all(r["key"] == devices[3]["participant_id"].encode() for r in events
               if r["value"]["data"]["answer_id"] in answer_ids)


async def test_every_kind_validates_and_text_travels_encrypted_under_the_participants_key(platform, stack):
    tenant = await new_tenant(platform)
    dialogue = await published_dialogue(platform, tenant)
    (device,) = await enrol_devices(platform, tenant, 1)
    text = f"The lamps at the north gate are broken {uuid4().hex}"

    assert (await answer(platform, device, dialogue, "multiple_choice", ["trees", "benches"])).status_code == 201
    assert (await answer(platform, device, dialogue, "scale", 2)).status_code == 201
    written = await answer(platform, device, dialogue, "open_text", text)
    assert written.status_code == 201 and written.json()["value"] == text
    idea = await platform.gateway.post(answer_path(dialogue, "idea", "ideas"), json={"value": "A small stage"},
                                       headers=bearer(device["device_token"]))
    assert idea.status_code == 201
    mine = (await platform.gateway.get("/v1/me/answers", headers=bearer(device["device_token"]))).json()["answers"]
    assert {a["kind"]: a["value"] for a in mine} == {
        "multiple_choice": ["benches", "trees"], "scale": 2, "open_text": text, "idea": "A small stage"}

    records = await read_topic(stack.kafka, Topics.ANSWER_SUBMITTED,
                               until=lambda rs: any(r["value"]["data"]["answer_id"] == written.json()["answer_id"]
                                                    for r in rs))
    assert all(text.encode() not in r["raw"] for r in records)
    event = next(AnswerSubmitted.model_validate(r["value"]) for r in records
                 if r["value"]["data"]["answer_id"] == written.json()["answer_id"])
    assert event.data.participant_id == device["participant_id"] and event.tenant_id == tenant["tenant_id"]
    key = await platform.rights.get(f"/internal/v1/data-keys/{device['participant_id']}",
                                    headers=bearer(platform.rights_app.state.wiring.settings.internal_token
                                                   .get_secret_value()))
    assert key.status_code == 200
    assert event.data.text is not None and event.data.text.key_id == key.json()["key_id"]
    assert open_text(event.data.text, base64.b64decode(key.json()["key"]), device["participant_id"],
                     "answer-text") == text


async def test_a_retry_with_the_same_idempotency_key_changes_nothing(platform, stack):
    tenant = await new_tenant(platform)
    dialogue = await published_dialogue(platform, tenant)
    (device,) = await enrol_devices(platform, tenant, 1)
    key = f"retry-{uuid4().hex}"

    first = await answer(platform, device, dialogue, "scale", 4, key=key)
    again = await answer(platform, device, dialogue, "scale", 4, key=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    reused = await answer(platform, device, dialogue, "scale", 5, key=key)
    assert reused.status_code == 409 and reused.json()["detail"]["code"] == "idempotency_key_reused"

    idea_headers = {**bearer(device["device_token"]), "Idempotency-Key": f"idea-{uuid4().hex}"}
    ideas = [await platform.gateway.post(answer_path(dialogue, "idea", "ideas"), json={"value": "A fountain"},
                                         headers=idea_headers) for _ in range(3)]
    assert [r.status_code for r in ideas] == [201, 200, 200]
    assert len({r.json()["answer_id"] for r in ideas}) == 1

    answer_id = first.json()["answer_id"]
    # A real change afterwards is a barrier: its event follows any a replay would have
    # made, on the same topic and partition (same participant key).
    changed = await answer(platform, device, dialogue, "scale", 5, key=f"change-{uuid4().hex}")
    assert changed.status_code == 200 and changed.json()["version"] == 2
    changes = await read_topic(stack.kafka, Topics.ANSWER_CHANGED, until=lambda rs: any(
        r["value"]["data"]["answer_id"] == answer_id for r in rs))
    assert [r["value"]["data"]["version"] for r in changes if r["value"]["data"]["answer_id"] == answer_id] == [2]
    records = await read_topic(stack.kafka, Topics.ANSWER_SUBMITTED,
                               until=lambda rs: any(r["value"]["data"]["answer_id"] == answer_id for r in rs))
    assert sum(r["value"]["data"]["answer_id"] == answer_id for r in records) == 1


async def test_screening_policy_warn_redact_reject(platform, stack):
    leaky = "Call me on +31 6 12345678 or mail jan@example.nl"
    auth_settings = {"warn": None, "redact": None, "reject": None}
    for policy in auth_settings:
        tenant = await new_tenant(platform, pii_policy=policy)
        dialogue = await published_dialogue(platform, tenant)
        (device,) = await enrol_devices(platform, tenant, 1)
        response = await answer(platform, device, dialogue, "open_text", leaky)
        stored = await platform.dialogue.get(
            f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}/answers",
            headers=bearer(tenant["api_key"]))
        auth_settings[policy] = (response, stored.json()["answers"])

    warned, (kept,) = auth_settings["warn"]
    assert warned.status_code == 201
    findings = warned.json()["screening"]["findings"]
    assert warned.json()["screening"]["action"] == "flagged"
    assert {(f["kind"], leaky[f["start"]:f["end"]]) for f in findings} == {
        ("phone", "+31 6 12345678"), ("email", "jan@example.nl")}
    assert kept["value"] == leaky and kept["screening"]["action"] == "flagged"

    redacted, (kept,) = auth_settings["redact"]
    assert redacted.status_code == 201 and redacted.json()["screening"]["action"] == "redacted"
    assert kept["value"] == "Call me on [phone] or mail [email]"
    assert {f["kind"] for f in redacted.json()["screening"]["findings"]} == {"phone", "email"}

    rejected, nothing = auth_settings["reject"]
    assert rejected.status_code == 422 and nothing == []
    detail = rejected.json()["detail"]
    assert detail["code"] == "personal_data"
    assert {f["kind"] for f in detail["findings"]} == {"phone", "email"}
    assert "jan@example.nl" not in rejected.text


async def test_the_group_never_sees_a_flagged_text_and_tenants_see_participant_ids(platform):
    tenant = await new_tenant(platform, min_group_size=3)
    dialogue = await published_dialogue(platform, tenant)
    devices = await enrol_devices(platform, tenant, 3)
    texts = ["More shade near the playground", "Fix the path, mail me: piet@example.nl", "Open the toilets"]
    for device, text in zip(devices, texts, strict=True):
        assert (await answer(platform, device, dialogue, "open_text", text)).status_code == 201

    view = (await group(platform, devices[0], dialogue, "open_text")).json()
    assert view["status"] == "ready"
    assert sorted(view["texts"]) == ["Fix the path, mail me: [email]", "Open the toilets"]

    listed = await platform.dialogue.get(
        f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}/answers",
        params={"limit": 2}, headers=bearer(tenant["api_key"]))
    page = listed.json()["answers"]
    rest = (await platform.dialogue.get(
        f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}/answers",
        params={"limit": 2, "offset": 2}, headers=bearer(tenant["api_key"]))).json()["answers"]
    assert len(page) == 2 and len(rest) == 1
    assert {a["participant_id"] for a in page + rest} == {d["participant_id"] for d in devices}
    flagged = next(a for a in page + rest if "piet" in a["value"])
    assert flagged["screening"]["findings"][0]["kind"] == "email"
    one = await platform.dialogue.get(
        f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}/answers",
        params={"participant_id": devices[2]["participant_id"]}, headers=bearer(tenant["api_key"]))
    assert [a["value"] for a in one.json()["answers"]] == ["Open the toilets"]
    injected = await platform.dialogue.get(
        f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}/answers",
        params={"participant_id": '{"$ne": null}'}, headers=bearer(tenant["api_key"]))
    assert injected.status_code == 422


async def test_erasure_deletes_every_answer_confirms_and_nothing_comes_back(platform, stack):
    tenant = await new_tenant(platform)
    dialogue = await published_dialogue(platform, tenant)
    device, other = await enrol_devices(platform, tenant, 2)
    for who in (device, other):
        assert (await answer(platform, who, dialogue, "open_text", f"secret words {uuid4().hex}")).status_code == 201
    request_id = f"r_{uuid4().hex[:12]}"
    event = ErasureRequested(
        source="tessera/test", subject=request_id, tenant_id=tenant["tenant_id"],
        data=ErasureRequestedData(request_id=request_id, participant_id=device["participant_id"],
                                  reason="participant", requested_at=datetime.now(UTC)),
    )
    owner_url = platform.database_url("dialogue", owner=True)

    async def answers_of(participant_id: str) -> int:
        return await fetchval(owner_url, "SELECT count(*) FROM answers WHERE participant_id = $1", participant_id)

    for _ in range(2):  # the second is a redelivery: nothing more, confirmed again
        await produce(stack.kafka, Topics.ERASURE_REQUESTED, event.model_dump_json().encode(),
                      key=device["participant_id"].encode())
    confirmations = await read_topic(
        stack.kafka, Topics.STORE_ERASURE_COMPLETED,
        until=lambda rs: sum(r["value"]["data"]["request_id"] == request_id
                             and r["value"]["data"]["store"] == "dialogue.answers" for r in rs) >= 2)
    mine = [StoreErasureCompleted.model_validate(r["value"]) for r in confirmations
            if r["value"]["data"]["request_id"] == request_id and r["value"]["data"]["store"] == "dialogue.answers"]
    assert sorted(c.data.documents_deleted for c in mine) == [0, 1]
    assert await answers_of(device["participant_id"]) == 0
    assert await answers_of(other["participant_id"]) == 1

    # An assertion issued before the erasure (valid for a minute) cannot write again.
    assertion = sign_assertion(platform.signing_key, Participant(device["participant_id"], tenant["tenant_id"]),
                               "tessera-dialogue")
    late = await platform.dialogue.put(answer_path(dialogue, "scale"), json={"value": 3},
                                       headers={ASSERTION_HEADER: assertion})
    assert late.status_code == 410
    assert await answers_of(device["participant_id"]) == 0


async def test_a_crash_before_publishing_loses_no_event(platform, stack):
    """The answer and its event commit together; whichever replica's relay runs next
    publishes what a process that died after its commit left in the outbox."""
    from tessera_common.events import AnswerSubmittedData
    from tessera_common.postgres import now_ms
    from tessera_dialogue.store import DialogueStore

    tenant = await new_tenant(platform)
    dialogue = await published_dialogue(platform, tenant)
    (device,) = await enrol_devices(platform, tenant, 1)
    participant_id = device["participant_id"]
    answer_id = f"a_crash{uuid4().hex[:10]}"
    now = now_ms()
    event = AnswerSubmitted(source="tessera/dialogue", subject=answer_id, tenant_id=tenant["tenant_id"],
                            data=AnswerSubmittedData(participant_id=participant_id,
                                                     dialogue_id=dialogue["dialogue_id"],
                                                     question_id=qid(dialogue, "scale"), answer_id=answer_id,
                                                     question_kind="scale", scale_value=3, submitted_at=now))
    row = {"_id": answer_id, "tenant_id": tenant["tenant_id"], "participant_id": participant_id,
           "dialogue_id": dialogue["dialogue_id"], "question_id": qid(dialogue, "scale"), "version": 1,
           "submitted_at": now, "kind": "scale", "text_key_id": None, "text_sealed": None, "choices": [], "scale_value": 3,
           "screening_action": "none", "findings": [], "screening_kinds": [], "idempotency_key": None,
           "fingerprint": None, "updated_at": now}
    # Another "process" on the same database: it commits, and dies before any relay of its own runs.
    async with opened(platform.dialogue_app.state.wiring.settings, "dialogue") as database:
        assert await DialogueStore(database).save_answer(
            row, expected_version=None, marker="m_not_erased", freeze_dialogue_at=None, event=event,
            topic=Topics.ANSWER_SUBMITTED)
    records = await read_topic(stack.kafka, Topics.ANSWER_SUBMITTED,
                               until=lambda rs: any(r["value"]["id"] == event.id for r in rs))
    assert sum(r["value"]["id"] == event.id for r in records) == 1
    owner_url = platform.database_url("dialogue", owner=True)

    async def outbox_empty() -> bool:
        return await fetchval(owner_url, "SELECT count(*) FROM outbox WHERE id = $1", event.id) == 0

    assert await eventually(outbox_empty)
    assert await fetchval(owner_url, "SELECT version FROM answers WHERE answer_id = $1", answer_id) == 1


def test_answer_events_carry_text_only_as_ciphertext():
    for model in (AnswerSubmitted, AnswerChanged):
        data = model.model_fields["data"].annotation
        assert data.model_fields["text"].annotation == EncryptedText | None
        assert not any(field.annotation is str for name, field in data.model_fields.items()
                       if name not in ("participant_id", "dialogue_id", "question_id", "answer_id"))


async def test_concurrent_writes_to_one_answer_serialise_by_version(platform, stack):
    import asyncio

    tenant = await new_tenant(platform)
    dialogue = await published_dialogue(platform, tenant)
    (device,) = await enrol_devices(platform, tenant, 1)
    responses = await asyncio.gather(*(answer(platform, device, dialogue, "scale", v) for v in (1, 2, 3, 4, 5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}, statuses
    written = [r.json() for r in responses if r.status_code in (200, 201)]
    assert sorted(w["version"] for w in written) == list(range(1, len(written) + 1))
    mine = (await platform.gateway.get("/v1/me/answers", headers=bearer(device["device_token"]))).json()["answers"]
    (current,) = mine
    last = max(written, key=lambda w: w["version"])
    assert (current["version"], current["value"]) == (last["version"], last["value"])
    changed = await read_topic(stack.kafka, Topics.ANSWER_CHANGED, until=lambda rs: sum(
        r["value"]["data"]["answer_id"] == current["answer_id"] for r in rs) >= len(written) - 1)
    versions = sorted(r["value"]["data"]["version"] for r in changed
                      if r["value"]["data"]["answer_id"] == current["answer_id"])
    assert versions == list(range(2, len(written) + 1))
