"""The tenant console's accounts and sessions (/console/api on the gateway), on the real
PostgreSQL: invitations, Argon2id passwords judged by zxcvbn, TOTP and recovery codes,
the session cookie and its CSRF token, throttled sign-ins, roles, factor resets and
the activity log. Then the same in a real headless Chromium (test_console_pages)."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pyotp
import pytest

from support.apps import bearer, client_from
from support.console import STRONG, Person, email, join, new_tenant, token_of
from support.db import execute, fetch
from tessera_enrolment.console_domain import totp_step

pytestmark = pytest.mark.connected


@pytest.fixture(scope="module")
def platform_database(gateway_app) -> str:
    """The gateway's database, as its owner (to look at what is stored, and to age a
    session's second factor)."""
    return gateway_app.state.wiring.settings.database_owner_url.get_secret_value()

async def test_an_owner_joins_by_invitation_and_the_session_is_guarded(gateway) -> None:
    address = email()
    tenant = await new_tenant(gateway, address)
    url = tenant["owner_invitation_url"]
    assert re.match(r"http://[\w.]+/console/#invitation=tci_ci_[\w-]+\.[\w-]{43}$", url)
    person = Person(gateway)
    about = await person.call("POST", "/invitation", json={"token": token_of(url)})
    assert about.json() == {"email": address, "role": "owner", "tenant_name": "Gemeente Console",
                            "expires_at": about.json()["expires_at"], "password_chosen": False}

    for weak in ("password123", "Gemeente Console 1", address, "qwertyuiop"):
        refused = await person.call("POST", "/invitation/password", json={"token": token_of(url), "password": weak,
                                                                          "display_name": "Anna"})
        assert (refused.status_code, refused.json()["detail"]["code"]) == (422, "weak_password"), weak
    chosen = await person.call("POST", "/invitation/password", json={"token": token_of(url), "password": STRONG,
                                                                     "display_name": "Anna de Vries"})
    assert chosen.status_code == 200
    assert chosen.json()["uri"].startswith("otpauth://totp/Tessera:") and "<svg" in chosen.json()["qr_svg"]
    person.totp = pyotp.TOTP(chosen.json()["secret"])
    wrong = await person.call("POST", "/invitation/confirm", json={"token": token_of(url), "code": "000000"})
    assert (wrong.status_code, wrong.json()["detail"]["code"]) == (422, "code_not_valid")
    confirmed = await person.call("POST", "/invitation/confirm", json={"token": token_of(url), "code": person.code()})
    assert confirmed.status_code == 201, confirmed.text
    signed_in = confirmed.json()
    assert len(signed_in["recovery_codes"]) == 10 and signed_in["role"] == "owner"

    # The cookie: HttpOnly, SameSite=Strict, Secure (outside development), the console only.
    [cookie] = person.set_cookies
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "secure", "path=/console"} <= flags, cookie
    assert re.match(r"tessera_console=tcs_cs_[\w-]+\.[\w-]{43}", cookie)

    # The invitation worked once.
    again = await Person(gateway).call("POST", "/invitation", json={"token": token_of(url)})
    assert (again.status_code, again.json()["detail"]["code"]) == (404, "invitation_not_valid")

    # A change without the CSRF token (or with another's) is refused and changes nothing.
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        refused = await person.call("POST", "/sign-out", csrf=False, headers=headers)
        assert (refused.status_code, refused.json()["detail"]["code"]) == (403, "csrf_token_invalid")
    assert (await person.call("GET", "/session")).status_code == 200
    assert (await person.call("POST", "/sign-out")).status_code == 204
    ended = await person.call("GET", "/session")
    assert (ended.status_code, ended.json()["detail"]["code"]) == (401, "session_required")

    # Signing in again: the password, then a code; a code is never accepted twice.
    person.cookie = None
    started = await person.call("POST", "/sign-in", json={"email": address.upper(), "password": STRONG})
    assert started.json() == {"next": "totp", "totp_setup": None}
    assert (await person.call("GET", "/session")).status_code == 401  # no factor yet: no session
    used = await person.call("POST", "/sign-in/factor", json={"code": person.code()})
    assert used.status_code == 422  # the step the invitation's confirmation used
    later = await person.call("POST", "/sign-in/factor", json={"code": person.code(time.time() + 30)})
    assert later.status_code == 200, later.text
    assert (await person.call("GET", "/session")).json()["email"] == address

    # A recovery code signs in once.
    other = Person(gateway)
    await other.call("POST", "/sign-in", json={"email": address, "password": STRONG})
    assert (await other.call("POST", "/sign-in/factor", json={"recovery_code": signed_in["recovery_codes"][0].lower()})
            ).status_code == 200
    third = Person(gateway)
    await third.call("POST", "/sign-in", json={"email": address, "password": STRONG})
    refused = await third.call("POST", "/sign-in/factor", json={"recovery_code": signed_in["recovery_codes"][0]})
    assert refused.status_code == 422

    # Signing out everywhere ends both sessions.
    assert (await person.call("POST", "/sign-out-everywhere")).status_code == 204
    assert (await other.call("GET", "/session")).status_code == 401


