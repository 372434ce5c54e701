"""The participant app (/app/ on the gateway) in a real headless Chromium with a
phone's viewport and touch, against the real platform (gateway, dialogue, rights and
analytics on the session's Kafka and PostgreSQL), served over real HTTP. Each test
is a journey a person would make; what the app claims is checked again over HTTP
or in the database. Screenshots go to $TESSERA_SCREENSHOTS (default: a temp folder)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from support.apps import (
    PARK_QUESTIONS,
    Platform,
    bearer,
    create_code,
    dialogue_tenant,
    enrol,
    served,
)
from support.browser import accessible
from support.db import fetchval
from tessera_rights.domain import verify_receipt

pytestmark = pytest.mark.connected

SHOTS = Path(os.environ.get("TESSERA_SCREENSHOTS", Path(tempfile.gettempdir()) / "tessera-app-screenshots"))
ANDROID_PHONE = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/126.0 Mobile Safari/537.36")



@pytest.fixture(scope="module")
async def base(platform) -> AsyncIterator[str]:
    async with served(platform.gateway_app) as url:
        yield url


# --- the platform side --------------------------------------------------------------


@dataclass
class Organisation:
    tenant: dict
    dialogue: dict
    code: str

    def question(self, kind: str) -> dict:
        return next(q for q in self.dialogue["questions"] if q["kind"] == kind)

    def path(self, kind: str, tail: str = "answer") -> str:
        return f"/v1/me/dialogues/{self.dialogue['dialogue_id']}/questions/{self.question(kind)['question_id']}/{tail}"


async def organisation(platform: Platform, **settings) -> Organisation:
    tenant = await dialogue_tenant(platform, **settings)
    base = f"/v1/tenants/{tenant['tenant_id']}/dialogues"
    created = await platform.dialogue.post(base, json={"title": "Our parks", "intro": "Tell us about the parks.",
                                                       "questions": PARK_QUESTIONS}, headers=bearer(tenant["api_key"]))
    assert created.status_code == 201, created.text
    published = await platform.dialogue.post(f"{base}/{created.json()['dialogue_id']}/publish",
                                             headers=bearer(tenant["api_key"]))
    assert published.status_code == 200, published.text
    code = await create_code(platform.gateway, tenant)
    return Organisation(tenant, published.json(), code["code"])


async def other_participant_answers(platform: Platform, org: Organisation, single: str, scale: int, text: str) -> None:
    """Someone else, on their own phone, answering over HTTP."""
    enrolled = await enrol(platform.gateway, org.code, platform="ios")
    assert enrolled.status_code == 201, enrolled.text
    auth = bearer(enrolled.json()["device_token"])
    for kind, value in (("single_choice", single), ("multiple_choice", ["trees"]), ("scale", scale),
                        ("open_text", text)):
        response = await platform.gateway.put(org.path(kind), json={"value": value}, headers=auth)
        assert response.status_code == 201, response.text
    response = await platform.gateway.post(org.path("idea", "ideas"), json={"value": f"Idea: {text}"}, headers=auth)
    assert response.status_code == 201, response.text


# --- the phone side -------------------------------------------------------------------


@dataclass
class Phone:
    context: BrowserContext
    page: Page
    base: str
    problems: list[str] = field(default_factory=list)
    set_cookies: list[str] = field(default_factory=list)
    responses: int = 0

    async def open(self, path: str = "/app/") -> None:
        opened = await self.page.goto(f"{self.base}{path}")
        assert opened is not None and opened.status == 200

    async def device(self) -> dict | None:
        return await self.stored("device")

    async def stored(self, key: str) -> dict | None:
        """What the app keeps in IndexedDB (the only place it keeps anything)."""
        return await self.page.evaluate("""(key) => new Promise((resolve, reject) => {
            const open = indexedDB.open("tessera");
            open.onsuccess = () => {
              const get = open.result.transaction("kv").objectStore("kv").get(key);
              get.onsuccess = () => resolve(get.result ?? null);
              get.onerror = () => reject(get.error);
            };
            open.onerror = () => reject(open.error);
        })""", key)

    async def shot(self, name: str, full_page: bool = True) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)

    async def no_cookie_ever(self) -> None:
        assert await self.page.evaluate("document.cookie") == ""
        assert await self.context.cookies() == []
        assert self.responses > 0 and self.set_cookies == []

    async def accessible(self) -> None:
        await accessible(self.page)


@contextlib.asynccontextmanager
async def phone(browser: Browser, base: str, locale: str = "en-GB") -> AsyncIterator[Phone]:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True, locale=locale, user_agent=ANDROID_PHONE,
                                        accept_downloads=True)
    page = await context.new_page()
    device = Phone(context, page, base)
    pending: set[asyncio.Task] = set()

    async def record(response) -> None:
        headers = await response.all_headers()
        device.responses += 1
        if "set-cookie" in headers:
            device.set_cookies.append(f"{response.url}: {headers['set-cookie']}")

    def on_response(response) -> None:
        task = asyncio.ensure_future(record(response))
        pending.add(task)
        task.add_done_callback(pending.discard)

    context.on("response", on_response)
    page.on("pageerror", lambda error: device.problems.append(str(error)))
    page.on("console", lambda m: device.problems.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    try:
        yield device
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        assert device.problems == []
    finally:
        await context.close()


async def join(device: Phone, code: str) -> dict:
    await device.page.get_by_label("Code from the organisation").fill(code)
    await device.page.get_by_role("button", name="Join").click()
    await expect(device.page.get_by_role("heading", name="Open dialogues")).to_be_visible()
    enrolled = await device.device()
    assert enrolled is not None and enrolled["device_token"].startswith("tdt_")
    return enrolled


def question(page: Page, org: Organisation, kind: str):
    return page.locator(f'form[data-question="{org.question(kind)["question_id"]}"]')


async def sent(form) -> None:
    """Press the question's send button and see it saved (online)."""
    await form.get_by_role("button", name="Send answer").tap()
    await expect(form.locator(".feedback")).to_have_text("Your answer is saved.")


