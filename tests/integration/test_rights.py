"""Rights requests end to end on the real stack: erasure fanned out to every store in
the data map, completed only when each confirmed, retried while a store is down,
receipted and audited; access, export, rectification and objection; bad input."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from support.apps import (
    INTERNAL_TOKEN,
    MARKER_KEY,
    Platform,
    bearer,
    create_tenant,
    enrol_devices,
    tenant_known_to_dialogue,
    tenant_known_to_rights,
)
from support.db import connected, fetch, fetchval, tables_mentioning
from support.kafka import eventually, produce, read_to_end, read_topic
from tessera_common.datamap import erasure_stores, objection_stores
from tessera_common.events import Topics
from tessera_common.secrets import erased_marker
from tessera_rights.desk import KEY_CACHES
from tessera_rights.domain import statutory_deadline, verify_receipt

pytestmark = pytest.mark.connected

SECRET_TEXT = "Mijn buurvrouw Trijntje Oosterhuis-Vermeulen wil een bankje bij de vijver"



async def tenant_with_dialogue(platform: Platform) -> tuple[dict, dict]:
    tenant = await create_tenant(platform.gateway)
    await tenant_known_to_dialogue(platform, tenant)
    await tenant_known_to_rights(platform, tenant)
    auth = bearer(tenant["api_key"])
    base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
    created = await platform.dialogue.post(base, headers=auth, json={"title": "Park", "questions": [
        {"kind": "open_text", "prompt": "What would you change?"},
        {"kind": "single_choice", "prompt": "Which park?",
         "choices": [{"key": "north", "label": "North"}, {"key": "south", "label": "South"}]},
    ]})
    assert created.status_code == 201, created.text
    dialogue = created.json()
    assert (await platform.dialogue.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=auth)).status_code == 200
    return tenant, dialogue


async def answer_both(platform: Platform, device: dict, dialogue: dict, text: str = SECRET_TEXT) -> list[dict]:
    answers = []
    for question, value in zip(dialogue["questions"], (text, "north"), strict=True):
        response = await platform.gateway.put(
            f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{question['question_id']}/answer",
            json={"value": value}, headers=bearer(device["device_token"]))
        assert response.status_code == 201, response.text
        answers.append(response.json())
    return answers


async def request_status(platform: Platform, request_id: str, secret: str) -> dict:
    response = await platform.rights.get(f"/v1/rights-requests/{request_id}", headers=bearer(secret))
    assert response.status_code == 200, response.text
    return response.json()


async def completed(platform: Platform, request_id: str, secret: str, timeout: float = 60) -> dict:
    async def done():
        status = await request_status(platform, request_id, secret)
        return status if status["status"] == "completed" else None

    return await eventually(done, timeout=timeout)


async def contributions_of(platform: Platform, participant_id: str):
    rows = await fetch(platform.database_url("analytics", owner=True),
                       "SELECT * FROM device_contributions WHERE participant_id = $1", participant_id)
    return rows[0] if rows else None


async def databases_mentioning(platform: Platform, *needles: str) -> list[str]:
    """Every table of every service's database with a row that contains a needle, read
    as each database's owner (every tenant's rows)."""
    found = []
    for service in ("enrolment", "dialogue", "rights", "analytics"):
        found += [f"{service}.{table}"
                  for table in await tables_mentioning(platform.database_url(service, owner=True), *needles)]
    return found


async def test_erasure_through_the_gateway_reaches_every_store_and_leaves_a_signed_receipt(platform, stack):
    tenant, dialogue = await tenant_with_dialogue(platform)
    device, other = await enrol_devices(platform, tenant, 2)
    pid = device["participant_id"]
    await answer_both(platform, device, dialogue)
    await answer_both(platform, other, dialogue, text="Meer bomen graag")
    assert await eventually(lambda: contributions_of(platform, pid))

    # An earlier access request keeps the participant ID until the erasure completes.
    access = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "access"},
                                         headers=bearer(device["device_token"]))
    assert access.status_code == 202 and access.json()["participant_id"] == pid

    asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                        headers=bearer(device["device_token"]))
    assert asked.status_code == 202, asked.text
    request = asked.json()
    secret = request["status_secret"]
    assert request["kind"] == "erasure" and request["actor"] == "participant" and request["status"] == "in_progress"
    received = datetime.fromisoformat(request["received_at"])
    assert datetime.fromisoformat(request["deadline"]) == statutory_deadline(received)
    # The data key is destroyed before anything else: its store is confirmed at once.
    first = {p["store"]: p["status"] for p in request["progress"]}
    assert first["rights.data_keys"] == "confirmed" and set(first) == set(erasure_stores()) | {KEY_CACHES}
    # Dialogue sealed the participant's text under the key and keeps it cached: the
    # erasure waits for that process's word that it dropped the key.
    assert first[KEY_CACHES] == "pending"
    key = await platform.rights.get(f"/internal/v1/data-keys/{pid}", headers=bearer(INTERNAL_TOKEN))
    assert key.status_code == 410

    done = await completed(platform, request["request_id"], secret)
    assert {p["store"] for p in done["progress"] if p["status"] == "confirmed"} == set(erasure_stores()) | {KEY_CACHES}
    assert next(p for p in done["progress"] if p["store"] == KEY_CACHES)["documents_deleted"] == 1
    assert done["participant_id"] is None and done["completed_at"] is not None

    # The device token no longer opens anything; the status secret still does.
    assert (await platform.gateway.get("/v1/me", headers=bearer(device["device_token"]))).status_code == 401
    again = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                        headers=bearer(device["device_token"]))
    assert again.status_code == 401

    # The receipt verifies with the published key, names every store, and breaks if changed.
    receipt = (await platform.rights.get(f"/v1/rights-requests/{request['request_id']}/receipt",
                                         headers=bearer(secret))).json()
    public = (await platform.rights.get("/v1/rights/receipt-key")).json()
    assert public["algorithm"] == "Ed25519" and receipt["key_id"] == public["key_id"]
    assert verify_receipt(public["public_key"], receipt)
    assert {s["store"] for s in receipt["receipt"]["stores"]} == set(erasure_stores()) | {KEY_CACHES}
    assert receipt["receipt"]["subject"] == erased_marker(MARKER_KEY, pid)
    forged = json.loads(json.dumps(receipt))
    forged["receipt"]["stores"] = forged["receipt"]["stores"][1:]
    assert not verify_receipt(public["public_key"], forged)

    # The tenant's own topic carries the erasure notice for downstream copies.
    # (It also carries the tenant's answers, dialogues and rights requests: issue 16.)
    def is_notice(record) -> bool:
        value = record["value"]
        return (value["type"] == "io.tessera.tenant.participant-erasure.v1"
                and value["data"]["request_id"] == request["request_id"])

    notices = await read_topic(stack.kafka, Topics.for_tenant(tenant["tenant_id"]),
                               until=lambda rs: any(is_notice(r) for r in rs))
    notice = next(r["value"] for r in notices if is_notice(r))
    assert notice["data"]["participant_id"] == pid and notice["data"]["reason"] == "participant"

    # The audit trail: every step, valid, and never the raw participant ID.
    auth = bearer(tenant["api_key"])
    trail = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/audit", headers=auth)).json()["entries"]
    actions = [e["record"]["action"] for e in trail if e["record"]["request_id"] == request["request_id"]]
    assert actions[:3] == ["request_received", "data_key_destroyed", "erasure_requested"]
    assert actions.count("store_confirmed") == len(erasure_stores()) and actions[-1] == "request_completed"
    assert pid not in json.dumps(trail)
    verification = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/audit/verification",
                                              headers=auth)).json()
    assert verification["valid"] is True and verification["entries"] == len(trail)
    assert verify_receipt(public["public_key"], verification["signed"])

    # Nothing about the participant is left in any database: no ID, no answer text.
    assert await databases_mentioning(platform, pid, SECRET_TEXT) == []
    assert await contributions_of(platform, pid) is None
    # Kafka: the answer text was never there in plaintext, nor the device token.
    for topic in Topics.all() + [Topics.for_tenant(tenant["tenant_id"])]:
        for record in await read_to_end(stack.kafka, topic):
            assert SECRET_TEXT.encode() not in record["raw"], topic
            assert device["device_token"].encode() not in record["raw"], topic
    # The other participant is untouched.
    assert (await platform.gateway.get("/v1/me/answers", headers=bearer(other["device_token"]))).json()["answers"]


async def test_erasure_waits_for_a_stopped_store_retries_and_completes_when_it_returns(platform, stack):
    tenant, dialogue = await tenant_with_dialogue(platform)
    (device,) = await enrol_devices(platform, tenant, 1)
    await answer_both(platform, device, dialogue)
    assert await eventually(lambda: contributions_of(platform, device["participant_id"]))

    await platform.stop("analytics")
    try:
        asked = await platform.rights.post(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                           json={"kind": "erasure", "participant_id": device["participant_id"]},
                                           headers=bearer(tenant["api_key"]))
        assert asked.status_code == 202, asked.text
        request = asked.json()
        assert request["actor"] == "tenant" and request["reason"] == "tenant"

        async def retried():
            status = await request_status(platform, request["request_id"], request["status_secret"])
            return status if status["attempts"] >= 2 else None

        waiting = await eventually(retried, timeout=60)
        pending = [p["store"] for p in waiting["progress"] if p["status"] == "pending"]
        assert waiting["status"] == "in_progress" and pending == ["analytics.contributions"]
        listed = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                            params={"status": "in_progress"},
                                            headers=bearer(tenant["api_key"]))).json()["requests"]
        assert request["request_id"] in [r["request_id"] for r in listed]
    finally:
        await platform.start("analytics")

    done = await completed(platform, request["request_id"], request["status_secret"], timeout=90)
    assert all(p["status"] == "confirmed" for p in done["progress"])
    assert await contributions_of(platform, device["participant_id"]) is None
    trail = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/audit",
                                       headers=bearer(tenant["api_key"]))).json()["entries"]
    retries = [e["record"] for e in trail if e["record"]["action"] == "retry"]
    assert retries and all(r["stores"] == ["analytics.contributions"] for r in retries)
    # Each retry went to the store that had not confirmed; the others did not erase again.
    sent = [r["value"]["data"] for r in await read_to_end(stack.kafka, Topics.ERASURE_REQUESTED)
            if r["value"]["data"]["request_id"] == request["request_id"]]
    assert sent[0]["stores"] is None and len(sent) >= 2
    assert all(data["stores"] == ["analytics.contributions"] for data in sent[1:])
    confirmations = [r["value"]["data"]["store"]
                     for r in await read_to_end(stack.kafka, Topics.STORE_ERASURE_COMPLETED)
                     if r["value"]["data"]["request_id"] == request["request_id"]]
    assert confirmations.count("enrolment.devices") == 1 and confirmations.count("dialogue.answers") == 1
    # Asked again, the tenant hears that this participant is gone (another tenant would
    # hear 404, as for any unknown ID).
    again = await platform.rights.post(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                       json={"kind": "access", "participant_id": device["participant_id"]},
                                       headers=bearer(tenant["api_key"]))
    assert again.status_code == 409 and again.json()["detail"]["code"] == "participant_erased"
    other, _ = await tenant_with_dialogue(platform)
    foreign = await platform.rights.post(f"/v1/tenants/{other['tenant_id']}/rights-requests",
                                         json={"kind": "erasure", "participant_id": device["participant_id"]},
                                         headers=bearer(other["api_key"]))
    assert foreign.status_code == 404


async def test_a_redelivered_answer_event_after_erasure_brings_nothing_back(platform, stack):
    tenant, dialogue = await tenant_with_dialogue(platform)
    device, other = await enrol_devices(platform, tenant, 2)
    pid = device["participant_id"]
    await answer_both(platform, device, dialogue)
    analytics = platform.database_url("analytics", owner=True)

    async def answers_of(participant_id: str, answer_id: str | None = None) -> list[dict]:
        return await fetch(analytics, "SELECT * FROM answer_contributions WHERE participant_id = $1"
                                      " AND ($2::text IS NULL OR answer_id = $2)", participant_id, answer_id)

    assert await eventually(lambda: answers_of(pid))
    submitted = await read_topic(stack.kafka, Topics.ANSWER_SUBMITTED, until=lambda rs: any(
        r["value"]["data"]["participant_id"] == pid for r in rs))
    originals = [r for r in submitted if r["value"]["data"]["participant_id"] == pid]

    asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                        headers=bearer(device["device_token"]))
    await completed(platform, asked.json()["request_id"], asked.json()["status_secret"])

    for record in originals:  # redelivered, byte for byte, as after a consumer crash
        await produce(stack.kafka, Topics.ANSWER_SUBMITTED, json.dumps(record["value"]).encode(),
                      key=pid.encode())
    # Barrier: the other participant's answer, sent after the replays on the same key,
    # is counted only once the replays before it were handled.
    barrier = json.loads(json.dumps(originals[0]["value"]))
    barrier["id"] = "barrier-" + barrier["id"][:20]
    barrier["data"]["participant_id"] = other["participant_id"]
    barrier["data"]["answer_id"] = "a_barrier_" + other["participant_id"][-8:]
    await produce(stack.kafka, Topics.ANSWER_SUBMITTED, json.dumps(barrier).encode(), key=pid.encode())
    assert await eventually(lambda: answers_of(other["participant_id"], barrier["data"]["answer_id"]))
    assert await answers_of(pid) == []
    assert await databases_mentioning(platform, pid) == []


async def test_changing_removing_or_reordering_an_audit_entry_is_detected(platform):
    tenant, _ = await tenant_with_dialogue(platform)
    devices = await enrol_devices(platform, tenant, 2)
    for device in devices:
        asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                            headers=bearer(device["device_token"]))
        await completed(platform, asked.json()["request_id"], asked.json()["status_secret"])
    tenant_id = tenant["tenant_id"]
    url = f"/v1/tenants/{tenant_id}/audit/verification"
    auth = bearer(tenant["api_key"])

    async def verification() -> dict:
        return (await platform.rights.get(url, headers=auth)).json()

    intact = await verification()
    assert intact["valid"] and intact["entries"] >= 10

    # The service's own role may not change or remove an entry at all.
    async with connected(platform.database_url("rights")) as service:
        async with service.transaction():
            await service.execute("SELECT set_config('tessera.tenant_id', $1, true)", tenant_id)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await service.execute("DELETE FROM audit WHERE tenant_id = $1 AND seq = 4", tenant_id)

    # The owner can (it bypasses the service's grants): verification still tells.
    async with connected(platform.database_url("rights", owner=True)) as audit:
        async def entry(seq: int) -> dict:
            return dict(await audit.fetchrow("SELECT * FROM audit WHERE tenant_id = $1 AND seq = $2", tenant_id, seq))

        async def put_back(row: dict) -> None:
            await audit.execute("INSERT INTO audit (tenant_id, seq, prev_hash, hash, record)"
                                " VALUES ($1, $2, $3, $4, $5::jsonb)", row["tenant_id"], row["seq"],
                                row["prev_hash"], row["hash"], row["record"])

        original = await entry(4)
        await audit.execute("UPDATE audit SET record = jsonb_set(record::jsonb, '{actor}', '\"retention\"')"
                            " WHERE tenant_id = $1 AND seq = 4", tenant_id)
        changed = await verification()
        assert changed["valid"] is False and changed["broken_at"] == 4 and "changed" in changed["reason"]

        # Re-hashing the changed entry does not help: the next one no longer follows it.
        from tessera_rights.domain import audit_hash
        tampered = await entry(4)
        await audit.execute("UPDATE audit SET hash = $2 WHERE tenant_id = $1 AND seq = 4", tenant_id,
                            audit_hash(tampered["prev_hash"], 4, json.loads(tampered["record"])))
        assert (await verification())["broken_at"] == 5
        await audit.execute("DELETE FROM audit WHERE tenant_id = $1 AND seq = 4", tenant_id)
        await put_back(original)
        assert (await verification())["valid"] is True

        await audit.execute("DELETE FROM audit WHERE tenant_id = $1 AND seq = 4", tenant_id)
        removed = await verification()
        assert removed["valid"] is False and removed["broken_at"] == 4
        await put_back(original)

        last = intact["entries"]
        tail = await entry(last)
        await audit.execute("DELETE FROM audit WHERE tenant_id = $1 AND seq = $2", tenant_id, last)
        truncated = await verification()
        assert truncated["valid"] is False and truncated["broken_at"] == last
        await put_back(tail)

        # Swapping two positions (through a free one: seq is the key).
        await audit.execute("UPDATE audit SET seq = 1000000 WHERE tenant_id = $1 AND seq = 4", tenant_id)
        await audit.execute("UPDATE audit SET seq = 4 WHERE tenant_id = $1 AND seq = 5", tenant_id)
        await audit.execute("UPDATE audit SET seq = 5 WHERE tenant_id = $1 AND seq = 1000000", tenant_id)
        assert (await verification())["valid"] is False
        await audit.execute("UPDATE audit SET seq = 1000000 WHERE tenant_id = $1 AND seq = 4", tenant_id)
        await audit.execute("UPDATE audit SET seq = 4 WHERE tenant_id = $1 AND seq = 5", tenant_id)
        await audit.execute("UPDATE audit SET seq = 5 WHERE tenant_id = $1 AND seq = 1000000", tenant_id)
        assert (await verification())["valid"] is True


async def test_access_and_export_gather_every_store_as_json_and_a_readable_summary(platform):
    tenant, dialogue = await tenant_with_dialogue(platform)
    (device,) = await enrol_devices(platform, tenant, 1)
    await answer_both(platform, device, dialogue)

    asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "export"},
                                        headers=bearer(device["device_token"]))
    assert asked.status_code == 202, asked.text
    request = asked.json()
    assert request["status"] == "completed" and "status_secret" not in request or request["status_secret"] is None
    path = f"/v1/me/rights-requests/{request['request_id']}/data"
    data = await platform.gateway.get(path, headers=bearer(device["device_token"]))
    assert data.status_code == 200 and data.headers["content-type"] == "application/json"
    document = data.json()
    parts = {part["store"]: part for part in document["stores"]}
    assert {"enrolment.devices", "dialogue.answers", "analytics.contributions", "rights.data_keys"} <= set(parts)
    assert parts["enrolment.devices"]["records"][0]["platform"] == "ios"
    assert "token_sha256" not in json.dumps(document)
    assert {a["value"] for a in parts["dialogue.answers"]["records"]} == {SECRET_TEXT, "north"}
    assert parts["rights.data_keys"]["records"] and "key" not in parts["rights.data_keys"]["records"][0]

    summary = await platform.gateway.get(path, params={"format": "text"}, headers=bearer(device["device_token"]))
    assert summary.headers["content-type"].startswith("text/plain")
    assert SECRET_TEXT in summary.text and "Your answers (2)" in summary.text

    # The tenant asks on the participant's behalf and sees the same data.
    on_behalf = await platform.rights.post(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                           json={"kind": "access", "participant_id": device["participant_id"]},
                                           headers=bearer(tenant["api_key"]))
    assert on_behalf.status_code == 202, on_behalf.text
    tenant_data = await platform.rights.get(
        f"/v1/tenants/{tenant['tenant_id']}/rights-requests/{on_behalf.json()['request_id']}/data",
        headers=bearer(tenant["api_key"]))
    assert tenant_data.status_code == 200
    assert {a["value"] for a in {p["store"]: p for p in tenant_data.json()["stores"]}["dialogue.answers"]["records"]} \
        == {SECRET_TEXT, "north"}


async def test_rectification_changes_a_closed_dialogues_answer_and_objection_reaches_analytics(platform):
    tenant, dialogue = await tenant_with_dialogue(platform)
    (device,) = await enrol_devices(platform, tenant, 1)
    text_answer, _ = await answer_both(platform, device, dialogue)
    auth = bearer(tenant["api_key"])
    closed = await platform.dialogue.post(
        f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}/close", headers=auth)
    assert closed.status_code == 200

    refused = await platform.gateway.post("/v1/me/rights-requests", headers=bearer(device["device_token"]), json={
        "kind": "rectification", "answer_id": text_answer["answer_id"], "value": 42})
    assert refused.status_code == 422
    rectified = await platform.gateway.post("/v1/me/rights-requests", headers=bearer(device["device_token"]), json={
        "kind": "rectification", "answer_id": text_answer["answer_id"], "value": "Een bankje bij de vijver"})
    assert rectified.status_code == 202, rectified.text
    assert rectified.json()["status"] == "completed"
    mine = (await platform.gateway.get("/v1/me/answers", headers=bearer(device["device_token"]))).json()["answers"]
    assert {a["value"] for a in mine} == {"Een bankje bij de vijver", "north"}
    foreign = await platform.gateway.post("/v1/me/rights-requests", headers=bearer(device["device_token"]), json={
        "kind": "rectification", "answer_id": "a_someone_else", "value": "x"})
    assert foreign.status_code == 404

    assert await eventually(lambda: contributions_of(platform, device["participant_id"]))
    objected = await platform.rights.post(f"/v1/tenants/{tenant['tenant_id']}/rights-requests", headers=auth,
                                          json={"kind": "objection", "participant_id": device["participant_id"]})
    assert objected.status_code == 202, objected.text

    async def applied():
        status = await platform.rights.get(
            f"/v1/tenants/{tenant['tenant_id']}/rights-requests/{objected.json()['request_id']}", headers=auth)
        return status.json() if status.json()["status"] == "completed" else None

    done = await eventually(applied, timeout=60)
    assert {p["store"] for p in done["progress"]} == set(objection_stores())
    assert await contributions_of(platform, device["participant_id"]) is None
    # Objecting is not erasing: the answers are still the participant's to see.
    assert (await platform.gateway.get("/v1/me/answers", headers=bearer(device["device_token"]))).json()["answers"]


async def test_tenant_lists_overdue_and_at_risk_requests_first(platform):
    tenant, _ = await tenant_with_dialogue(platform)
    devices = await enrol_devices(platform, tenant, 3)
    auth = bearer(tenant["api_key"])
    ids = []
    for device in devices:
        response = await platform.rights.post(f"/v1/tenants/{tenant['tenant_id']}/rights-requests", headers=auth,
                                              json={"kind": "access", "participant_id": device["participant_id"]})
        assert response.status_code == 202
        ids.append(response.json()["request_id"])
    rights = platform.database_url("rights", owner=True)
    now = datetime.now(UTC)
    # Two are made open again with their deadlines moved, as time passing would.
    for request_id, deadline in ((ids[1], now - timedelta(days=1)), (ids[2], now + timedelta(days=3))):
        await fetch(rights, "UPDATE requests SET status = 'in_progress', open_rank = 0, deadline = $2"
                             " WHERE request_id = $1 RETURNING 1", request_id, deadline)
    listed = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                        headers=auth)).json()["requests"]
    assert [r["request_id"] for r in listed] == [ids[1], ids[2], ids[0]]
    assert [r["urgency"] for r in listed] == ["overdue", "at_risk", "closed"]
    overdue = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                         params={"urgency": "overdue"}, headers=auth)).json()["requests"]
    assert [r["request_id"] for r in overdue] == [ids[1]]
    by_participant = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                                params={"participant_id": devices[0]["participant_id"]},
                                                headers=auth)).json()["requests"]
    assert [r["request_id"] for r in by_participant] == [ids[0]]


async def test_retention_erases_answers_of_a_long_closed_dialogue_through_the_same_pipeline(platform):
    tenant, dialogue = await tenant_with_dialogue(platform)
    devices = await enrol_devices(platform, tenant, 2)
    for device in devices:
        await answer_both(platform, device, dialogue)
    auth = bearer(tenant["api_key"])
    rules = await platform.rights.put(f"/v1/tenants/{tenant['tenant_id']}/retention", headers=auth,
                                      json={"answers_days_after_close": 30})
    assert rules.status_code == 200
    await platform.dialogue.post(f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}/close",
                                 headers=auth)
    retention = platform.rights_app.state.retention
    assert await retention.run_once() == 0  # closed today: nothing has expired yet
    assert await retention.run_once(now=datetime.now(UTC) + timedelta(days=31)) == 2

    async def all_done():
        listed = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                            params={"kind": "erasure"}, headers=auth)).json()["requests"]
        return listed if len(listed) == 2 and all(r["status"] == "completed" for r in listed) else None

    done = await eventually(all_done, timeout=60)
    assert {r["actor"] for r in done} == {"retention"} and {r["reason"] for r in done} == {"retention"}
    assert {r["scope"]["dialogue_id"] for r in done} == {dialogue["dialogue_id"]}
    for service, table in (("dialogue", "answers"), ("analytics", "answer_contributions")):
        assert await fetchval(platform.database_url(service, owner=True),
                              f"SELECT count(*) FROM {table} WHERE dialogue_id = $1", dialogue["dialogue_id"]) == 0
    # Only the answers expired: the devices still work.
    assert (await platform.gateway.get("/v1/me", headers=bearer(devices[0]["device_token"]))).status_code == 200

    # Idle devices: everything of their participants goes, as if they had asked.
    await platform.rights.put(f"/v1/tenants/{tenant['tenant_id']}/retention", headers=auth,
                              json={"answers_days_after_close": 30, "idle_device_days": 60})
    assert await retention.run_once(now=datetime.now(UTC) + timedelta(days=59)) == 0
    assert await retention.run_once(now=datetime.now(UTC) + timedelta(days=61)) == 2

    async def devices_gone():
        statuses = [(await platform.gateway.get("/v1/me", headers=bearer(d["device_token"]))).status_code
                    for d in devices]
        return statuses == [401, 401]

    assert await eventually(devices_gone, timeout=60)
    whole = await eventually(lambda: _completed_erasures(platform, tenant, scope=None, n=2), timeout=60)
    assert {r["actor"] for r in whole} == {"retention"}


async def requests_of_tenant(platform: Platform, tenant: dict) -> int:
    return await fetchval(platform.database_url("rights", owner=True),
                          "SELECT count(*) FROM requests WHERE tenant_id = $1", tenant["tenant_id"])


async def _completed_erasures(platform: Platform, tenant: dict, scope, n: int):
    listed = (await platform.rights.get(f"/v1/tenants/{tenant['tenant_id']}/rights-requests",
                                        params={"kind": "erasure", "status": "completed"},
                                        headers=bearer(tenant["api_key"]))).json()["requests"]
    chosen = [r for r in listed if r["scope"] == scope]
    return chosen if len(chosen) == n else None


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"kind": "forget-me"}, 422, None),
    ({"kind": "erasure", "answer_id": "a_1"}, 422, "unexpected_field"),
    ({"kind": "access", "value": "x"}, 422, "unexpected_field"),
    ({"kind": "rectification", "value": "x"}, 422, "answer_id_required"),
    ({"kind": "rectification", "answer_id": {"$gt": ""}, "value": "x"}, 422, None),
    ({"kind": "erasure", "extra": 1}, 422, None),
    ({"kind": ["erasure"]}, 422, None),
])
async def test_bad_participant_requests_are_refused_and_change_nothing(platform, body, status, code):
    tenant, _ = await tenant_with_dialogue(platform)
    (device,) = await enrol_devices(platform, tenant, 1)
    response = await platform.gateway.post("/v1/me/rights-requests", json=body, headers=bearer(device["device_token"]))
    assert response.status_code == status, response.text
    if code:
        assert response.json()["detail"]["code"] == code
    assert await requests_of_tenant(platform, tenant) == 0
    assert (await platform.gateway.get("/v1/me", headers=bearer(device["device_token"]))).status_code == 200


async def test_a_rectification_with_a_lone_surrogate_is_422_and_leaves_no_trace(platform):
    """Valid JSON, no Unicode text: refused before the request begins, so no request, no
    audit entry, and the answer as it was, whether the tenant or the participant asks."""
    tenant, dialogue = await tenant_with_dialogue(platform)
    (device,) = await enrol_devices(platform, tenant, 1)
    text_answer, _ = await answer_both(platform, device, dialogue)
    auth = bearer(tenant["api_key"])
    audit_url = f"/v1/tenants/{tenant['tenant_id']}/audit"
    trail_before = (await platform.rights.get(audit_url, headers=auth)).json()["entries"]
    body = {"kind": "rectification", "answer_id": text_answer["answer_id"], "value": "x \ud800 y"}

    for client, url, extra in (
        (platform.rights, f"/v1/tenants/{tenant['tenant_id']}/rights-requests", {"participant_id":
                                                                                 device["participant_id"]}),
        (platform.gateway, "/v1/me/rights-requests", {}),
    ):
        response = await client.post(url, content=json.dumps({**body, **extra}).encode(), headers={
            **(auth if client is platform.rights else bearer(device["device_token"])),
            "content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == [("string_unicode", ["body", "value"])]

    assert await requests_of_tenant(platform, tenant) == 0
    assert (await platform.rights.get(audit_url, headers=auth)).json()["entries"] == trail_before
    mine = (await platform.gateway.get("/v1/me/answers", headers=bearer(device["device_token"]))).json()["answers"]
    assert {a["value"] for a in mine} == {SECRET_TEXT, "north"}
    assert all(a["version"] == 1 for a in mine)


async def test_tenant_requests_for_unknown_or_foreign_participants_and_bad_credentials(platform):
    tenant, _ = await tenant_with_dialogue(platform)
    other, _ = await tenant_with_dialogue(platform)
    (foreign,) = await enrol_devices(platform, other, 1)
    url = f"/v1/tenants/{tenant['tenant_id']}/rights-requests"
    auth = bearer(tenant["api_key"])
    for participant_id, expected in ((foreign["participant_id"], 404), ("p_doesnotexist123", 404),
                                     ({"$gt": ""}, 422), (7, 422)):
        response = await platform.rights.post(url, headers=auth, json={"kind": "erasure",
                                                                       "participant_id": participant_id})
        assert response.status_code == expected, response.text
    assert (await platform.rights.post(url, headers=bearer(other["api_key"]), json={
        "kind": "access", "participant_id": foreign["participant_id"]})).status_code == 403
    assert (await platform.rights.post(url, json={"kind": "access", "participant_id": "p_x"})).status_code == 401
    huge = {"kind": "rectification", "participant_id": "p_x", "answer_id": "a_x", "value": "x" * 40_000}
    assert (await platform.rights.post(url, headers=auth, json=huge)).status_code == 413
    assert await requests_of_tenant(platform, tenant) == 0
    # The foreign participant's device is untouched by the refused erasure.
    assert (await platform.gateway.get("/v1/me", headers=bearer(foreign["device_token"]))).status_code == 200
    # Participant routes answer only with the gateway's assertion; status routes only with the secret.
    assert (await platform.rights.post("/v1/me/rights-requests", json={"kind": "erasure"})).status_code == 401
    assert (await platform.rights.get("/v1/rights-requests/rr_nothing", headers=bearer("rss_rr_nothing." + "x" * 43)
                                      )).status_code == 401
    wrong = base64.b64encode(b"x").decode()
    assert (await platform.rights.get("/v1/rights-requests/rr_nothing", headers=bearer(wrong))).status_code == 401
