"""Bad input gets a clear 4xx with a reason, changes nothing and leaks nothing."""

from __future__ import annotations

import json

import pytest

from support.apps import OPERATOR_KEY, create_code, create_tenant, enrol

pytestmark = pytest.mark.connected


@pytest.mark.parametrize(
    "body",
    [
        {"code": {"$gt": ""}, "platform": "ios", "form_factor": "phone"},  # operator injection
        {"code": {"$ne": None}, "platform": "ios", "form_factor": "phone"},
        {"code": ["ABCDE-FGHJK"], "platform": "ios", "form_factor": "phone"},
        {"code": 1234567890, "platform": "ios", "form_factor": "phone"},  # wrong type
        {"code": "ABCDE-FGHJK", "platform": "windows", "form_factor": "phone"},
        {"code": "ABCDE-FGHJK", "platform": "ios", "form_factor": {"$in": ["phone"]}},
        {"code": "ABCDE-FGHJK", "platform": "ios"},  # missing field
        {"code": "ABCDE-FGHJK", "platform": "ios", "form_factor": "phone", "email": "a@b.nl"},  # extra data
        {"code": "A" * 100, "platform": "ios", "form_factor": "phone"},
    ],
)
async def test_malformed_enrolments_are_422_with_the_field_named(gateway, body):
    response = await gateway.post("/v1/enrolments", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail and all("loc" in d and "msg" in d for d in detail)
    assert all("input" not in d for d in detail)  # the rejected value is not echoed back


async def test_operator_injection_does_not_enrol_against_any_code(gateway):
    tenant = await create_tenant(gateway)
    await create_code(gateway, tenant)

    response = await gateway.post(
        "/v1/enrolments", json={"code": {"$gt": ""}, "platform": "ios", "form_factor": "phone"}
    )

    assert response.status_code == 422
    codes = await gateway.get(
        f"/v1/tenants/{tenant['tenant_id']}/codes", headers={"Authorization": f"Bearer {tenant['api_key']}"}
    )
    assert [c["enrolments"] for c in codes.json()["codes"]] == [0]


async def test_an_oversized_body_is_413_before_it_is_read(gateway):
    response = await gateway.post(
        "/v1/enrolments",
        content=b'{"code": "' + b"A" * 100_000 + b'", "platform": "ios", "form_factor": "phone"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["detail"]["code"] == "body_too_large"


async def test_a_streamed_oversized_body_without_length_is_413(gateway):
    async def chunks():
        for _ in range(40):
            yield b"A" * 1024

    response = await gateway.post("/v1/enrolments", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"code=ABC", "Expecting value at line 1, column 1"),
        (b'{"code": "K7MQ2X9RTA", }', "Expecting property name enclosed in double quotes at line 1, column 24"),
        (b'{"code": "K7MQ2X9RT\xff"}', "it is not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "it is nested too deeply"),
    ],
)
async def test_a_body_that_is_not_json_is_400_in_the_error_shape_of_every_error(gateway, body, reason):
    response = await gateway.post("/v1/enrolments", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json() == {"detail": {"code": "malformed_json", "message": f"the body is not valid JSON: {reason}"}}


async def test_a_tenant_key_cannot_read_or_change_another_tenants_codes(gateway):
    alice, bob = await create_tenant(gateway, "Alice org"), await create_tenant(gateway, "Bob org")
    bobs_code = await create_code(gateway, bob)
    as_alice = {"Authorization": f"Bearer {alice['api_key']}"}

    listing = await gateway.get(f"/v1/tenants/{bob['tenant_id']}/codes", headers=as_alice)
    revoke = await gateway.delete(f"/v1/tenants/{bob['tenant_id']}/codes/{bobs_code['code']}", headers=as_alice)
    create = await gateway.post(f"/v1/tenants/{bob['tenant_id']}/codes", json={}, headers=as_alice)
    # Alice's own path with Bob's code: not hers, so not found.
    cross = await gateway.delete(f"/v1/tenants/{alice['tenant_id']}/codes/{bobs_code['code']}", headers=as_alice)

    assert (listing.status_code, revoke.status_code, create.status_code) == (403, 403, 403)
    assert cross.status_code == 404
    assert bobs_code["code"] not in listing.text
    bob_view = await gateway.get(
        f"/v1/tenants/{bob['tenant_id']}/codes", headers={"Authorization": f"Bearer {bob['api_key']}"}
    )
    assert [c["status"] for c in bob_view.json()["codes"]] == ["active"]
    assert (await enrol(gateway, bobs_code["code"])).json()["tenant_id"] == bob["tenant_id"]


async def test_an_unknown_tenant_id_gets_403_not_a_hint(gateway):
    tenant = await create_tenant(gateway)
    response = await gateway.get(
        "/v1/tenants/t_doesnotexist000/codes", headers={"Authorization": f"Bearer {tenant['api_key']}"}
    )
    assert response.status_code == 403


@pytest.mark.parametrize("tenant_id", ["t_$gt", "..%2F..", "t_" + "a" * 100])
async def test_malformed_tenant_ids_are_422(gateway, tenant_id):
    tenant = await create_tenant(gateway)
    response = await gateway.get(f"/v1/tenants/{tenant_id}/codes", headers={"Authorization": f"Bearer {tenant['api_key']}"})
    assert response.status_code in (404, 422)
    assert response.status_code != 200


async def test_a_device_token_is_not_a_tenant_key_and_vice_versa(gateway):
    tenant = await create_tenant(gateway)
    other = await create_tenant(gateway)
    device = (await enrol(gateway, (await create_code(gateway, other))["code"])).json()

    as_device = await gateway.get(
        f"/v1/tenants/{other['tenant_id']}/codes", headers={"Authorization": f"Bearer {device['device_token']}"}
    )
    as_tenant = await gateway.get("/v1/me", headers={"Authorization": f"Bearer {tenant['api_key']}"})

    assert as_device.status_code == 401
    assert as_tenant.status_code == 401


async def test_tenant_creation_needs_the_operator_key_and_an_eu_region(gateway):
    no_key = await gateway.post("/v1/tenants", json={"name": "X", "region": "eu-west"})
    wrong_key = await gateway.post(
        "/v1/tenants", json={"name": "X", "region": "eu-west"}, headers={"Authorization": "Bearer nope"}
    )
    outside_eu = await gateway.post(
        "/v1/tenants", json={"name": "X", "region": "us-east"}, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}
    )
    assert (no_key.status_code, wrong_key.status_code, outside_eu.status_code) == (401, 401, 422)
    assert no_key.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "body",
    [
        {"max_enrolments": 0},
        {"max_enrolments": "5"},
        {"max_enrolments": {"$gt": 0}},
        {"expires_at": "2020-01-01T00:00:00Z"},
        {"expires_at": "2030-01-01T00:00:00"},  # no time zone
        {"expires_at": "tomorrow"},
        {"expires_at": 1_900_000_000},  # a number is not a date-time, not even a Unix one
        {"expires_at": "1900000000"},
        {"expires_at": "2030-01-01"},  # nor is a date
        {"unexpected": True},
    ],
)
async def test_bad_code_requests_are_422_and_create_nothing(gateway, body):
    tenant = await create_tenant(gateway)
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}

    response = await gateway.post(f"/v1/tenants/{tenant['tenant_id']}/codes", json=body, headers=auth)

    assert response.status_code == 422, response.text
    listing = await gateway.get(f"/v1/tenants/{tenant['tenant_id']}/codes", headers=auth)
    assert listing.json()["codes"] == []


