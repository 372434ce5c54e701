"""Bad input to the dialogue routes gets a clear 4xx with a reason and changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest

from support.apps import (
    Platform,
    bearer,
    create_tenant,
    enrol_devices,
    running,
    served,
    tenant_known_to_dialogue,
)
from support.db import fetchval
from tessera_common.identity import ASSERTION_HEADER, Participant, generate_signing_key, sign_assertion
from tessera_enrolment.app import create_app as create_gateway

pytestmark = pytest.mark.connected

QUESTIONS = [
    {"kind": "single_choice", "prompt": "Which?", "choices": [{"key": "a", "label": "A"}, {"key": "b", "label": "B"}]},
    {"kind": "multiple_choice", "prompt": "Which ones?",
     "choices": [{"key": "a", "label": "A"}, {"key": "b", "label": "B"}]},
    {"kind": "scale", "prompt": "How much?", "scale": {"min": 0, "max": 10}},
    {"kind": "open_text", "prompt": "Why?"},
    {"kind": "idea", "prompt": "Ideas?"},
]



@pytest.fixture(scope="module")
async def world(platform):
    """Two tenants, each with a published dialogue and an enrolled phone."""
    made = {}
    for name in ("mine", "theirs"):
        tenant = await create_tenant(platform.gateway, name)
        await tenant_known_to_dialogue(platform, tenant)
        base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
        dialogue = (await platform.dialogue.post(base, json={"title": name, "questions": QUESTIONS},
                                                 headers=bearer(tenant["api_key"]))).json()
        await platform.dialogue.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=bearer(tenant["api_key"]))
        (device,) = await enrol_devices(platform, tenant, 1)
        made[name] = {"tenant": tenant, "dialogue": dialogue, "device": device, "base": base}
    return made


class AnswerRows:
    """The dialogue database's answers, counted as its owner (every tenant's rows)."""

    def __init__(self, owner_url: str) -> None:
        self.owner_url = owner_url

    async def count(self) -> int:
        return await fetchval(self.owner_url, "SELECT count(*) FROM answers")


@pytest.fixture
def answers_db(platform) -> AnswerRows:
    return AnswerRows(platform.database_url("dialogue", owner=True))


def path(world_part: dict, kind: str, tail: str = "answer") -> str:
    question = next(q for q in world_part["dialogue"]["questions"] if q["kind"] == kind)
    return f"/v1/me/dialogues/{world_part['dialogue']['dialogue_id']}/questions/{question['question_id']}/{tail}"


@pytest.mark.parametrize(
    ("kind", "body", "status", "code"),
    [
        ("single_choice", {"value": "z"}, 422, "choice_not_offered"),
        ("single_choice", {"value": {"$gt": ""}}, 422, "wrong_type"),
        ("single_choice", {"value": ["a"]}, 422, "wrong_type"),
        ("multiple_choice", {"value": ["a", {"$ne": None}]}, 422, "wrong_type"),
        ("multiple_choice", {"value": ["a", "a"]}, 422, "duplicate_choice"),
        ("scale", {"value": "5"}, 422, "wrong_type"),
        ("scale", {"value": 11}, 422, "out_of_scale"),
        ("scale", {"value": True}, 422, "wrong_type"),
        ("open_text", {"value": "x" * 2001}, 422, "text_too_long"),
        ("open_text", {"value": "   "}, 422, "empty_text"),
        ("open_text", {"value": {"$where": "sleep(1000)"}}, 422, "wrong_type"),
        ("idea", {"value": "an idea"}, 422, "wrong_route"),
    ],
)
async def test_a_wrong_answer_is_refused_with_its_reason_and_nothing_is_stored(
    platform, world, answers_db, kind, body, status, code
):
    mine = world["mine"]
    before = await answers_db.count()
    response = await platform.gateway.put(path(mine, kind), json=body, headers=bearer(mine["device"]["device_token"]))
    assert response.status_code == status, response.text
    assert response.json()["detail"]["code"] == code
    assert await answers_db.count() == before


@pytest.mark.parametrize(
    "body",
    [{}, {"value": "a", "participant_id": "p_someone"}, {"answer": "a"}, [], "a"],
)
async def test_a_malformed_body_is_422(platform, world, answers_db, body):
    mine = world["mine"]
    before = await answers_db.count()
    response = await platform.gateway.put(path(mine, "single_choice"), json=body,
                                          headers=bearer(mine["device"]["device_token"]))
    assert response.status_code == 422
    assert await answers_db.count() == before


async def test_a_body_that_is_not_json_is_400_at_the_gateway_and_changes_nothing(platform, world, answers_db):
    mine = world["mine"]
    before = await answers_db.count()
    response = await platform.gateway.put(path(mine, "open_text"), content=b'{"value": "half',
                                          headers={**bearer(mine["device"]["device_token"]),
                                                   "content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["detail"]["code"] == "malformed_json"
    assert await answers_db.count() == before


async def test_an_oversized_body_is_413_at_the_gateway(platform, world):
    mine = world["mine"]
    response = await platform.gateway.put(path(mine, "open_text"), json={"value": "x" * 20_000},
                                          headers=bearer(mine["device"]["device_token"]))
    assert response.status_code == 413


async def test_another_tenants_dialogue_is_as_absent_as_a_missing_one(platform, world, answers_db):
    mine, theirs = world["mine"], world["theirs"]
    before = await answers_db.count()
    headers = bearer(mine["device"]["device_token"])
    for response in (
        await platform.gateway.get(f"/v1/me/dialogues/{theirs['dialogue']['dialogue_id']}", headers=headers),
        await platform.gateway.put(path(theirs, "single_choice"), json={"value": "a"}, headers=headers),
        await platform.gateway.get(path(theirs, "single_choice", "group"), headers=headers),
        await platform.gateway.get(f"/v1/me/dialogues/d_{uuid4().hex[:16]}", headers=headers),
    ):
        assert response.status_code == 404 and response.json()["detail"]["code"] == "dialogue_not_found"
    assert await answers_db.count() == before
    listed = await platform.gateway.get("/v1/me/dialogues", headers=headers)
    assert [d["dialogue_id"] for d in listed.json()["dialogues"]] == [mine["dialogue"]["dialogue_id"]]

    # A tenant's key on another tenant's routes: 403, and nothing of theirs shows.
    peek = await platform.dialogue.get(f"{theirs['base']}/{theirs['dialogue']['dialogue_id']}/answers",
                                       headers=bearer(mine["tenant"]["api_key"]))
    assert peek.status_code == 403
    own_path_other_id = await platform.dialogue.get(f"{mine['base']}/{theirs['dialogue']['dialogue_id']}",
                                                    headers=bearer(mine["tenant"]["api_key"]))
    assert own_path_other_id.status_code == 404


async def test_participant_routes_need_the_gateway(platform, world):
    mine = world["mine"]
    target = path(mine, "single_choice")
    no_assertion = await platform.dialogue.put(target, json={"value": "a"})
    assert no_assertion.status_code == 401
    forged_key, _ = generate_signing_key()
    forged = sign_assertion(forged_key, Participant(mine["device"]["participant_id"], mine["tenant"]["tenant_id"]),
                            "tessera-dialogue")
    assert (await platform.dialogue.put(target, json={"value": "a"},
                                        headers={ASSERTION_HEADER: forged})).status_code == 401
    other_audience = sign_assertion(platform.signing_key, Participant(mine["device"]["participant_id"],
                                                                      mine["tenant"]["tenant_id"]), "tessera-rights")
    assert (await platform.dialogue.put(target, json={"value": "a"},
                                        headers={ASSERTION_HEADER: other_audience})).status_code == 401
    bad_token = await platform.gateway.put(target, json={"value": "a"}, headers=bearer("tdt_p_x.forged"))
    assert bad_token.status_code == 401
    injected = await platform.gateway.get("/v1/me/dialogues/$where", headers=bearer(mine["device"]["device_token"]))
    assert injected.status_code in (404, 422)


async def test_answers_to_a_closed_dialogue_are_refused_and_questions_freeze_after_answers(platform, stack):
    tenant = await create_tenant(platform.gateway, "closing")
    await tenant_known_to_dialogue(platform, tenant)
    auth = bearer(tenant["api_key"])
    base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
    dialogue = (await platform.dialogue.post(base, json={"title": "t", "questions": QUESTIONS}, headers=auth)).json()
    did = dialogue["dialogue_id"]
    draft_edit = await platform.dialogue.patch(f"{base}/{did}", json={"questions": QUESTIONS[:2]}, headers=auth)
    assert draft_edit.status_code == 200 and len(draft_edit.json()["questions"]) == 2
    await platform.dialogue.post(f"{base}/{did}/publish", headers=auth)
    (device,) = await enrol_devices(platform, tenant, 1)
    part = {"dialogue": draft_edit.json()}

    assert (await platform.gateway.put(path(part, "single_choice"), json={"value": "a"},
                                       headers=bearer(device["device_token"]))).status_code == 201
    frozen = await platform.dialogue.patch(f"{base}/{did}", json={"questions": QUESTIONS}, headers=auth)
    assert frozen.status_code == 409 and frozen.json()["detail"]["code"] == "has_answers"
    retitled = await platform.dialogue.patch(f"{base}/{did}", json={"title": "Better title"}, headers=auth)
    assert retitled.status_code == 200 and retitled.json()["title"] == "Better title"

    assert (await platform.dialogue.post(f"{base}/{did}/close", headers=auth)).status_code == 200
    late = await platform.gateway.put(path(part, "multiple_choice"), json={"value": ["a"]},
                                      headers=bearer(device["device_token"]))
    assert late.status_code == 409 and late.json()["detail"]["code"] == "dialogue_not_open"
    withdraw = await platform.gateway.delete(path(part, "single_choice"), headers=bearer(device["device_token"]))
    assert withdraw.status_code == 409
    mine = await platform.gateway.get("/v1/me/answers", headers=bearer(device["device_token"]))
    assert [a["value"] for a in mine.json()["answers"]] == ["a"]  # still visible after closing

    archived = await platform.dialogue.post(f"{base}/{did}/archive", headers=auth)
    assert archived.status_code == 200
    again = await platform.dialogue.post(f"{base}/{did}/publish", headers=auth)
    assert again.status_code == 409 and again.json()["detail"]["code"] == "bad_transition"


@pytest.mark.parametrize(
    "body",
    [
        {"title": {"$gt": ""}, "questions": []},
        {"title": "t", "questions": [{"kind": "single_choice", "prompt": "?", "choices": [{"key": "a", "label": "A"}]}]},
        {"title": "t", "questions": [{"kind": "scale", "prompt": "?", "scale": {"min": 5, "max": 1}}]},
        {"title": "t", "questions": [{"kind": "essay", "prompt": "?"}]},
        {"title": "t", "questions": [{"kind": "open_text", "prompt": "?", "question_id": "q_not_mine"}]},
        {"title": "t", "opens_at": "2030-01-02T00:00:00Z", "closes_at": "2030-01-01T00:00:00Z"},
        {"title": "t", "opens_at": "2030-01-02T00:00:00"},
        {"title": "t", "opens_at": 0},  # a number is not a date-time, not even a Unix one
        {"title": "t", "opens_at": 1_900_000_000.5},
        {"title": "t", "closes_at": "1900000000"},
        {"title": "t", "closes_at": "2030-01-01"},  # a date is not a date-time
        {"title": "t", "owner": "someone"},
    ],
)
async def test_a_malformed_dialogue_is_refused_and_nothing_is_created(platform, world, body):
    mine = world["mine"]
    before = (await platform.dialogue.get(mine["base"], headers=bearer(mine["tenant"]["api_key"]))).json()
    response = await platform.dialogue.post(mine["base"], json=body, headers=bearer(mine["tenant"]["api_key"]))
    assert response.status_code == 422, response.text
    after = (await platform.dialogue.get(mine["base"], headers=bearer(mine["tenant"]["api_key"]))).json()
    assert after == before


@pytest.mark.parametrize("body", [{"min_group_size": 2}, {"min_group_size": "5"}, {"pii_policy": "ignore"},
                                  {"min_group_size": {"$gt": 0}}])
async def test_settings_refuse_k_below_three_and_unknown_policies(platform, world, body):
    mine = world["mine"]
    url = f"/v1/tenants/{mine['tenant']['tenant_id']}/settings"
    before = (await platform.dialogue.get(url, headers=bearer(mine["tenant"]["api_key"]))).json()
    response = await platform.dialogue.put(url, json=body, headers=bearer(mine["tenant"]["api_key"]))
    assert response.status_code == 422
    assert (await platform.dialogue.get(url, headers=bearer(mine["tenant"]["api_key"]))).json() == before


def with_lone_surrogate(body: dict) -> dict:
    """Request arguments for a JSON body whose text holds a lone UTF-16 surrogate: valid
    JSON (``\\ud800``), but no Unicode text. httpx's encoder refuses such a string, so
    the body goes as bytes."""
    return {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json"}}


def unicode_errors(response: httpx.Response) -> list[list]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert all(error["type"] == "string_unicode" and "input" not in error for error in detail)
    return [error["loc"] for error in detail]


async def published_dialogue(platform: Platform, name: str) -> tuple[dict, dict, str]:
    """A fresh tenant with a published dialogue of every question kind: (tenant, dialogue, base URL)."""
    tenant = await create_tenant(platform.gateway, name)
    await tenant_known_to_dialogue(platform, tenant)
    base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
    created = await platform.dialogue.post(base, json={"title": name, "questions": QUESTIONS},
                                           headers=bearer(tenant["api_key"]))
    assert created.status_code == 201, created.text
    published = await platform.dialogue.post(f"{base}/{created.json()['dialogue_id']}/publish",
                                             headers=bearer(tenant["api_key"]))
    assert published.status_code == 200, published.text
    return tenant, published.json(), base


async def test_answer_text_with_a_lone_surrogate_is_422_and_leaves_the_dialogue_unanswered(platform, answers_db):
    tenant, dialogue, base = await published_dialogue(platform, "surrogates")
    (device,) = await enrol_devices(platform, tenant, 1)
    auth, device_auth = bearer(tenant["api_key"]), bearer(device["device_token"])
    part = {"dialogue": dialogue}
    before = await answers_db.count()

    for send, target in ((platform.gateway.put, path(part, "open_text")),
                         (platform.gateway.post, path(part, "idea", "ideas"))):
        request = with_lone_surrogate({"value": "x \ud800 y"})
        response = await send(target, content=request["content"], headers={**request["headers"], **device_auth})
        assert unicode_errors(response) == [["body", "value"]]
    keyed = with_lone_surrogate({"value": {"\udc00": "a"}})  # an object key is text too
    response = await platform.gateway.put(path(part, "single_choice"), content=keyed["content"],
                                          headers={**keyed["headers"], **device_auth})
    assert unicode_errors(response) == [["body", "value"]]

    # Nothing changed: no answer, the dialogue still unanswered, its questions still editable.
    assert await answers_db.count() == before
    assert (await platform.gateway.get("/v1/me/answers", headers=device_auth)).json()["answers"] == []
    url = f"{base}/{dialogue['dialogue_id']}"
    assert (await platform.dialogue.get(url, headers=auth)).json()["has_answers"] is False
    edited = await platform.dialogue.patch(url, json={"questions": dialogue["questions"]}, headers=auth)
    assert edited.status_code == 200, edited.text
    # ... until a real answer freezes them.
    answered = await platform.gateway.put(path(part, "open_text"), json={"value": "x y"}, headers=device_auth)
    assert answered.status_code == 201, answered.text
    frozen = await platform.dialogue.patch(url, json={"questions": dialogue["questions"]}, headers=auth)
    assert frozen.status_code == 409 and frozen.json()["detail"]["code"] == "has_answers"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"title": "\ud800", "questions": []}, ["body", "title"]),
        ({"title": "t", "intro": "a \udfff b"}, ["body", "intro"]),
        ({"title": "t", "questions": [{"kind": "open_text", "prompt": "why\ud83d?"}]},
         ["body", "questions", 0, "prompt"]),
        ({"title": "t", "questions": [{"kind": "single_choice", "prompt": "?", "choices": [
            {"key": "a", "label": "A"}, {"key": "b", "label": "\udc00"}]}]},
         ["body", "questions", 0, "choices", 1, "label"]),
        ({"title": "t", "questions": [{"kind": "scale", "prompt": "?", "scale": {
            "min": 1, "max": 5, "labels": {"1": "\ud800"}}}]},
         ["body", "questions", 0, "scale", "labels", "1"]),
    ],
)
async def test_a_lone_surrogate_in_any_text_of_a_dialogue_is_422_naming_the_field(platform, world, body, where):
    mine = world["mine"]
    auth = bearer(mine["tenant"]["api_key"])
    before = (await platform.dialogue.get(mine["base"], headers=auth)).json()
    request = with_lone_surrogate(body)
    created = await platform.dialogue.post(mine["base"], content=request["content"],
                                           headers={**request["headers"], **auth})
    assert unicode_errors(created) == [where]
    edited = await platform.dialogue.patch(f"{mine['base']}/{mine['dialogue']['dialogue_id']}",
                                           content=request["content"], headers={**request["headers"], **auth})
    assert unicode_errors(edited) == [where]
    assert (await platform.dialogue.get(mine["base"], headers=auth)).json() == before


@pytest.mark.parametrize("value", [0, 1_900_000_000, "1900000000", "2030-01-01", "2030-01-01T09:00:00"])
async def test_a_number_or_a_zoneless_time_is_no_window_on_edit_either(platform, world, value):
    mine = world["mine"]
    auth = bearer(mine["tenant"]["api_key"])
    url = f"{mine['base']}/{mine['dialogue']['dialogue_id']}"
    before = (await platform.dialogue.get(url, headers=auth)).json()
    for field in ("opens_at", "closes_at"):
        response = await platform.dialogue.patch(url, json={field: value}, headers=auth)
        assert response.status_code == 422, response.text
        assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]
    assert (await platform.dialogue.get(url, headers=auth)).json() == before
    fine = await platform.dialogue.patch(url, json={"closes_at": "2999-01-01T09:00:00+01:00"}, headers=auth)
    assert fine.status_code == 200 and fine.json()["closes_at"] == "2999-01-01T08:00:00Z"


@pytest.fixture(scope="module")
async def gateway_over_http(platform) -> AsyncIterator[httpx.AsyncClient]:
    """A second gateway replica that reaches dialogue over real HTTP, as in production:
    an in-process transport would carry a header that HTTP itself cannot."""
    async with served(platform.dialogue_app) as url:
        settings = platform.gateway_app.state.wiring.settings.model_copy(update={"dialogue_url": url})
        async with running(create_gateway(settings)) as client:
            yield client


@pytest.mark.parametrize(
    "header",
    [
        {"Idempotency-Key": b"abcdefgh\xff"},
        {"Accept": "é".encode()},
        {"Idempotency-Key": b"abcd\x01efgh"},
        {"Accept": b"application/json\x7f"},
    ],
)
async def test_a_malformed_forwarded_header_is_400_at_the_gateway_not_an_outage(
    platform, world, answers_db, gateway_over_http, header
):
    mine = world["mine"]
    before = await answers_db.count()
    for gateway in (platform.gateway, gateway_over_http):
        response = await gateway.put(path(mine, "open_text"), json={"value": "fine"},
                                     headers={**bearer(mine["device"]["device_token"]), **header})
        assert response.status_code == 400, response.text
        assert response.json()["detail"]["code"] == "malformed_header"
        assert "retry-after" not in response.headers
    assert await answers_db.count() == before


async def test_whitespace_around_a_forwarded_header_is_not_part_of_it(platform, gateway_over_http):
    """RFC 9110 §5.5: a field value excludes leading and trailing whitespace. Sent on as
    it came, h11 refused it and the gateway answered 503, so a client retried forever."""
    tenant, dialogue, _ = await published_dialogue(platform, "whitespace")
    (device,) = await enrol_devices(platform, tenant, 1)
    key = "abcdefgh99"
    idea = path({"dialogue": dialogue}, "idea", "ideas")
    first = await gateway_over_http.post(idea, content=b'{"value": "a bench"}', headers={
        **bearer(device["device_token"]), "Idempotency-Key": key + " ", "content-type": "application/json "})
    assert first.status_code == 201, first.text
    again = await gateway_over_http.post(idea, json={"value": "a bench"},
                                         headers={**bearer(device["device_token"]), "Idempotency-Key": key})
    assert again.status_code == 200 and again.json()["answer_id"] == first.json()["answer_id"]
    mine = await platform.gateway.get("/v1/me/answers", headers=bearer(device["device_token"]))
    assert [a["value"] for a in mine.json()["answers"]] == ["a bench"]
