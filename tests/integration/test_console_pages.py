"""The tenant console's pages (/console/ on the gateway) in a real headless Chromium, as
a person uses them: accepting the invitation (password, authenticator app, recovery
codes), signing out and in again with password and TOTP in Dutch, inviting a colleague,
reading the activity log. axe-core checks every page; the session cookie's flags are
read from the browser. Screenshots go to $TESSERA_SCREENSHOTS (default: a temp folder)."""

from __future__ import annotations

import io
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pyotp
import pytest
from playwright.async_api import expect
from pypdf import PdfReader

from support.apps import OPERATOR_KEY, served
from support.browser import accessible, shot
from support.console import STRONG, join

pytestmark = pytest.mark.connected

PASSPHRASE = "harbour violet compass drifts 82"


@pytest.fixture(scope="module")
async def base(gateway, gateway_app) -> AsyncIterator[str]:
    async with served(gateway_app) as url:
        yield url


def next_code(secret: str) -> str:
    """The authenticator's code for the coming step: the current one may be used already."""
    return pyotp.TOTP(secret).at(time.time() + 30)


async def test_an_owner_joins_signs_in_again_in_dutch_and_invites_a_colleague(gateway, base, browser) -> None:
    address = f"eigenaar-{uuid4().hex[:8]}@gemeente.example"
    created = await gateway.post("/v1/tenants", json={"name": "Gemeente Tessera", "region": "eu-west",
                                                      "owner_email": address},
                                 headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    token = created.json()["owner_invitation_url"].split("#invitation=", 1)[1]
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        await page.goto(f"{base}/console/#invitation={token}")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Join Gemeente Tessera")
        await expect(page.get_by_text(f"You are invited as owner, with the address {address}.")).to_be_visible()
        await accessible(page)
        await shot(page, "console-invitation-en-1280")

        await page.get_by_label("Your name").fill("Anna de Vries")
        await page.get_by_label("Choose a password").fill("password123")
        await page.get_by_role("button", name="Continue").click()
        await expect(page.get_by_role("alert")).to_have_text(
            "This password is too easy to guess. Choose a longer one, for example a few unusual words.")
        await page.get_by_label("Choose a password").fill(PASSPHRASE)
        await page.get_by_role("button", name="Continue").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Set up your authenticator app")
        await expect(page.get_by_role("img", name="QR code to scan with your authenticator app")).to_be_visible()
        secret = (await page.locator("#totp-secret").inner_text()).replace(" ", "")
        await accessible(page)
        await page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
        await page.get_by_role("button", name="Confirm").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
        await expect(page.locator("#recovery-codes li")).to_have_count(10)
        assert "#invitation" not in page.url  # the link's secret has left the address bar
        await accessible(page)
        await page.get_by_role("button", name="I have kept them").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Anna de Vries")

        # The cookie: HttpOnly (the page cannot read it), SameSite=Strict, Secure, /console.
        [cookie] = await context.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["secure"], cookie["path"]) == (
            "tessera_console", True, "Strict", True, "/console")
        assert await page.evaluate("document.cookie") == ""

        # Out, and in again in Dutch with the password and a code.
        await page.get_by_role("button", name="Sign out", exact=True).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
        await page.get_by_label("Language").select_option("nl")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Inloggen")
        assert await page.evaluate("document.documentElement.lang") == "nl"
        await accessible(page)
        await page.get_by_label("E-mailadres").fill(address)
        await page.get_by_label("Wachtwoord").fill(PASSPHRASE + "?")
        await page.get_by_role("button", name="Inloggen").click()
        await expect(page.get_by_role("alert")).to_have_text("Het adres of het wachtwoord klopt niet.")
        await page.get_by_label("Wachtwoord").fill(PASSPHRASE)
        await page.get_by_role("button", name="Inloggen").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Tweede factor")
        await page.get_by_label("Code uit je authenticator-app").fill(next_code(secret))
        await page.get_by_role("button", name="Bevestigen").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Welkom, Anna de Vries")

        # The team: invite a colleague, and see the link to hand over.
        await page.get_by_role("link", name="Team").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Team")
        await page.get_by_label("Adres").fill(f"analist-{uuid4().hex[:6]}@gemeente.example")
        await page.get_by_label("Rol").select_option("analyst")
        await page.get_by_role("button", name="Uitnodiging maken").click()
        link = page.get_by_label("Uitnodigingslink")
        await expect(link).to_be_visible()
        assert (await link.input_value()).startswith(f"{base}/console/#invitation=tci_ci_")
        await accessible(page)
        await shot(page, "console-team-nl-1280")

        # Codes: make one for at most 25 phones, print its poster, revoke it.
        await page.get_by_role("link", name="Codes").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Opp-codes")
        await expect(page.get_by_text("Nog geen codes.")).to_be_visible()
        await page.get_by_label("Hoogstens zoveel telefoons (optioneel)").fill("25")
        await page.get_by_role("button", name="Code maken").click()
        row = page.locator("tbody tr").first
        await expect(row).to_contain_text("actief")
        await expect(row).to_contain_text("0 / 25")
        display = await row.locator("td").first.inner_text()
        assert re.fullmatch(r"[A-Z0-9]{5}-[A-Z0-9]{5}", display)
        await accessible(page)
        await shot(page, "console-codes-nl-1280")
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name=f"Poster (pdf): {display}").click()
        download = await download_info.value
        poster = Path(await download.path()).read_bytes()
        assert poster.startswith(b"%PDF") and download.suggested_filename == f"poster-{display.replace('-', '')}.pdf"
        text = PdfReader(io.BytesIO(poster)).pages[0].extract_text()
        assert "Doe mee met onze dialoog" in text and display in text
        await page.get_by_role("button", name=f"Intrekken: {display}").click()
        await expect(row).to_contain_text("ingetrokken")

        # API keys: one for the HR system that may only handle codes, shown once, then revoked.
        await page.get_by_role("link", name="API-sleutels").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("API-sleutels")
        await expect(page.locator("tbody tr")).to_have_count(1)  # the tenant's first key
        await page.get_by_label("Naam", exact=True).fill("HR-systeem")
        await page.get_by_label("Codes: opp-codes").check()
        await page.get_by_role("button", name="Sleutel maken").click()
        await expect(page.get_by_role("heading", name="Sleutel HR-systeem gemaakt")).to_be_visible()
        key = await page.locator("#new-key").inner_text()
        assert key.startswith(f"tak_{created.json()['tenant_id']}.")
        codes_path = f"/v1/tenants/{created.json()['tenant_id']}/codes"
        assert (await gateway.get(codes_path, headers={"Authorization": f"Bearer {key}"})).status_code == 200
        hr = page.locator("tbody tr", has_text="HR-systeem")
        await expect(hr).to_contain_text("Codes")
        await accessible(page)
        await shot(page, "console-keys-nl-1280")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.get_by_role("button", name="Intrekken: HR-systeem").click()
        await expect(page.locator("tbody tr", has_text="HR-systeem")).to_contain_text("ingetrokken")
        assert (await gateway.get(codes_path, headers={"Authorization": f"Bearer {key}"})).status_code == 401
        assert key not in await page.content()  # shown once: gone after the next view

        # The same page on a phone in Danish and in English: translated, no sideways
        # scroll, and the form reachable by keyboard from the name to every scope.
        await page.set_viewport_size({"width": 390, "height": 844})
        for language, heading, name_label, first_scope in (
                ("da", "API-nøgler", "Navn", "Dialoger: dialoger, svar og indstillinger"),
                ("en", "API keys", "Name", "Dialogues: dialogues, answers and settings")):
            await page.locator("#language").select_option(language)
            await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
            await page.get_by_label(name_label, exact=True).focus()
            await page.keyboard.press("Tab")
            await expect(page.get_by_label(first_scope)).to_be_focused()
            assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            await accessible(page)
            await shot(page, f"console-keys-{language}-390")
        await page.locator("#language").select_option("nl")
        await page.set_viewport_size({"width": 1280, "height": 900})

        await page.get_by_role("link", name="Activiteit").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Activiteit")
        actions = await page.locator("tbody tr td:nth-child(3)").all_inner_texts()
        assert actions[:7] == ["api_key_revoked", "api_key_created", "code_revoked", "code_created",
                               "invitation_created", "signed_in", "sign_in_failed"]
        await accessible(page)
        assert problems == []
    finally:
        await context.close()