async def written(page: Page, org: Organisation, text: str) -> None:
    form = question(page, org, "open_text")
    await form.get_by_label("Why?").fill(text)
    await sent(form)


async def wrote_then_my_data(device: Phone, org: Organisation, text: str) -> dict:
    """Join, answer the open question with ``text``, and open My data."""
    await device.open()
    enrolled = await join(device, org.code)
    await device.page.get_by_role("link", name="Our parks").tap()
    await written(device.page, org, text)
    await device.page.get_by_role("link", name="My data").tap()
    return enrolled


async def joined_by_link_in_the_dialogue(device: Phone, org: Organisation) -> dict:
    """Join from a link (`#code=…`) and open the dialogue."""
    await device.open(f"/app/#code={org.code}")
    await device.page.get_by_role("button", name="Join").tap()
    await expect(device.page.get_by_role("heading", name="Open dialogues")).to_be_visible()
    enrolled = await device.device()
    await device.page.get_by_role("link", name="Our parks").tap()
    await expect(device.page.get_by_role("heading", name="Our parks")).to_be_visible()
    return enrolled


async def answers_of(platform: Platform, enrolled: dict) -> list[dict]:
    response = await platform.gateway.get("/v1/me/answers", headers=bearer(enrolled["device_token"]))
    assert response.status_code == 200, response.text
    return response.json()["answers"]


# --- the tests --------------------------------------------------------------------------


async def test_the_app_is_served_with_a_strict_policy_and_no_cookie(base):
    async with httpx.AsyncClient(base_url=base) as client:
        for path in ("/app/", "/app/?code=ABCDE-FGHJK", "/app/index.html"):
            page = await client.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
            assert '<html lang="en">' in page.text
            policy = page.headers["content-security-policy"]
            assert "default-src 'self'" in policy and "script-src 'self';" in policy and "style-src 'self';" in policy
            assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "no-referrer"
            assert "set-cookie" not in page.headers
        moved = await client.get("/app")
        assert moved.status_code in (307, 308) and moved.headers["location"].endswith("/app/")
        for path, content_type in (("/app/js/main.js", "text/javascript"), ("/app/app.css", "text/css"),
                                   ("/app/sw.js", "text/javascript"), ("/app/icons/icon.svg", "image/svg+xml"),
                                   ("/app/icons/icon-192.png", "image/png"),
                                   ("/app/manifest.webmanifest", "application/manifest+json")):
            asset = await client.get(path)
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(content_type), path
            assert asset.headers["x-content-type-options"] == "nosniff" and "set-cookie" not in asset.headers
        manifest = (await client.get("/app/manifest.webmanifest")).json()
        assert manifest["start_url"] == "/app/" and manifest["scope"] == "/app/"
        assert {icon["sizes"] for icon in manifest["icons"]} >= {"192x192", "512x512"}
        missing = await client.get("/app/nothing-here.js")
        assert missing.status_code == 404


