"""A tenant's API keys, made in the console: named and scoped, revoked, with their last
use, and held to the tenant's allow-list by every service, not only by the gateway.
On the real stack (PostgreSQL, Kafka), all four services in-process: the services learn
the keys from the gateway's ``tenant-access-changed`` events."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from support.apps import bearer, client_from, tenant_known_to_dialogue, tenant_known_to_rights
from support.console import Person, join, new_tenant
from support.db import execute, fetchval
from support.kafka import eventually, produce
from tessera_common.events import (
    ApiKeyGrant,
    TenantAccessChanged,
    TenantAccessChangedData,
    TenantRegistered,
    TenantRegisteredData,
    Topics,
)
from tessera_common.secrets import secret_hash

pytestmark = pytest.mark.connected


async def owner_of_new_tenant(platform) -> tuple[dict, Person]:
    tenant = await new_tenant(platform.gateway, f"owner-{time.time_ns()}@x.example")
    owner = await join(platform.gateway, tenant["owner_invitation_url"])
    await tenant_known_to_dialogue(platform, tenant)
    await tenant_known_to_rights(platform, tenant)
    return tenant, owner


def paths(tenant: dict) -> dict[str, str]:
    tenant_id = tenant["tenant_id"]
    return {"dialogues": f"/v1/tenants/{tenant_id}/dialogues", "figures": f"/v1/tenants/{tenant_id}/dialogues",
            "rights": f"/v1/tenants/{tenant_id}/rights-requests", "codes": f"/v1/tenants/{tenant_id}/codes",
            "streams": f"/v1/tenants/{tenant_id}/kafka-credentials"}


def clients(platform) -> dict:
    return {"dialogues": platform.dialogue, "figures": platform.analytics, "rights": platform.rights,
            "codes": platform.gateway, "streams": platform.gateway}


async def status_of(platform, tenant: dict, scope: str, key: str) -> tuple[int, str | None]:
    response = await clients(platform)[scope].get(paths(tenant)[scope], headers=bearer(key))
    code = response.json()["detail"]["code"] if response.status_code >= 400 else None
    return response.status_code, code


async def test_a_scoped_key_opens_only_its_scope_everywhere_until_it_is_revoked(platform) -> None:
    tenant, owner = await owner_of_new_tenant(platform)
    made = await owner.call("POST", "/api-keys", json={"name": "HR dashboard", "scopes": ["figures", "figures"]})
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["key"].startswith(f"tak_{tenant['tenant_id']}.") and key["scopes"] == ["figures"]
    assert key["status"] == "active" and key["last_used_at"] is None

    # Each service learns the key from the gateway's event: analytics lets it in, every
    # other door knows it and stays shut to it.
    async def known_everywhere():
        return ((await status_of(platform, tenant, "figures", key["key"]))[0] == 200
                and all([await status_of(platform, tenant, scope, key["key"]) != (401, "invalid_api_key")
                         for scope in ("dialogues", "rights")]))
    await eventually(known_everywhere, timeout=30)
    for scope in ("dialogues", "rights", "codes", "streams"):
        assert await status_of(platform, tenant, scope, key["key"]) == (403, "scope_not_granted"), scope
    # The tenant's first key keeps every scope.
    for scope in ("dialogues", "figures", "rights", "codes"):
        assert (await status_of(platform, tenant, scope, tenant["api_key"]))[0] == 200, scope

    # The console shows when each key was last used, over the gateway and every service.
    listed = (await owner.call("GET", "/api-keys")).json()
    assert listed["last_use_complete"] is True
    by_id = {k["key_id"]: k for k in listed["keys"]}
    assert by_id[key["key_id"]]["last_used_at"] is not None
    assert by_id["k_initial"]["scopes"] == ["codes", "dialogues", "figures", "rights", "streams"]
    assert by_id["k_initial"]["last_used_at"] is not None
    assert by_id[key["key_id"]]["created_by"] == (await owner.call("GET", "/session")).json()["email"]
    assert set(by_id[key["key_id"]]) == {"key_id", "name", "scopes", "status", "created_at", "created_by",
                                         "revoked_at", "last_used_at"}  # never the key or its hash

    # Revoked: the gateway refuses it at once, analytics once it applies the change.
    assert (await owner.call("DELETE", f"/api-keys/{key['key_id']}")).status_code == 204
    assert (await owner.call("DELETE", f"/api-keys/{key['key_id']}")).status_code == 204  # again: no change

    async def refused_by_analytics():
        return await status_of(platform, tenant, "figures", key["key"]) == (401, "invalid_api_key")
    await eventually(refused_by_analytics, timeout=30)
    assert await status_of(platform, tenant, "codes", key["key"]) == (401, "invalid_api_key")
    revoked = next(k for k in (await owner.call("GET", "/api-keys")).json()["keys"] if k["key_id"] == key["key_id"])
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None

    # Revoking the first key shuts it everywhere too; a new key with every scope replaces it.
    replacement = (await owner.call("POST", "/api-keys", json={
        "name": "Integration", "scopes": ["dialogues", "figures", "rights", "codes", "streams"]})).json()
    assert (await owner.call("DELETE", "/api-keys/k_initial")).status_code == 204

    async def first_key_gone_everywhere():
        return all([await status_of(platform, tenant, s, tenant["api_key"]) == (401, "invalid_api_key")
                    for s in ("dialogues", "figures", "rights", "codes")])
    await eventually(first_key_gone_everywhere, timeout=30)

    async def replacement_works_everywhere():
        return all([(await status_of(platform, tenant, s, replacement["key"]))[0] == 200
                    for s in ("dialogues", "figures", "rights", "codes")])
    await eventually(replacement_works_everywhere, timeout=30)

    actions = [e["action"] for e in (await owner.call("GET", "/activity")).json()["entries"]]
    assert actions[:4] == ["api_key_revoked", "api_key_created", "api_key_revoked", "api_key_created"]
    activity = (await owner.call("GET", "/activity")).json()["entries"][:4]
    assert all(key["key"] not in str(entry) and replacement["key"] not in str(entry) for entry in activity)


async def test_only_an_owner_with_a_fresh_factor_makes_keys_and_bad_requests_change_nothing(platform) -> None:
    tenant, owner = await owner_of_new_tenant(platform)
    made = await owner.call("POST", "/team/invitations", json={"email": f"ed-{time.time_ns()}@x.example",
                                                              "role": "editor"})
    editor = await join(platform.gateway, made.json()["invitation_url"], name="Eddie")
    for method, path, body in (("GET", "/api-keys", None), ("POST", "/api-keys", {"name": "x", "scopes": ["codes"]}),
                               ("DELETE", "/api-keys/k_initial", None)):
        refused = await editor.call(method, path, json=body)
        assert (refused.status_code, refused.json()["detail"]["code"]) == (403, "role_not_allowed"), path

    without_csrf = await owner.call("POST", "/api-keys", json={"name": "x", "scopes": ["codes"]}, csrf=False)
    assert (without_csrf.status_code, without_csrf.json()["detail"]["code"]) == (403, "csrf_token_invalid")
    for bad in ({"name": "x", "scopes": []}, {"name": "x", "scopes": ["everything"]}, {"name": "", "scopes": ["codes"]},
                {"name": "x\u0000y", "scopes": ["codes"]}, {"name": "x", "scopes": "codes"},
                {"name": "x", "scopes": ["codes"], "key_sha256": "0" * 64}, {"name": 5, "scopes": ["codes"]}):
        assert (await owner.call("POST", "/api-keys", json=bad)).status_code == 422, bad
    for bad_id, refusal in (("k_nope", 404), ("k_initial'--", 422), ("k_" + "a" * 60, 422), ("t_initial", 422)):
        assert (await owner.call("DELETE", f"/api-keys/{bad_id}")).status_code == refusal, bad_id
    assert [k["status"] for k in (await owner.call("GET", "/api-keys")).json()["keys"]] == ["active"]

    # Another organisation's key is not found from here.
    other_tenant, other_owner = await owner_of_new_tenant(platform)
    theirs = (await other_owner.call("POST", "/api-keys", json={"name": "theirs", "scopes": ["codes"]})).json()
    gone = await owner.call("DELETE", f"/api-keys/{theirs['key_id']}")
    assert (gone.status_code, gone.json()["detail"]["code"]) == (404, "api_key_not_found")
    assert (await status_of(platform, other_tenant, "codes", theirs["key"]))[0] == 200
    # ... and its key opens nothing of this tenant.
    assert await status_of(platform, tenant, "codes", theirs["key"]) == (403, "wrong_tenant")

    # A new key needs a second factor given in the last minutes.
    account_id = (await owner.call("GET", "/session")).json()["account_id"]
    database = platform.gateway_app.state.wiring.settings.database_owner_url.get_secret_value()
    await execute(database, "UPDATE console_sessions SET factor_at = $1 WHERE account_id = $2",
                  datetime.now(UTC) - timedelta(minutes=10), account_id)
    stale = await owner.call("POST", "/api-keys", json={"name": "x", "scopes": ["codes"]})
    assert (stale.status_code, stale.json()["detail"]["code"]) == (403, "fresh_factor_required")
    assert (await owner.call("POST", "/session/factor", json={"code": owner.code(time.time() + 30)})).status_code == 204

    # At most 20 active keys; revoking one makes room.
    listed = (await owner.call("GET", "/api-keys")).json()["keys"]
    for n in range(20 - len([k for k in listed if k["status"] == "active"])):
        assert (await owner.call("POST", "/api-keys", json={"name": f"k{n}", "scopes": ["codes"]})).status_code == 201
    full = await owner.call("POST", "/api-keys", json={"name": "one too many", "scopes": ["codes"]})
    assert (full.status_code, full.json()["detail"]["code"]) == (409, "too_many_api_keys")
    assert len((await owner.call("GET", "/api-keys")).json()["keys"]) == 20


async def test_the_allow_list_holds_the_keys_on_every_service(platform, stack) -> None:
    tenant, owner = await owner_of_new_tenant(platform)  # the test clients come from 203.0.113.7
    changed = await owner.call("PUT", "/allow-list", json={"networks": ["203.0.113.0/24", "2001:db8::/32"]})
    assert changed.status_code == 200, changed.text
    apps = {"dialogues": platform.dialogue_app, "figures": platform.analytics_app, "rights": platform.rights_app}

    async def refused_outside_everywhere():
        for scope, app in apps.items():
            async with client_from(app, "198.51.100.9") as outside:
                response = await outside.get(paths(tenant)[scope], headers=bearer(tenant["api_key"]))
                if response.status_code != 403:  # not yet applied here
                    return False
                assert response.json()["detail"]["code"] == "network_not_allowed"
        return True
    await eventually(refused_outside_everywhere, timeout=30)
    for scope, app in apps.items():  # from inside the list, IPv4 or IPv6, the key still works
        for address in ("203.0.113.50", "2001:db8::5"):
            async with client_from(app, address) as inside:
                response = await inside.get(paths(tenant)[scope], headers=bearer(tenant["api_key"]))
                assert response.status_code == 200, (scope, address, response.text)
    # The console's people are checked by the gateway: the staff assertion is no API key.
    assert (await owner.call("GET", "/dialogue/dialogues")).status_code == 200

    # A late, older state (the first event, redelivered out of order) changes nothing:
    # once analytics has taken it in, the key is still refused from outside.
    stale = TenantAccessChanged(source="tessera/enrolment", subject=tenant["tenant_id"], tenant_id=tenant["tenant_id"],
                                data=TenantAccessChangedData(revision=1, networks=[], api_keys=[ApiKeyGrant(
                                    key_id="k_initial", key_sha256=secret_hash(tenant["api_key"]),
                                    scopes=["dialogues", "figures", "rights", "codes", "streams"])]))
    await produce(stack.kafka, Topics.TENANT_ACCESS_CHANGED, stale.model_dump_json().encode(),
                  key=tenant["tenant_id"].encode())
    analytics_database = platform.analytics_app.state.wiring.settings.database_owner_url.get_secret_value()

    async def taken_in():
        return await fetchval(analytics_database, "SELECT 1 FROM inbox WHERE event_id = $1", stale.id)
    await eventually(taken_in, timeout=30)
    async with client_from(platform.analytics_app, "198.51.100.9") as outside:
        still = await outside.get(paths(tenant)["figures"], headers=bearer(tenant["api_key"]))
        assert (still.status_code, still.json()["detail"]["code"]) == (403, "network_not_allowed")

    assert (await owner.call("PUT", "/allow-list", json={"networks": []})).status_code == 200

    async def open_again():
        async with client_from(platform.analytics_app, "198.51.100.9") as outside:
            return (await outside.get(paths(tenant)["figures"], headers=bearer(tenant["api_key"]))).status_code == 200
    await eventually(open_again, timeout=30)


async def test_a_key_opens_a_service_only_once_the_service_has_the_tenants_registration(platform, stack) -> None:
    """The access event travels on its own topic and may arrive before
    ``tenant-registered``; until the registration is there the key opens nothing (a
    dialogue written then would refer to a tenant the service does not have)."""
    tenant_id = f"t_early{uuid4().hex[:12]}"
    key = f"tak_{tenant_id}.{uuid4().hex}{uuid4().hex}"
    grant = ApiKeyGrant(key_id="k_initial", key_sha256=secret_hash(key), scopes=["dialogues"])
    early = TenantAccessChanged(source="tessera/enrolment", subject=tenant_id, tenant_id=tenant_id,
                                data=TenantAccessChangedData(revision=1, networks=[], api_keys=[grant]))
    await produce(stack.kafka, Topics.TENANT_ACCESS_CHANGED, early.model_dump_json().encode(),
                  key=tenant_id.encode())
    dialogue_database = platform.dialogue_app.state.wiring.settings.database_owner_url.get_secret_value()

    async def taken_in():
        return await fetchval(dialogue_database, "SELECT 1 FROM inbox WHERE event_id = $1", early.id)
    await eventually(taken_in, timeout=30)
    dialogues = f"/v1/tenants/{tenant_id}/dialogues"
    refused = await platform.dialogue.get(dialogues, headers=bearer(key))
    assert (refused.status_code, refused.json()["detail"]["code"]) == (401, "invalid_api_key")

    registered = TenantRegistered(source="tessera/enrolment", subject=tenant_id, tenant_id=tenant_id,
                                  data=TenantRegisteredData(region="eu-west", api_key_sha256=secret_hash(key)))
    await produce(stack.kafka, Topics.TENANT_REGISTERED, registered.model_dump_json().encode())

    async def opens():
        return (await platform.dialogue.get(dialogues, headers=bearer(key))).status_code == 200
    await eventually(opens, timeout=30)
    made = await platform.dialogue.post(dialogues, headers=bearer(key), json={"title": "Early", "questions": [
        {"kind": "open_text", "prompt": "Why?"}]})
    assert made.status_code == 201, made.text