@pytest.mark.parametrize("language,heading", [("en", "Sign in"), ("nl", "Inloggen"), ("da", "Log ind")])
@pytest.mark.parametrize("width", [390, 1280])
async def test_the_sign_in_page_in_each_language_and_width(base, browser, language, heading, width) -> None:
    context = await browser.new_context(viewport={"width": width, "height": 800}, locale=language,
                                        is_mobile=width < 500, has_touch=width < 500)
    page = await context.new_page()
    try:
        await page.goto(f"{base}/console/")
        await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
        # The keyboard reaches the skip link, the language, then the form in order.
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.className") == "skip"
        order = []
        for _ in range(4):
            await page.keyboard.press("Tab")
            order.append(await page.evaluate("document.activeElement.id || document.activeElement.type"))
        assert order == ["language", "email", "password", "submit"]
        await accessible(page)
        await shot(page, f"console-sign-in-{language}-{width}")
    finally:
        await context.close()


async def test_a_passkey_replaces_the_code_at_sign_in(gateway, base, browser) -> None:
    """Chromium's virtual authenticator (DevTools' WebAuthn domain) stands in for a
    laptop's platform authenticator. WebAuthn wants a domain, not an IP address, for
    its relying party: the page is opened at localhost."""
    local = base.replace("127.0.0.1", "localhost")
    address = f"sleutel-{uuid4().hex[:8]}@gemeente.example"
    created = await gateway.post("/v1/tenants", json={"name": "Gemeente Passkey", "region": "eu-west",
                                                      "owner_email": address},
                                 headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    owner = await join(gateway, created.json()["owner_invitation_url"])
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    devtools = await context.new_cdp_session(page)
    await devtools.send("WebAuthn.enable")
    authenticator = await devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    try:
        await page.goto(f"{local}/console/")
        await page.get_by_label("Email address").fill(address)
        await page.get_by_label("Password").fill(STRONG)
        await page.get_by_role("button", name="Sign in").click()
        # No passkey yet: the page says so and the code still works.
        await page.get_by_role("button", name="Use a passkey instead").click()
        await expect(page.get_by_role("alert")).to_have_text(
            "This account has no passkey yet. Use the code from your app.")
        await page.get_by_label("Code from your authenticator app").fill(owner.code(time.time() + 30))
        await page.get_by_role("button", name="Confirm").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Anna de Vries")
        await expect(page.get_by_text("No passkeys yet.")).to_be_visible()

        await page.get_by_label("Name of the passkey (e.g. work laptop)").fill("work laptop")
        await page.get_by_role("button", name="Add a passkey").click()
        await expect(page.get_by_role("status")).to_have_text("Passkey added.")
        await expect(page.locator("#passkeys li")).to_contain_text("work laptop")
        credentials = await devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]})
        assert len(credentials["credentials"]) == 1
        await accessible(page)

        await page.get_by_role("button", name="Sign out", exact=True).click()
        await page.get_by_label("Email address").fill(address)
        await page.get_by_label("Password").fill(STRONG)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("button", name="Use a passkey instead").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Anna de Vries")
        used = await devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]})
        assert used["credentials"][0]["signCount"] >= 1
        assert problems == []
    finally:
        await context.close()
    entries = (await owner.call("GET", "/activity")).json()["entries"]
    assert [(e["action"], e["detail"].get("factor")) for e in entries[:2]] == [
        ("signed_in", "passkey"), ("signed_out", None)]
    assert "passkey_added" in [e["action"] for e in entries]