async def test_enrol_by_link_answer_every_kind_and_see_the_group_once_k_answered(platform, base, browser):
    org = await organisation(platform, min_group_size=3)
    async with phone(browser, base) as device:
        page = device.page
        await device.open(f"/app/?code={org.code}")
        await expect(page.get_by_role("heading", name="What is stored about you")).to_be_visible()
        await expect(page.get_by_text("A random participant number")).to_be_visible()
        await expect(page.get_by_label("Code from the organisation")).to_have_value(org.code)
        assert "code=" not in page.url  # the code leaves the address bar (and the history)
        await device.shot("01-welcome-from-link")
        await device.accessible()
        await page.get_by_role("button", name="Join").tap()
        await expect(page.get_by_role("heading", name="Open dialogues")).to_be_visible()
        enrolled = await device.device()
        me = await platform.gateway.get("/v1/me", headers=bearer(enrolled["device_token"]))
        assert me.status_code == 200 and me.json()["platform"] == "android" and me.json()["form_factor"] == "phone"

        await page.get_by_role("link", name="Our parks").tap()
        await expect(page.get_by_role("heading", name="Our parks")).to_be_focused()
        single = question(page, org, "single_choice")
        await single.get_by_label("South park").tap()
        await sent(single)
        await expect(single.locator(".group")).to_contain_text("Not enough answers yet")

        multi = question(page, org, "multiple_choice")
        await multi.get_by_label("Benches").tap()
        await multi.get_by_label("Trees").check()  # keyboard users: space on a focused checkbox
        await sent(multi)

        scale = question(page, org, "scale")
        await scale.get_by_label("1 · not at all").focus()
        await page.keyboard.press("ArrowRight")  # a radio group: arrows move and choose
        await page.keyboard.press("ArrowRight")
        await expect(scale.get_by_label("3", exact=True)).to_be_checked()
        await sent(scale)
        await written(page, org, "More light in the evening")
        text = question(page, org, "open_text")

        idea = question(page, org, "idea")
        for one in ("A water fountain", "A dog park"):
            await idea.get_by_label("Your ideas for the park").fill(one)
            await idea.get_by_role("button", name="Add idea").tap()
            await expect(idea.locator(".my-ideas li").last).to_have_text(one)
            await expect(idea.get_by_label("Your ideas for the park")).to_have_value("")
        await device.shot("02-answered-not-enough-yet")

        mine = {a["kind"]: a["value"] for a in await answers_of(platform, enrolled) if a["kind"] != "idea"}
        assert mine == {"single_choice": "south", "multiple_choice": ["benches", "trees"], "scale": 3,
                        "open_text": "More light in the evening"}
        ideas = sorted(a["value"] for a in await answers_of(platform, enrolled) if a["kind"] == "idea")
        assert ideas == ["A dog park", "A water fountain"]

        await other_participant_answers(platform, org, "south", 4, "Cleaner paths")
        await single.get_by_role("button", name="Look again").tap()
        await expect(single.locator(".group")).to_contain_text("Not enough answers yet")  # 2 of k=3
        await other_participant_answers(platform, org, "north", 5, "Fewer cars")
        await single.get_by_role("button", name="Look again").tap()
        await expect(single.locator(".group h4")).to_have_text("What the group answered (3 people)")
        await expect(single.locator('.bars li[data-key="south"] .count')).to_have_text("2 (67%)")
        await expect(single.locator('.bars li[data-key="north"] .count')).to_have_text("1 (33%)")

        await page.set_viewport_size({"width": 360, "height": 740})  # a small phone: nothing runs off the side
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360
        await device.shot("02b-answered-at-360", full_page=False)
        await page.set_viewport_size({"width": 390, "height": 844})

        await page.reload()  # answered questions show the group at once
        await expect(scale.locator(".group .mean")).to_have_text("Average: 4")
        await expect(scale.locator('.bars li[data-key="5"] .label')).to_have_text("5 · very")
        await expect(text.locator(".group .texts li")).to_have_count(2)
        assert sorted(await text.locator(".group .texts li").all_text_contents()) == ["Cleaner paths", "Fewer cars"]
        await expect(multi.locator('.bars li[data-key="trees"]')).to_have_attribute("data-count", "3")
        await device.shot("03-group-view")
        await device.accessible()
        await device.no_cookie_ever()


