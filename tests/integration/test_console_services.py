"""The console reaches dialogue, analytics and rights through the gateway, which checks
the session and the role and vouches for the account with a signed staff assertion;
each service checks the assertion again and trusts nothing else (no cookie, no
unsigned header). On the real stack, all four services in-process."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest

from support.apps import PARK_QUESTIONS, bearer, tenant_known_to_dialogue, tenant_known_to_rights
from support.db import execute
from support.kafka import eventually
from support.console import Person, join, new_tenant
from tessera_common.identity import (
    STAFF_ASSERTION_HEADER,
    Participant,
    Staff,
    generate_signing_key,
    sign_assertion,
    sign_staff_assertion,
)

pytestmark = pytest.mark.connected


async def team(platform) -> tuple[dict, dict[str, Person]]:
    owner_address = f"owner-{uuid4().hex[:8]}@x.example"
    tenant = await new_tenant(platform.gateway, owner_address)
    people = {"owner": await join(platform.gateway, tenant["owner_invitation_url"])}
    for role in ("editor", "analyst", "privacy_officer"):
        made = await people["owner"].call("POST", "/team/invitations",
                                          json={"email": f"{role}-{uuid4().hex[:6]}@x.example", "role": role})
        people[role] = await join(platform.gateway, made.json()["invitation_url"], name=role)
    await tenant_known_to_dialogue(platform, tenant)
    await tenant_known_to_rights(platform, tenant)
    return tenant, people


async def test_each_role_reaches_what_it_may_through_the_gateway(platform) -> None:
    tenant, people = await team(platform)
    editor, analyst, officer = people["editor"], people["analyst"], people["privacy_officer"]

    made = await editor.call("POST", "/dialogue/dialogues", json={"title": "Parks", "questions": PARK_QUESTIONS})
    assert made.status_code == 201, made.text
    dialogue = made.json()
    published = await editor.call("POST", f"/dialogue/dialogues/{dialogue['dialogue_id']}/publish")
    assert (published.status_code, published.json()["status"]) == (200, "published")
    listed = await editor.call("GET", "/dialogue/dialogues")
    assert [d["dialogue_id"] for d in listed.json()["dialogues"]] == [dialogue["dialogue_id"]]
    # The same dialogue as the tenant's API key sees it: one tenant, two doors.
    by_key = await platform.dialogue.get(f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue['dialogue_id']}",
                                         headers=bearer(tenant["api_key"]))
    assert by_key.json()["title"] == "Parks"

    # An analyst sees figures, not the dialogue service; a privacy officer the rights desk.
    refused = await analyst.call("GET", "/dialogue/dialogues")
    assert (refused.status_code, refused.json()["detail"]["code"]) == (403, "role_not_allowed")

    async def figures():
        response = await analyst.call("GET", "/analytics/dialogues")
        return response.status_code == 200 and response.json()["dialogues"] or None

    assert [d["dialogue_id"] for d in await eventually(figures, timeout=60)] == [dialogue["dialogue_id"]]
    assert (await officer.call("GET", "/rights/rights-requests")).status_code == 200
    assert (await editor.call("GET", "/rights/rights-requests")).status_code == 403
    assert (await officer.call("GET", "/analytics/dialogues")).status_code == 403

    # Changes need the CSRF token; the tenant comes from the session, never the path.
    without = await editor.call("POST", "/dialogue/dialogues", csrf=False, json={"title": "x", "questions": []})
    assert (without.status_code, without.json()["detail"]["code"]) == (403, "csrf_token_invalid")
    for path in ("/dialogue/..%2F..%2Fv1%2Ftenants", "/dialogue/dialogues/%2e%2e", "/enrolment/codes",
                 "/dialogue/dialogues/a b"):
        response = await editor.call("GET", path)
        assert response.status_code in (404, 422), (path, response.status_code)

    # The activity log says what kind of thing changed, not what it holds.
    entries = (await people["owner"].call("GET", "/activity")).json()["entries"]
    changes = [e for e in entries if e["action"] == "dialogue_change"]
    assert [c["detail"] for c in changes] == [
        {"method": "POST", "resource": "dialogues", "status": 200},
        {"method": "POST", "resource": "dialogues", "status": 201}]
    assert "Parks" not in str(entries) and dialogue["dialogue_id"] not in str(entries)


async def test_a_sensitive_change_needs_a_fresh_second_factor(platform) -> None:
    tenant, people = await team(platform)
    owner = people["owner"]
    database = platform.gateway_app.state.wiring.settings.database_owner_url.get_secret_value()
    await execute(database, "UPDATE console_sessions SET factor_at = now() - interval '10 minutes'"
                            " WHERE tenant_id = $1", tenant["tenant_id"])
    assert (await owner.call("GET", "/dialogue/settings")).json()["min_group_size"] != 7
    stale = await owner.call("PUT", "/dialogue/settings", json={"min_group_size": 7})
    assert (stale.status_code, stale.json()["detail"]["code"]) == (403, "fresh_factor_required")
    assert (await owner.call("POST", "/session/factor", json={"code": owner.code(time.time() + 30)})).status_code == 204
    changed = await owner.call("PUT", "/dialogue/settings", json={"min_group_size": 7})
    assert changed.status_code == 200, changed.text
    assert changed.json()["min_group_size"] == 7


async def test_a_service_trusts_only_a_valid_assertion_for_itself_its_tenant_and_a_role_it_allows(platform) -> None:
    tenant, _ = await team(platform)
    other, _ = await team(platform)
    path = f"/v1/tenants/{tenant['tenant_id']}/dialogues"

    def staff(role: str = "editor", tenant_id: str = tenant["tenant_id"], audience: str = "tessera-dialogue",
              key: str = platform.signing_key) -> dict[str, str]:
        return {STAFF_ASSERTION_HEADER: sign_staff_assertion(key, Staff("ca_someone1234", tenant_id, role), audience)}

    assert (await platform.dialogue.get(path, headers=staff())).status_code == 200
    cases = {
        "another key": (staff(key=generate_signing_key()[0]), 401, "invalid_assertion"),
        "another service": (staff(audience="tessera-analytics"), 401, "invalid_assertion"),
        "another tenant": (staff(tenant_id=other["tenant_id"]), 403, "wrong_tenant"),
        "a role it does not allow": (staff(role="analyst"), 403, "role_not_allowed"),
        "a participant's assertion": ({STAFF_ASSERTION_HEADER: sign_assertion(
            platform.signing_key, Participant("p_abcdefgh1234", tenant["tenant_id"]), "tessera-dialogue")},
            401, "invalid_assertion"),
        "garbage": ({STAFF_ASSERTION_HEADER: "not.a.jwt"}, 401, "invalid_assertion"),
    }
    for name, (headers, status, code) in cases.items():
        response = await platform.dialogue.get(path, headers=headers)
        assert (response.status_code, response.json()["detail"]["code"]) == (status, code), name
    # A staff assertion is no participant: the participant routes refuse it.
    me = await platform.dialogue.get("/v1/me/dialogues", headers={
        "X-Tessera-Participant-Assertion": staff()[STAFF_ASSERTION_HEADER]})
    assert me.status_code == 401