async def test_failed_sign_ins_are_throttled_and_say_nothing_about_the_account(gateway, platform_database) -> None:
    address = email()
    owner = await join(gateway, (await new_tenant(gateway, address))["owner_invitation_url"])
    stranger = Person(gateway)
    unknown = await stranger.call("POST", "/sign-in", json={"email": f"nobody-{uuid4().hex[:6]}@x.example",
                                                            "password": STRONG})
    wrong = await stranger.call("POST", "/sign-in", json={"email": address, "password": STRONG + "!"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()  # one answer whether or not the account exists
    for _ in range(4):
        await stranger.call("POST", "/sign-in", json={"email": address, "password": "wrong " + uuid4().hex})
    locked = await stranger.call("POST", "/sign-in", json={"email": address, "password": STRONG})
    assert (locked.status_code, locked.json()["detail"]["code"]) == (429, "too_many_attempts")
    assert int(locked.headers["Retry-After"]) > 0
    # The failures are in the owner's activity log, with the network truncated.
    entries = (await owner.call("GET", "/activity")).json()["entries"]
    failed = [e for e in entries if e["action"] == "sign_in_failed"]
    assert len(failed) == 5 and {e["network"] for e in failed} == {"203.0.113.0/24"}  # of 203.0.113.7


async def test_roles_are_checked_on_the_server_and_an_owner_resets_a_colleagues_factors(
        gateway, platform_database) -> None:
    owner_address = email()
    owner = await join(gateway, (await new_tenant(gateway, owner_address))["owner_invitation_url"])
    made = await owner.call("POST", "/team/invitations", json={"email": "analyst@gemeente.example".replace(
        "analyst", f"analyst-{uuid4().hex[:6]}"), "role": "analyst"})
    assert made.status_code == 201, made.text
    analyst = await join(gateway, made.json()["invitation_url"], name="Bo Analist")

    for method, path, body in (("GET", "/team", None), ("GET", "/activity", None), ("GET", "/activity.csv", None),
                               ("POST", "/team/invitations", {"email": "x-1@y.example", "role": "owner"})):
        refused = await analyst.call(method, path, json=body)
        assert (refused.status_code, refused.json()["detail"]["code"]) == (403, "role_not_allowed"), path
    taken = await owner.call("POST", "/team/invitations", json={"email": owner_address, "role": "editor"})
    assert (taken.status_code, taken.json()["detail"]["code"]) == (409, "email_taken")
    for bad in ({"email": "not-an-address", "role": "editor"}, {"email": "a@b.example", "role": "admin"},
                {"email": "a@b.example", "role": "editor", "tenant_id": "t_other"}):
        assert (await owner.call("POST", "/team/invitations", json=bad)).status_code == 422

    team = (await owner.call("GET", "/team")).json()
    analyst_id = next(a["account_id"] for a in team["accounts"] if a["display_name"] == "Bo Analist")
    own_id = next(a["account_id"] for a in team["accounts"] if a["email"] == owner_address)
    assert (await owner.call("POST", f"/team/{own_id}/factor-reset")).json()["detail"]["code"] == "own_account"

    # A sensitive action needs a second factor given in the last minutes.
    await execute(platform_database, "UPDATE console_sessions SET factor_at = $1 WHERE account_id = $2",
                  datetime.now(UTC) - timedelta(minutes=10), own_id)
    stale = await owner.call("POST", f"/team/{analyst_id}/factor-reset")
    assert (stale.status_code, stale.json()["detail"]["code"]) == (403, "fresh_factor_required")
    assert (await owner.call("POST", "/session/factor", json={"code": owner.code(time.time() + 30)})).status_code == 204
    assert (await owner.call("POST", f"/team/{analyst_id}/factor-reset")).status_code == 204

    # The analyst's sessions ended; at the next sign-in they set up a new authenticator.
    assert (await analyst.call("GET", "/session")).status_code == 401
    analyst_address = next(a["email"] for a in team["accounts"] if a["account_id"] == analyst_id)
    started = await analyst.call("POST", "/sign-in", json={"email": analyst_address, "password": STRONG})
    assert started.json()["next"] == "totp_setup"
    fresh = pyotp.TOTP(started.json()["totp_setup"]["secret"])
    assert fresh.secret != analyst.totp.secret
    assert (await analyst.call("POST", "/sign-in/factor", json={"code": analyst.code()})).status_code == 422
    set_up = await analyst.call("POST", "/sign-in/factor", json={"code": fresh.now()})
    assert set_up.status_code == 200 and len(set_up.json()["recovery_codes"]) == 10

    # Another tenant's account is not found through this one's session.
    other_owner = await join(gateway, (await new_tenant(gateway, email()))["owner_invitation_url"])
    await execute(platform_database, "UPDATE console_sessions SET factor_at = now() WHERE account_id = $1", own_id)
    other_id = next(a["account_id"] for a in (await other_owner.call("GET", "/team")).json()["accounts"])
    missing = await owner.call("POST", f"/team/{other_id}/factor-reset")
    assert (missing.status_code, missing.json()["detail"]["code"]) == (404, "account_not_found")


async def test_the_activity_log_names_actions_not_secrets(gateway) -> None:
    address = email()
    tenant = await new_tenant(gateway, address)
    owner = await join(gateway, tenant["owner_invitation_url"])
    await owner.call("POST", "/team/invitations", json={"email": f"ed-{uuid4().hex[:6]}@x.example", "role": "editor"})
    entries = (await owner.call("GET", "/activity")).json()["entries"]
    assert [e["action"] for e in entries][::-1] == ["invitation_accepted", "invitation_created"]
    exported = await owner.call("GET", "/activity.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["seq", "at", "account", "action", "detail", "network"] and len(rows) == 3
    text = exported.text + str(entries)
    for secret in (STRONG, owner.cookie, owner.csrf, token_of(tenant["owner_invitation_url"]), tenant["api_key"],
                   *owner.recovery_codes):
        assert secret not in text


async def test_secrets_are_stored_as_hashes_or_sealed(gateway, platform_database) -> None:
    address = email()
    tenant = await new_tenant(gateway, address)
    owner = await join(gateway, tenant["owner_invitation_url"])
    [account] = await fetch(platform_database, "SELECT * FROM console_accounts WHERE email = $1", address)
    assert account["password_hash"].startswith("$argon2id$")
    assert owner.totp.secret.encode() not in account["totp_sealed"]
    codes = await fetch(platform_database, "SELECT code_sha256 FROM console_recovery_codes WHERE account_id = $1",
                        account["account_id"])
    assert len(codes) == 10 and not {c["code_sha256"] for c in codes} & set(owner.recovery_codes)
    sessions = await fetch(platform_database, "SELECT token_sha256 FROM console_sessions WHERE account_id = $1",
                           account["account_id"])
    assert owner.cookie not in {s["token_sha256"] for s in sessions}
    assert totp_step(owner.totp.secret, owner.code(), 0) is not None  # the secret is the one the app was given


async def test_editors_make_codes_with_a_qr_code_and_a_poster_and_analysts_cannot(gateway) -> None:
    from pypdf import PdfReader

    owner = await join(gateway, (await new_tenant(gateway, email()))["owner_invitation_url"])
    people = {}
    for role in ("editor", "analyst"):
        made = await owner.call("POST", "/team/invitations", json={"email": f"{role}-{uuid4().hex[:6]}@x.example",
                                                                   "role": role})
        people[role] = await join(gateway, made.json()["invitation_url"], name=role.title())
    editor, analyst = people["editor"], people["analyst"]

    created = await editor.call("POST", "/codes", json={"max_enrolments": 40})
    assert created.status_code == 201, created.text
    code = created.json()
    assert (code["status"], code["max_enrolments"], code["enrolments"]) == ("active", 40, 0)
    listed = (await editor.call("GET", "/codes")).json()["codes"]
    assert [c["code"] for c in listed] == [code["code"]]
    enrolled = await gateway.post("/v1/enrolments", json={"code": code["display"].lower(), "platform": "ios",
                                                          "form_factor": "phone"})
    assert enrolled.status_code == 201  # the console's code enrols a phone like any other
    assert (await editor.call("GET", "/codes")).json()["codes"][0]["enrolments"] == 1

    qr = await editor.call("GET", f"/codes/{code['code']}/qr.svg")
    assert qr.headers["content-type"] == "image/svg+xml" and qr.text.lstrip().startswith("<?xml")
    poster = await editor.call("GET", f"/codes/{code['code']}/poster.pdf?lang=da")
    assert poster.headers["content-type"] == "application/pdf"
    text = PdfReader(io.BytesIO(poster.content)).pages[0].extract_text()
    assert "Deltag i vores dialog" in text and code["display"] in text and f"/app/?code={code['code']}" in text
    assert "Gemeente Console" in text

    for method, path, body in (("GET", "/codes", None), ("POST", "/codes", {}),
                               ("GET", f"/codes/{code['code']}/poster.pdf", None),
                               ("DELETE", f"/codes/{code['code']}", None)):
        refused = await analyst.call(method, path, json=body)
        assert (refused.status_code, refused.json()["detail"]["code"]) == (403, "role_not_allowed"), path
    without_csrf = await editor.call("DELETE", f"/codes/{code['code']}", csrf=False)
    assert without_csrf.status_code == 403
    past = await editor.call("POST", "/codes", json={"expires_at": "2020-01-01T00:00:00Z"})
    assert (past.status_code, past.json()["detail"]["code"]) == (422, "expires_in_past")
    for bad in ({"max_enrolments": 0}, {"max_enrolments": "5"}, {"tenant_id": "t_other"}):
        assert (await editor.call("POST", "/codes", json=bad)).status_code == 422

    # Another organisation's code is not found from here.
    other = await join(gateway, (await new_tenant(gateway, email()))["owner_invitation_url"])
    theirs = (await other.call("POST", "/codes", json={})).json()
    assert (await editor.call("DELETE", f"/codes/{theirs['code']}")).status_code == 404
    assert (await editor.call("GET", f"/codes/{theirs['code']}/poster.pdf")).status_code == 404

    assert (await editor.call("DELETE", f"/codes/{code['code']}")).status_code == 204
    assert (await editor.call("GET", "/codes")).json()["codes"][0]["status"] == "revoked"
    actions = [e["action"] for e in (await owner.call("GET", "/activity")).json()["entries"]]
    assert actions[:2] == ["code_revoked", "code_created"]


async def test_an_allow_list_keeps_the_console_and_the_api_keys_to_the_organisations_networks(
        gateway, gateway_app) -> None:
    address = email()
    tenant = await new_tenant(gateway, address)
    owner = await join(gateway, tenant["owner_invitation_url"])  # from 203.0.113.7, the test client
    codes_path = f"/v1/tenants/{tenant['tenant_id']}/codes"
    assert (await owner.call("GET", "/allow-list")).json() == {"networks": [], "your_address": "203.0.113.7"}

    shut_out = await owner.call("PUT", "/allow-list", json={"networks": ["198.51.100.0/24"]})
    assert (shut_out.status_code, shut_out.json()["detail"]["code"]) == (409, "would_lock_you_out")
    for bad in (["300.1.1.1/8"], ["not a network"], ["10.0.0.0/8"] * 101, "10.0.0.0/8", [5]):
        assert (await owner.call("PUT", "/allow-list", json={"networks": bad})).status_code == 422, bad
    changed = await owner.call("PUT", "/allow-list", json={"networks": ["203.0.113.99/24", "2001:db8::/32"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["networks"] == ["203.0.113.0/24", "2001:db8::/32"]  # host bits cleared

    async with client_from(gateway_app, "198.51.100.9") as outside, client_from(gateway_app, "2001:db8::5") as v6:
        # A session from outside the list is refused, and so is a correct sign-in.
        stolen = Person(outside)
        stolen.cookie, stolen.csrf = owner.cookie, owner.csrf
        refused = await stolen.call("GET", "/session")
        assert (refused.status_code, refused.json()["detail"]["code"]) == (403, "network_not_allowed")
        signing_in = await Person(outside).call("POST", "/sign-in", json={"email": address, "password": STRONG})
        assert (signing_in.status_code, signing_in.json()["detail"]["code"]) == (401, "sign_in_failed")
        # The API key too; from an allowed IPv6 network it works.
        key = bearer(tenant["api_key"])
        denied = await outside.get(codes_path, headers=key)
        assert (denied.status_code, denied.json()["detail"]["code"]) == (403, "network_not_allowed")
        assert (await v6.get(codes_path, headers=key)).status_code == 200
        assert (await gateway.get(codes_path, headers=key)).status_code == 200

    refusals = [e for e in (await owner.call("GET", "/activity")).json()["entries"] if e["action"] == "network_refused"]
    assert {e["network"] for e in refusals} == {"198.51.100.0/24"} and len(refusals) == 3
    assert {e["detail"].get("credential") for e in refusals} == {None, "api_key"}

    cleared = await owner.call("PUT", "/allow-list", json={"networks": []})
    assert cleared.json()["networks"] == []
    async with client_from(gateway_app, "198.51.100.9") as outside:
        assert (await outside.get(codes_path, headers=bearer(tenant["api_key"]))).status_code == 200


async def test_a_forged_or_missing_passkey_is_refused(gateway) -> None:
    address = email()
    owner = await join(gateway, (await new_tenant(gateway, address))["owner_invitation_url"])
    person = Person(gateway)
    await person.call("POST", "/sign-in", json={"email": address, "password": STRONG})
    none = await person.call("POST", "/sign-in/passkey/options")
    assert (none.status_code, none.json()["detail"]["code"]) == (409, "no_passkey")
    forged = {"id": "AAAA", "rawId": "AAAA", "type": "public-key",
              "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}}
    refused = await person.call("POST", "/sign-in/passkey", json={"credential": forged})
    assert (refused.status_code, refused.json()["detail"]["code"]) == (422, "passkey_not_valid")
    assert (await person.call("GET", "/session")).status_code == 401  # still no second factor
    # Registering needs the options first, and a real answer to them.
    assert (await owner.call("POST", "/passkeys", json={"name": "x", "credential": forged})).status_code == 422
    options = await owner.call("POST", "/passkeys/options")
    assert options.status_code == 200 and options.json()["rp"] == {"id": "tessera.test", "name": "Tessera"}
    assert (await owner.call("POST", "/passkeys", json={"name": "x", "credential": forged})).status_code == 422
    assert (await owner.call("GET", "/passkeys")).json() == {"passkeys": []}