async def test_enrol_by_typed_code_in_danish_then_change_and_withdraw_in_english(platform, base, browser):
    org = await organisation(platform)
    async with phone(browser, base, locale="da-DK") as device:
        page = device.page
        await device.open()
        await expect(page.locator("html")).to_have_attribute("lang", "da")
        await expect(page.get_by_role("heading", name="Velkommen")).to_be_visible()
        await device.shot("04-welcome-danish")
        # The code as a person might type it: small letters, no hyphen.
        await page.get_by_label("Kode fra organisationen").fill(org.code.replace("-", "").lower())
        await page.get_by_role("button", name="Deltag").tap()
        await expect(page.get_by_role("heading", name="Åbne dialoger")).to_be_visible()
        await page.get_by_label("Sprog").select_option("en")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.get_by_role("heading", name="Open dialogues")).to_be_visible()
        enrolled = await device.device()

        await page.get_by_role("link", name="Our parks").tap()
        single = question(page, org, "single_choice")
        await single.get_by_label("North park").tap()
        await sent(single)
        await written(page, org, "Too dark")

        await page.get_by_role("link", name="My answers").tap()
        await expect(page.get_by_role("heading", name="My answers")).to_be_focused()
        items = page.locator("ul.answers li")
        await expect(items).to_have_count(2)
        chosen = page.locator(f'li[data-question="{org.question("single_choice")["question_id"]}"]')
        await expect(chosen.locator(".value")).to_have_text("North park")
        await device.shot("05-my-answers")
        await chosen.get_by_role("button", name="Change").tap()
        await expect(chosen.get_by_label("North park")).to_be_focused()
        await chosen.get_by_label("South park").tap()
        await chosen.get_by_role("button", name="Save").tap()
        await expect(chosen.locator(".value")).to_have_text("South park")
        await expect(page.locator("#status")).to_have_text("Your answer is changed.")

        why = page.locator(f'li[data-question="{org.question("open_text")["question_id"]}"]')
        await why.get_by_role("button", name="Withdraw").tap()
        await expect(items).to_have_count(1)
        await expect(page.locator("#status")).to_have_text("Your answer is withdrawn.")

        mine = await answers_of(platform, enrolled)
        assert [(a["kind"], a["value"]) for a in mine if a["value"] is not None] == [("single_choice", "south")]
        await device.accessible()
        await device.no_cookie_ever()


async def test_answers_made_offline_wait_and_are_stored_once_back_online(platform, base, browser):
    org = await organisation(platform)
    async with phone(browser, base) as device:
        page = device.page
        enrolled = await joined_by_link_in_the_dialogue(device, org)

        await device.context.set_offline(True)
        await expect(page.locator("#offline")).to_be_visible()
        single = question(page, org, "single_choice")
        await single.get_by_label("North park").tap()
        await single.get_by_role("button", name="Send answer").tap()
        await expect(single.locator(".feedback")).to_contain_text("No connection")
        idea = question(page, org, "idea")
        await idea.get_by_label("Your ideas for the park").fill("Swings")
        await idea.get_by_role("button", name="Add idea").tap()
        waiting = page.locator("#waiting")
        await expect(waiting.locator("li")).to_have_count(2)
        await expect(waiting.locator("h2")).to_have_text("Waiting to be sent: 2")
        await expect(waiting).to_contain_text("North park")
        await device.shot("06-offline-waiting")
        assert await answers_of(platform, enrolled) == []

        await device.context.set_offline(False)
        await expect(waiting).to_be_hidden()
        await expect(single.locator(".feedback")).to_have_text("Your answer is saved.")
        await expect(idea.locator(".my-ideas li")).to_have_text(["Swings"])
        stored = await answers_of(platform, enrolled)
        assert sorted((a["kind"], a["value"]) for a in stored) == [("idea", "Swings"), ("single_choice", "north")]
        rows = await fetchval(platform.database_url("dialogue", owner=True),
                              "SELECT count(*) FROM answers WHERE participant_id = $1", enrolled["participant_id"])
        assert rows == 2
        await device.no_cookie_ever()