async def test_a_forged_device_token_naming_a_real_participant_is_401(gateway):
    tenant = await create_tenant(gateway)
    device = (await enrol(gateway, (await create_code(gateway, tenant))["code"])).json()
    selector = device["device_token"].rsplit(".", 1)[0]

    for forged in (selector + "." + "A" * 43, selector, device["device_token"] + "x", '{"$gt": ""}'):
        response = await gateway.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401, forged
        assert device["participant_id"] not in response.text


async def test_a_code_typed_with_a_look_alike_outside_ascii_is_as_unknown_as_any_typo(gateway):
    """``str.upper()`` maps ``ſ`` (long s) to ``S``: the code must be matched on its own
    alphabet, so a character outside it is a typo with the one answer every bad code gets."""
    tenant = await create_tenant(gateway)
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    for _ in range(60):  # about a code in four has an S
        code = (await create_code(gateway, tenant))["code"]
        if "S" in code:
            break
    else:
        pytest.fail("no code with an S")
    unknown = await enrol(gateway, "K7MQ2X9RTA" if code != "K7MQ2X9RTA" else "K7MQ2X9RTB")

    typo = await enrol(gateway, code.lower().replace("s", "\u017f"))

    assert typo.status_code == 404
    assert typo.json() == unknown.json()
    revoked = await gateway.delete(f"/v1/tenants/{tenant['tenant_id']}/codes/{code.replace('S', '%C5%BF')}",
                                   headers=auth)
    assert revoked.status_code == 404
    listed = (await gateway.get(f"/v1/tenants/{tenant['tenant_id']}/codes", headers=auth,
                                params={"limit": 500})).json()["codes"]
    assert {c["code"]: (c["status"], c["enrolments"]) for c in listed}[code] == ("active", 0)
    assert (await enrol(gateway, code.lower())).status_code == 201  # ASCII in any case still works


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/v1/tenants", {"name": "Gemeente \ud800", "region": "eu-west"}, ["body", "name"]),
        ("/v1/enrolments", {"code": "K7MQ2X9RT\udfff", "platform": "ios", "form_factor": "phone"}, ["body", "code"]),
    ],
)
async def test_a_lone_surrogate_in_any_text_is_422_naming_the_field(gateway, path, body, where):
    response = await gateway.post(path, content=json.dumps(body).encode(), headers={
        "content-type": "application/json", "Authorization": f"Bearer {OPERATOR_KEY}"})

    assert response.status_code == 422, response.text
    assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == [("string_unicode", where)]
    assert all("input" not in e for e in response.json()["detail"])  # the text is not echoed


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/tenants/t_abcdefghij/codes", "GET, POST"),  # two routes on one path
        ("PATCH", "/v1/me/answers/a_1", "DELETE, PUT"),  # forwarded to dialogue
        ("POST", "/v1/me", "GET"),
    ],
)
async def test_a_known_path_with_another_method_is_405_naming_every_method_it_takes(gateway, method, path, allowed):
    response = await gateway.request(method, path, json={})

    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json() == {"detail": {"code": "method_not_allowed", "message": "Method Not Allowed"}}


async def test_an_unknown_path_is_404_in_the_error_shape_of_every_error(gateway):
    response = await gateway.get("/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"detail": {"code": "not_found", "message": "Not Found"}}