async def test_an_analyst_sees_figures_and_cannot_edit_a_dialogue(gateway, base, browser) -> None:
    tenant = await gateway.post("/v1/tenants", json={"name": "Gemeente Cijfers", "region": "eu-west",
                                                     "owner_email": f"o-{uuid4().hex[:8]}@gemeente.example"},
                                headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    owner = await join(gateway, tenant.json()["owner_invitation_url"])
    made = await owner.call("POST", "/team/invitations", json={"email": f"a-{uuid4().hex[:8]}@gemeente.example",
                                                               "role": "analyst"})
    analyst = await join(gateway, made.json()["invitation_url"], name="Bo Analist")
    context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
    await context.add_cookies([{"name": "tessera_console", "value": analyst.cookie, "url": f"{base}/console/",
                                "secure": True, "httpOnly": True, "sameSite": "Strict"}])
    page = await context.new_page()
    try:
        await page.goto(f"{base}/console/")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Bo Analist")
        navigation = page.get_by_role("navigation")
        await expect(navigation.get_by_role("link", name="Figures")).to_be_visible()
        for hidden in ("Dialogues", "Codes", "Rights desk", "Team", "API keys", "Settings"):
            await expect(navigation.get_by_role("link", name=hidden)).to_have_count(0)
        # Typed into the address bar, the dialogues page says why and offers nothing to edit.
        for view in ("#dialogues", "#codes", "#keys"):
            await page.goto(f"{base}/console/{view}")
            await expect(page.get_by_role("alert")).to_have_text("Your role does not allow this.")
            await expect(page.get_by_role("button", name="New dialogue")).to_have_count(0)
        await accessible(page)
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await shot(page, "console-analyst-refused-en-390")
    finally:
        await context.close()