async def test_a_dialogue_loaded_before_opens_offline_and_its_answer_is_stored_once_back_online(
        platform, base, browser):
    org = await organisation(platform)
    async with phone(browser, base) as device:
        page = device.page
        enrolled = await joined_by_link_in_the_dialogue(device, org)
        await page.wait_for_function("navigator.serviceWorker.controller !== null")  # the shell is cached
        await page.get_by_role("link", name="Back to the dialogues").tap()
        await expect(page.get_by_role("heading", name="Open dialogues")).to_be_visible()
        note = page.locator("main .kept")
        await expect(note).to_have_count(0)  # online: fresh from the gateway, nothing to say

        await device.context.set_offline(True)
        await page.reload()
        await expect(page.get_by_role("heading", name="Open dialogues")).to_be_visible()
        await expect(note).to_contain_text("Offline: showing what was loaded before")
        await page.get_by_role("link", name="Our parks").tap()
        await expect(page.get_by_role("heading", name="Our parks")).to_be_visible()
        await expect(note).to_contain_text("Offline: showing what was loaded before")
        single = question(page, org, "single_choice")
        await single.get_by_label("South park").tap()
        await single.get_by_role("button", name="Send answer").tap()
        await expect(page.locator("#waiting li")).to_have_count(1)
        await device.shot("11-offline-dialogue-loaded-before", full_page=False)
        assert await answers_of(platform, enrolled) == []

        await device.context.set_offline(False)
        await expect(page.locator("#waiting")).to_be_hidden()
        await expect(single.locator(".feedback")).to_have_text("Your answer is saved.")
        assert [(a["kind"], a["value"]) for a in await answers_of(platform, enrolled)] == [("single_choice", "south")]
        rows = await fetchval(platform.database_url("dialogue", owner=True),
                              "SELECT count(*) FROM answers WHERE participant_id = $1", enrolled["participant_id"])
        assert rows == 1
        # The copies are in IndexedDB; the Cache API holds the app's own files only, never a
        # participant route (whose response was fetched with the token).
        cached = await page.evaluate("""async () => {
            const urls = [];
            for (const name of await caches.keys()) {
              for (const request of await (await caches.open(name)).keys()) urls.push(request.url);
            }
            return urls;
        }""")
        assert cached and not [url for url in cached if "/v1/" in url]
        await device.no_cookie_ever()


async def test_my_data_shown_downloaded_as_a_file_and_objection(platform, base, browser):
    org = await organisation(platform)
    async with phone(browser, base) as device:
        page = device.page
        enrolled = await wrote_then_my_data(device, org, "Benches are broken")
        await expect(page.get_by_text(f"Your participant number: {enrolled['participant_id']}")).to_be_visible()
        await page.get_by_role("button", name="Show my data").tap()
        answers = page.locator('section.store[data-store="dialogue.answers"]')
        await expect(answers.get_by_role("heading")).to_have_text("Your answers")
        await expect(answers).to_contain_text("Benches are broken")
        device_facts = page.locator('section.store[data-store="enrolment.devices"]')
        await expect(device_facts.locator('dt:text-is("System") + dd')).to_have_text("Android")
        await expect(device_facts.locator('dt:text-is("Participant number") + dd')).to_have_text(
            enrolled["participant_id"])
        await device.shot("07-my-data")

        async with page.expect_download() as waiting:
            await page.get_by_role("button", name="Download my data (JSON)").tap()
        download = await waiting.value
        assert download.suggested_filename.startswith("tessera-data-") and download.suggested_filename.endswith(".json")
        data = json.loads(Path(await download.path()).read_text())
        assert data["format"] == "tessera.participant-data.v1"
        assert data["participant_id"] == enrolled["participant_id"]
        stores = {part["store"]: part for part in data["stores"]}
        assert [r["value"] for r in stores["dialogue.answers"]["records"]] == ["Benches are broken"]
        assert stores["enrolment.devices"]["records"][0]["platform"] == "android"

        await page.get_by_role("button", name="Object to analysis").tap()
        await expect(page.locator(".result")).to_contain_text("Your objection is recorded")
        requests = await platform.gateway.get("/v1/me/rights-requests", headers=bearer(enrolled["device_token"]))
        assert sorted(r["kind"] for r in requests.json()["requests"]) == ["access", "export", "objection"]
        await device.accessible()
        await device.no_cookie_ever()


