"""Free text sealed at rest, opened in batches, and gone from every file after an
erasure (issue 12), on the real PostgreSQL and Kafka.

What a participant typed is stored only sealed under their data key; every reader
(the group view, the participant's own answers, the tenant's listing, access and
export) opens it in memory with keys fetched in one call. After an erasure and a
checkpoint, a byte scan of every file of the PostgreSQL cluster (heap, indexes, WAL)
and of every Kafka log segment finds none of the participant's texts and no device
token, while the same scan finds a marker the tenant wrote in plaintext (so the scan
does see those files).
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from support.apps import (
    INTERNAL_TOKEN,
    MARKER_KEY,
    Platform,
    bearer,
    create_tenant,
    enrol_devices,
    opened,
    tenant_known_to_dialogue,
    tenant_known_to_rights,
)
from support.db import fetch, fetchval, tables_mentioning
from support.disk import find_bytes, scanned_bytes
from support.kafka import eventually
from tessera_common.datakeys import DataKeyClient
from tessera_common.secrets import secret_hash
from tessera_dialogue.api import TEXT_PURPOSE, Answers, seal_legacy_texts
from tessera_dialogue.domain import value_fingerprint
from tessera_dialogue.store import DialogueStore

pytestmark = pytest.mark.connected



def unique_text(label: str) -> str:
    """Long and unique: found by a byte scan only where it really is, never by chance.
    Letters only: random digits can look like a phone number or a plate to the
    screening, and the group view shows a flagged text redacted."""
    words = " ".join("".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8)) for _ in range(40))
    return f"{label} {words} einde"


async def dialogue_with_texts(platform: Platform, title: str) -> tuple[dict, dict]:
    tenant = await create_tenant(platform.gateway)
    await tenant_known_to_dialogue(platform, tenant)
    await tenant_known_to_rights(platform, tenant)
    auth = bearer(tenant["api_key"])
    settings = await platform.dialogue.put(f"/v1/tenants/{tenant['tenant_id']}/settings", headers=auth,
                                           json={"min_group_size": 3})
    assert settings.status_code == 200, settings.text
    base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
    created = await platform.dialogue.post(base, headers=auth, json={"title": title, "questions": [
        {"kind": "open_text", "prompt": "What would you change?"},
        {"kind": "idea", "prompt": "Any ideas?"},
    ]})
    assert created.status_code == 201, created.text
    dialogue = created.json()
    assert (await platform.dialogue.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=auth)).status_code == 200
    return tenant, dialogue


async def answer_text(platform: Platform, device: dict, dialogue: dict, text: str, idea: str | None = None) -> None:
    open_q, idea_q = dialogue["questions"]
    base = f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions"
    put = await platform.gateway.put(f"{base}/{open_q['question_id']}/answer", json={"value": text},
                                     headers={**bearer(device["device_token"]), "Idempotency-Key": "k-" + secrets.token_hex(8)})
    assert put.status_code == 201, put.text
    assert put.json()["value"] == text
    if idea is not None:
        posted = await platform.gateway.post(f"{base}/{idea_q['question_id']}/ideas", json={"value": idea},
                                             headers=bearer(device["device_token"]))
        assert posted.status_code == 201, posted.text


async def test_texts_are_stored_sealed_and_every_reader_opens_them(platform):
    tenant, dialogue = await dialogue_with_texts(platform, "Sealed at rest")
    devices = await enrol_devices(platform, tenant, 3)
    texts = [unique_text(f"tekst{i}") for i in range(3)]
    for device, text in zip(devices, texts, strict=True):
        await answer_text(platform, device, dialogue, text)

    # In the store: ciphertext and its key's ID only; no column of any table holds a text.
    owner = platform.database_url("dialogue", owner=True)
    assert await tables_mentioning(owner, *texts) == []
    rows = await fetch(owner, "SELECT participant_id, text, text_key_id, text_sealed, fingerprint FROM answers"
                              " WHERE tenant_id = $1", tenant["tenant_id"])
    assert len(rows) == 3 and all(r["text"] is None and r["text_key_id"] and r["text_sealed"] for r in rows)
    # The replay fingerprint of a text is keyed: a plain hash would confirm a guess of it.
    assert {r["fingerprint"] for r in rows}.isdisjoint({value_fingerprint(t) for t in texts})

    open_q = dialogue["questions"][0]["question_id"]
    me = bearer(devices[0]["device_token"])
    group = await platform.gateway.get(f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{open_q}/group",
                                       headers=me)
    assert group.status_code == 200, group.text
    assert sorted(json.dumps(group.json()).count(t) for t in texts) == [0, 1, 1]  # the others' texts
    mine = await platform.gateway.get("/v1/me/answers", headers=me)
    assert [a["value"] for a in mine.json()["answers"]] == [texts[0]]
    listing = await platform.dialogue.get(
        f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}/answers",
        headers=bearer(tenant["api_key"]))
    assert sorted(a["value"] for a in listing.json()["answers"]) == sorted(texts)

    # Access and export, through the rights service: the participant's own text.
    asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "export"}, headers=me)
    assert asked.status_code == 202, asked.text
    data = await platform.gateway.get(f"/v1/me/rights-requests/{asked.json()['request_id']}/data", headers=me)
    assert data.status_code == 200, data.text
    exported = json.dumps(data.json())
    assert texts[0] in exported and texts[1] not in exported


async def test_one_call_opens_many_participants_texts_and_the_cache_serves_the_next(platform):
    rights = httpx.ASGITransport(app=platform.rights_app)
    calls: list[str] = []

    class Counting(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            calls.append(request.url.path)
            return await rights.handle_async_request(request)

    tenant = await create_tenant(platform.gateway)
    await tenant_known_to_rights(platform, tenant)
    participants = [f"p_batch{i:03d}{secrets.token_hex(3)}" for i in range(120)]
    sealer = DataKeyClient("http://rights.test", INTERNAL_TOKEN, transport=rights, cache_seconds=0)
    made = {p: await sealer.key_for(tenant["tenant_id"], p) for p in participants[:100]}

    keys = DataKeyClient("http://rights.test", INTERNAL_TOKEN, transport=Counting(), cache_seconds=30)
    try:
        found = await keys.keys_for(tenant["tenant_id"], participants)
        assert len(calls) == 1 and calls[0].endswith("data-keys:batchGet")
        assert {p: k.key for p, k in found.items()} == {p: k.key for p, k in made.items()}  # 20 never had one
        again = await keys.keys_for(tenant["tenant_id"], participants[:100])
        assert len(calls) == 1 and again.keys() == found.keys()
        # Another tenant asking for the same participants gets nothing of theirs.
        other = await create_tenant(platform.gateway)
        assert await keys.keys_for(other["tenant_id"], participants[:5]) == {}
        # The rights service knows this process may hold those keys, until its bound.
        holds = await fetchval(platform.database_url("rights", owner=True),
                               "SELECT count(*) FROM key_holders WHERE holder = $1 AND held_until > now()",
                               keys.holder)
        assert holds == 100
    finally:
        await keys.aclose()
        await sealer.aclose()


async def test_rows_from_before_sealing_are_sealed_at_start(platform, stack):
    tenant, dialogue = await dialogue_with_texts(platform, "Legacy")
    devices = await enrol_devices(platform, tenant, 1)
    await answer_text(platform, devices[0], dialogue, unique_text("eerst"))
    owner = platform.database_url("dialogue", owner=True)
    legacy = unique_text("legacy")
    # A row as an older version wrote it: the text in plaintext, nothing sealed.
    await fetch(owner, "UPDATE answers SET text = $2, text_key_id = NULL, text_sealed = NULL WHERE tenant_id = $1",
                tenant["tenant_id"], legacy)
    assert await tables_mentioning(owner, legacy) == ["answers"]

    settings = platform.dialogue_app.state.wiring.settings
    async with opened(settings, "dialogue") as database:
        keys = DataKeyClient("http://rights.test", INTERNAL_TOKEN,
                             transport=httpx.ASGITransport(app=platform.rights_app), cache_seconds=0)
        answers = Answers(DialogueStore(database), keys, MARKER_KEY)
        assert await seal_legacy_texts(DialogueStore(database), answers) >= 1
        await keys.aclose()
    assert await tables_mentioning(owner, legacy) == []
    mine = await platform.gateway.get("/v1/me/answers", headers=bearer(devices[0]["device_token"]))
    assert [a["value"] for a in mine.json()["answers"]] == [legacy]
    assert TEXT_PURPOSE == "answer-text"  # the purpose the events' texts are sealed for, too


async def test_after_an_erasure_no_file_of_the_stores_or_the_broker_holds_the_texts_or_token(platform, stack):
    if stack.postgres_data_dir is None or stack.kafka_log_dir is None:
        pytest.skip("the byte scan needs the cluster's and the broker's files on this machine")
    control = "Zichtbaar-" + secrets.token_hex(12)  # tenant content, in plaintext on purpose
    tenant, dialogue = await dialogue_with_texts(platform, f"Parkplan {control}")
    erased, kept, third = await enrol_devices(platform, tenant, 3)
    secret_texts = {"answer": unique_text("geheim"), "idea": unique_text("idee")}
    await answer_text(platform, erased, dialogue, secret_texts["answer"], idea=secret_texts["idea"])
    kept_text = unique_text("blijft")
    await answer_text(platform, kept, dialogue, kept_text)
    await answer_text(platform, third, dialogue, unique_text("derde"))

    asked = await platform.gateway.post("/v1/me/rights-requests", json={"kind": "erasure"},
                                        headers=bearer(erased["device_token"]))
    assert asked.status_code == 202, asked.text
    request_id, secret = asked.json()["request_id"], asked.json()["status_secret"]

    async def done():
        status = (await platform.rights.get(f"/v1/rights-requests/{request_id}", headers=bearer(secret))).json()
        return status if status["status"] == "completed" else None

    status = await eventually(done, timeout=90)
    assert {p["store"] for p in status["progress"]} >= {"rights.data_keys", "dialogue.answers", "key_caches"}
    # Everything written so far is in the files: heap, indexes and WAL.
    await fetch(stack.superuser_url, "CHECKPOINT")

    roots = [stack.postgres_data_dir, stack.kafka_log_dir]
    needles = {
        **{f"erased {kind}": text.encode() for kind, text in secret_texts.items()},
        "erased device token": erased["device_token"].encode(),
        "kept text": kept_text.encode(),
        "kept device token": kept["device_token"].encode(),
        "control": control.encode(),
    }
    found = find_bytes(roots, needles)
    assert scanned_bytes(roots) > 0
    # The scan reads what the stores wrote: the tenant's plaintext title is in both.
    assert any(stack.postgres_data_dir in p.parents for p in found["control"]), found["control"]
    assert any(stack.kafka_log_dir in p.parents for p in found["control"]), found["control"]
    # No participant's text was ever written in plaintext, erased or not; no raw token.
    for label in needles.keys() - {"control"}:
        assert found[label] == [], f"{label} found in {found[label]}"
    # The erased device's token hash (the enrolment row) is gone from the live tables.
    assert await tables_mentioning(platform.database_url("enrolment", owner=True),
                                   secret_hash(erased["device_token"])) == []
    # The one who was not erased still reads their text.
    mine = await platform.gateway.get("/v1/me/answers", headers=bearer(kept["device_token"]))
    assert [a["value"] for a in mine.json()["answers"]] == [kept_text]


async def test_the_key_routes_refuse_bad_input_with_a_reason(platform):
    internal = bearer(INTERNAL_TOKEN)
    batch = "/internal/v1/data-keys:batchGet"
    too_many = await platform.rights.post(batch, headers=internal, json={
        "tenant_id": "t_one", "participant_ids": [f"p_{i}" for i in range(501)]})
    injected = await platform.rights.post(batch, headers=internal, json={
        "tenant_id": "t_one", "participant_ids": ["p_1' OR '1'='1"]})
    unauthorised = await platform.rights.post(batch, json={"tenant_id": "t_one", "participant_ids": ["p_1"]})
    bad_holder = await platform.rights.post(batch, headers={**internal, "Tessera-Key-Holder": "dialogue x;1"},
                                            json={"tenant_id": "t_one", "participant_ids": ["p_1"]})
    long_hold = await platform.rights.post(
        batch, headers={**internal, "Tessera-Key-Holder": "dialogue-x", "Tessera-Key-Hold-Seconds": "61"},
        json={"tenant_id": "t_one", "participant_ids": ["p_1"]})
    assert [r.status_code for r in (too_many, injected, unauthorised, bad_holder, long_hold)] == [
        422, 422, 401, 422, 422]
    assert "Tessera-Key-Hold-Seconds" in long_hold.text
    # A drop from a holder that held nothing is accepted and changes nothing.
    drop = await platform.rights.post("/internal/v1/data-keys/p_nobody/drops", headers=internal,
                                      json={"tenant_id": "t_one", "holder": "dialogue-x"})
    assert drop.status_code == 204
