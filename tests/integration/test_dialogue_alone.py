"""The dialogue app by itself (no gateway, no rights service) on the real Kafka and
PostgreSQL: its routes keep their contract on the new store. Participants come as the
gateway's signed assertions; the tenant is learnt from ``tenant-registered``. Only
non-text answers here: text needs the rights service's data keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from support.apps import INTERNAL_TOKEN, MARKER_KEY, running
from support.db import fetch, fetchval
from support.kafka import eventually, produce, read_topic
from tessera_common.events import TenantRegistered, TenantRegisteredData, Topics
from tessera_common.http import TENANT_API_KEY_PREFIX
from tessera_common.identity import ASSERTION_HEADER, Participant, generate_signing_key, sign_assertion
from tessera_common.secrets import new_split_secret, secret_hash
from tessera_dialogue.app import DialogueSettings, create_app

pytestmark = pytest.mark.connected

QUESTIONS = [
    {"kind": "single_choice", "prompt": "Which park?",
     "choices": [{"key": "north", "label": "North"}, {"key": "south", "label": "South"}]},
    {"kind": "scale", "prompt": "How safe?", "scale": {"min": 1, "max": 5}},
]


class Alone:
    def __init__(self, client, signing_key: str, owner_url: str) -> None:
        self.client = client
        self.signing_key = signing_key
        self.owner_url = owner_url

    def participant(self, tenant_id: str, participant_id: str | None = None) -> dict[str, str]:
        who = Participant(participant_id or f"p_{uuid4().hex[:12]}", tenant_id, "ios", "phone")
        return {ASSERTION_HEADER: sign_assertion(self.signing_key, who, "tessera-dialogue")}


@pytest.fixture(scope="module")
async def alone(stack) -> AsyncIterator[Alone]:
    private, public = generate_signing_key()
    settings = DialogueSettings(**stack.database("dialogue"), kafka_bootstrap_servers=stack.kafka_bootstrap,
                                environment="test", internal_token=INTERNAL_TOKEN, erased_marker_key=MARKER_KEY,
                                outbox_sweep_seconds=0.5, gateway_public_key=public)
    async with running(create_app(settings)) as client:
        yield Alone(client, private, settings.database_owner_url.get_secret_value())


async def registered_tenant(alone: Alone, stack, min_group_size: int = 3) -> tuple[str, dict[str, str]]:
    tenant_id = f"t_{uuid4().hex[:12]}"
    api_key = new_split_secret(TENANT_API_KEY_PREFIX, tenant_id)
    event = TenantRegistered(source="tessera/test", subject=tenant_id, tenant_id=tenant_id,
                             data=TenantRegisteredData(region="eu-west", api_key_sha256=secret_hash(api_key),
                                                       min_group_size=min_group_size))
    for _ in range(2):  # a redelivery changes nothing
        await produce(stack.kafka, Topics.TENANT_REGISTERED, event.model_dump_json().encode())
    auth = {"Authorization": f"Bearer {api_key}"}

    async def known() -> bool:
        return (await alone.client.get(f"/v1/tenants/{tenant_id}/settings", headers=auth)).status_code == 200

    assert await eventually(known, timeout=60)
    return tenant_id, auth


async def published(alone: Alone, tenant_id: str, auth: dict[str, str]) -> dict:
    base = f"/v1/tenants/{tenant_id}/dialogues"
    created = await alone.client.post(base, json={"title": "Parks", "questions": QUESTIONS}, headers=auth)
    assert created.status_code == 201, created.text
    moved = await alone.client.post(f"{base}/{created.json()['dialogue_id']}/publish", headers=auth)
    assert moved.status_code == 200, moved.text
    return moved.json()


async def test_answers_freeze_questions_replay_withdraw_and_come_back_at_the_next_version(alone, stack):
    tenant_id, auth = await registered_tenant(alone, stack)
    dialogue = await published(alone, tenant_id, auth)
    choice = dialogue["questions"][0]["question_id"]
    path = f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{choice}/answer"
    me = alone.participant(tenant_id)
    keyed = {**me, "Idempotency-Key": f"k-{uuid4().hex}"}

    first = await alone.client.put(path, json={"value": "north"}, headers=keyed)
    again = await alone.client.put(path, json={"value": "north"}, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 200) and again.json() == first.json()
    reused = await alone.client.put(path, json={"value": "south"}, headers=keyed)
    assert reused.status_code == 409 and reused.json()["detail"]["code"] == "idempotency_key_reused"

    # The first answer froze the questions.
    edit = await alone.client.patch(f"/v1/tenants/{tenant_id}/dialogues/{dialogue['dialogue_id']}", headers=auth,
                                    json={"questions": QUESTIONS[:1]})
    assert edit.status_code == 409 and edit.json()["detail"]["code"] == "has_answers"
    renamed = await alone.client.patch(f"/v1/tenants/{tenant_id}/dialogues/{dialogue['dialogue_id']}",
                                       headers=auth, json={"title": "Our parks"})
    assert renamed.status_code == 200 and renamed.json()["has_answers"] is True
    assert renamed.json()["version"] == dialogue["version"] + 1

    # Withdrawn: gone from the participant's list; answering again goes on at version 3.
    assert (await alone.client.delete(path, headers=me)).status_code == 204
    assert (await alone.client.get("/v1/me/answers", headers=me)).json()["answers"] == []
    [tombstone] = await fetch(alone.owner_url, "SELECT version, choices, withdrawn_at IS NOT NULL AS withdrawn"
                                               " FROM answers WHERE answer_id = $1", first.json()["answer_id"])
    assert (tombstone["version"], tombstone["choices"], tombstone["withdrawn"]) == (2, [], True)
    back = await alone.client.put(path, json={"value": "south"}, headers=me)
    assert back.status_code == 200 and back.json()["version"] == 3
    assert [a["value"] for a in (await alone.client.get("/v1/me/answers", headers=me)).json()["answers"]] == ["south"]

    def data(record: dict) -> dict:
        return (record["value"] or {}).get("data") or {}

    changes = await read_topic(stack.kafka, Topics.ANSWER_CHANGED, until=lambda rs: sum(
        data(r).get("answer_id") == first.json()["answer_id"] for r in rs) >= 2)
    assert [(data(r)["change"], data(r)["version"]) for r in changes
            if data(r).get("answer_id") == first.json()["answer_id"]] == [("withdrawn", 2), ("edited", 3)]
    assert await eventually(lambda: _outbox_empty(alone.owner_url))


async def _outbox_empty(owner_url: str) -> bool:
    return await fetchval(owner_url, "SELECT count(*) FROM outbox") == 0


async def test_the_group_view_waits_for_k_and_the_tenant_pages_answers_by_participant(alone, stack):
    tenant_id, auth = await registered_tenant(alone, stack, min_group_size=3)
    dialogue = await published(alone, tenant_id, auth)
    scale = dialogue["questions"][1]["question_id"]
    path = f"/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{scale}"
    people = [alone.participant(tenant_id) for _ in range(3)]
    results = await asyncio.gather(*(alone.client.put(f"{path}/answer", json={"value": v}, headers=who)
                                     for v, who in zip((1, 3, 5), people, strict=True)))
    assert [r.status_code for r in results] == [201, 201, 201]
    view = (await alone.client.get(f"{path}/group", headers=people[0])).json()
    assert view["status"] == "ready" and view["respondents"] == 3 and view["mean"] == 3.0
    outsider = alone.participant(tenant_id)
    refused = await alone.client.get(f"{path}/group", headers=outsider)
    assert refused.status_code == 409 and refused.json()["detail"]["code"] == "answer_first"

    base = f"/v1/tenants/{tenant_id}/dialogues/{dialogue['dialogue_id']}/answers"
    page = (await alone.client.get(base, params={"limit": 2}, headers=auth)).json()["answers"]
    rest = (await alone.client.get(base, params={"limit": 2, "offset": 2}, headers=auth)).json()["answers"]
    assert len(page) == 2 and len(rest) == 1
    one = page[0]["participant_id"]
    only = (await alone.client.get(base, params={"participant_id": one, "question_id": scale},
                                   headers=auth)).json()["answers"]
    assert [a["participant_id"] for a in only] == [one]

    # Another tenant sees none of it, through any route.
    other_id, other_auth = await registered_tenant(alone, stack)
    assert (await alone.client.get(f"/v1/tenants/{other_id}/dialogues/{dialogue['dialogue_id']}",
                                   headers=other_auth)).status_code == 404
    stranger = alone.participant(other_id)
    assert (await alone.client.get(f"{path}/group", headers=stranger)).status_code == 404
    assert (await alone.client.put(f"/v1/me/answers/{page[0]['answer_id']}", json={"value": 2},
                                   headers=stranger)).status_code == 404


async def test_settings_change_with_a_revision_and_are_published(alone, stack):
    tenant_id, auth = await registered_tenant(alone, stack)
    changed = await alone.client.put(f"/v1/tenants/{tenant_id}/settings", headers=auth,
                                     json={"min_group_size": 4, "pii_policy": "reject"})
    assert changed.json() == {"min_group_size": 4, "pii_policy": "reject", "revision": 1}
    records = await read_topic(stack.kafka, Topics.TENANT_SETTINGS_CHANGED,
                               until=lambda rs: any((r["value"] or {}).get("tenant_id") == tenant_id for r in rs))
    # Other tests put unparseable records on the topics on purpose (dead letters).
    [event] = [r for r in records if (r["value"] or {}).get("tenant_id") == tenant_id]
    assert event["value"]["data"] == {"min_group_size": 4, "pii_policy": "reject", "revision": 1}
    assert event["key"] == tenant_id.encode()