async def test_installable_manifest_service_worker_and_every_text_translated(platform, base, browser):
    async with phone(browser, base, locale="nl-NL") as device:
        page = device.page
        await device.open()
        await expect(page.get_by_role("heading", name="Welkom")).to_be_visible()
        await page.set_viewport_size({"width": 360, "height": 740})
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360
        await device.shot("10-welcome-dutch-360")
        scope = await page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
        assert scope == f"{base}/app/"
        manifest = await page.evaluate("""async () => {
            const link = document.querySelector('link[rel=manifest]');
            return (await fetch(link.href)).json();
        }""")
        assert manifest["display"] == "standalone"
        missing = await page.evaluate("""async () => {
            const {TEXTS, LANGUAGES} = await import('./js/i18n.js');
            const keys = new Set(Object.keys(TEXTS.en));
            return LANGUAGES.flatMap(l => [...keys].filter(k => !(k in TEXTS[l])).map(k => `${l}:${k}`)
                .concat(Object.keys(TEXTS[l]).filter(k => !keys.has(k)).map(k => `${l}+${k}`)));
        }""")
        assert missing == []
        # Once the worker controls the page, the app opens without a connection.
        await page.reload()
        await page.wait_for_function("navigator.serviceWorker.controller !== null")
        await device.context.set_offline(True)
        await page.reload()
        await expect(page.get_by_role("heading", name="Welkom")).to_be_visible()
        await device.context.set_offline(False)
        await device.no_cookie_ever()


async def test_an_email_is_highlighted_while_typing_and_refused_under_the_reject_policy(platform, base, browser):
    org = await organisation(platform, pii_policy="reject")
    async with phone(browser, base) as device:
        page = device.page
        await device.open()
        enrolled = await join(device, org.code)
        await page.get_by_role("link", name="Our parks").tap()
        form = question(page, org, "open_text")
        # The emoji is one character to the screening (Python) and two UTF-16 units to the page.
        text = "Ask me 🌳 or mail jan.jansen@example.org, I walk there daily with the dog"
        box = form.get_by_label("Why?")
        await box.press_sequentially(text[:20])  # typed, not pasted: screened while typing
        await box.fill(text)
        backdrop = form.locator(".highlight .backdrop")
        finding = backdrop.locator("mark")
        await expect(finding).to_have_text("jan.jansen@example.org")  # in the box, before anything was sent
        await expect(finding).to_have_attribute("data-kind", "email")
        # The mark covers exactly the address: the backdrop holds the very text of the box, laid out alike.
        laid_out = await form.evaluate("""form => {
            const area = form.querySelector("textarea"), back = form.querySelector(".backdrop");
            const mark = back.querySelector("mark");
            const before = [...back.childNodes].slice(0, [...back.childNodes].indexOf(mark)).map(n => n.textContent).join("");
            const style = (node) => ["font", "lineHeight", "letterSpacing", "padding", "borderWidth", "whiteSpace",
                                     "overflowWrap", "width", "height"].map(p => getComputedStyle(node)[p]);
            return {same_text: back.textContent === area.value, before, style: [style(area), style(back)],
                    transparent: getComputedStyle(area).backgroundColor};
        }""")
        assert laid_out["same_text"] and laid_out["before"] == "Ask me 🌳 or mail "
        assert laid_out["style"][0] == laid_out["style"][1] and laid_out["transparent"] == "rgba(0, 0, 0, 0)"
        # What the marks say, in words, read with the box.
        explanation = form.locator(".screening")
        await expect(explanation.locator(".warning")).to_have_text("This looks like personal data: e-mail address.")
        await expect(explanation.locator(".policy")).to_contain_text("does not accept personal data")
        await expect(explanation).to_have_attribute("aria-live", "polite")
        await expect(box).to_have_accessible_description(re.compile(
            r"personal data: e-mail address\..*“jan\.jansen@example\.org”.*does not accept personal data"))
        assert await answers_of(platform, enrolled) == []
        await box.scroll_into_view_if_needed()
        await device.shot("08-screening-while-typing", full_page=False)
        await page.set_viewport_size({"width": 360, "height": 740})
        await expect(finding).to_have_text("jan.jansen@example.org")
        await box.scroll_into_view_if_needed()
        await device.shot("08b-screening-at-360", full_page=False)
        await page.set_viewport_size({"width": 390, "height": 844})

        await form.get_by_role("button", name="Send answer").tap()
        await expect(form.locator(".feedback")).to_have_text(
            "Not saved: the text seems to contain personal data. Remove it and send again.")
        await expect(form.locator(".backdrop mark")).to_have_text("jan.jansen@example.org")
        await expect(page.locator("#waiting")).to_be_hidden()  # refused for good: nothing waits
        assert await answers_of(platform, enrolled) == []

        await form.get_by_label("Why?").fill("I walk there daily")
        await expect(form.locator(".backdrop mark")).to_have_count(0)
        await expect(form.locator(".screening")).to_be_empty()
        await sent(form)
        await device.accessible()

        # A change in My answers is screened and refused the same way, its findings shown.
        await page.get_by_role("link", name="My answers").tap()
        mine = page.locator("ul.answers li").first
        await mine.get_by_role("button", name="Change").tap()
        await mine.get_by_label("Why?").fill("Call 06 12345678 any time")
        await mine.get_by_role("button", name="Save").tap()
        await expect(mine.locator(".feedback")).to_have_text(
            "Not saved: the text seems to contain personal data. Remove it and send again.")
        await expect(mine.locator('.backdrop mark[data-kind="phone"]')).to_have_text("06 12345678")
        assert [a["value"] for a in await answers_of(platform, enrolled)] == ["I walk there daily"]


async def test_erasure_follows_every_store_verifies_the_receipt_in_the_page_and_forgets_the_token(
        platform, base, browser):
    org = await organisation(platform)
    async with phone(browser, base) as device:
        page = device.page
        enrolled = await wrote_then_my_data(device, org, "Please mow the grass")
        await page.get_by_role("button", name="Erase everything…").tap()
        await expect(page.get_by_role("button", name="Keep my data")).to_be_focused()
        await page.get_by_role("button", name="Yes, erase everything").tap()
        await expect(page.get_by_role("heading", name="Erasing your data")).to_be_visible()
        stores = page.locator("ul.progress li")
        await expect(stores.first).to_be_visible()
        assert {"enrolment.devices", "dialogue.answers"} <= set(
            await stores.evaluate_all("items => items.map(i => i.dataset.store)"))

        verdict = page.locator(".verdict")
        await expect(verdict).to_have_attribute("data-verdict", "valid", timeout=90_000)
        await expect(verdict).to_contain_text("The receipt's signature is verified with the platform's key rk_")
        assert await stores.evaluate_all("items => items.map(i => i.dataset.status)") == ["confirmed"] * await stores.count()
        await device.shot("09-erasure-receipt")
        await device.accessible()

        async with page.expect_download() as waiting:
            await page.get_by_role("button", name="Save the receipt").tap()
        signed = json.loads(Path(await (await waiting.value).path()).read_text())
        erasure = await device.stored("erasure")  # kept: the status secret and the receipt
        assert erasure["status_secret"].startswith("rss_")
        assert signed["receipt"]["request_id"] == erasure["request_id"] and signed["algorithm"] == "Ed25519"
        key = (await platform.gateway.get("/v1/rights/receipt-key")).json()
        assert verify_receipt(key["public_key"], signed)
        tampered = {**signed, "receipt": {**signed["receipt"], "reason": "changed"}}
        assert await page.evaluate("""async ([signed, key]) => {
            const {verifyReceipt} = await import('./js/receipt.js');
            return verifyReceipt(signed, key);
        }""", [tampered, key]) == "invalid"

        refused = await platform.gateway.get("/v1/me", headers=bearer(enrolled["device_token"]))
        assert refused.status_code == 401
        assert await device.device() is None  # the app forgot the token
        await page.get_by_role("button", name="Done").tap()
        await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
        await device.no_cookie_ever()
