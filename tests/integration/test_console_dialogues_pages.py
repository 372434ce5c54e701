"""The console's dialogue and figures pages in a real headless Chromium, against the
whole platform in-process (gateway, dialogue, rights, analytics on the real stack):
an editor writes a dialogue with a question of every kind, previews and publishes it,
phones answer it, and the answers (with their screening) and the figures appear."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest
from playwright.async_api import expect

from support.apps import bearer, create_code, enrol, served, tenant_known_to_dialogue
from support.console import STRONG, join, new_tenant
from support.kafka import eventually
from support.browser import accessible, shot
from tessera_rights.domain import verify_receipt

pytestmark = pytest.mark.connected


@pytest.fixture(scope="module")
async def base(platform) -> AsyncIterator[str]:
    async with served(platform.gateway_app) as url:
        yield url


async def test_an_editor_writes_publishes_and_follows_a_dialogue(platform, base, browser) -> None:
    address = f"redactie-{uuid4().hex[:8]}@gemeente.example"
    tenant = await new_tenant(platform.gateway, address)
    owner = await join(platform.gateway, tenant["owner_invitation_url"])
    await tenant_known_to_dialogue(platform, tenant)
    settings = await platform.dialogue.put(f"/v1/tenants/{tenant['tenant_id']}/settings",
                                           json={"min_group_size": 3}, headers=bearer(tenant["api_key"]))
    assert settings.status_code == 200

    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        await page.goto(f"{base}/console/")
        await page.get_by_label("Email address").fill(address)
        await page.get_by_label("Password").fill(STRONG)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_label("Code from your authenticator app").fill(owner.code(time.time() + 30))
        await page.get_by_role("button", name="Confirm").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Anna de Vries")

        await page.get_by_role("link", name="Dialogues").click()
        await expect(page.get_by_text("No dialogues yet.")).to_be_visible()
        await page.get_by_role("button", name="New dialogue").click()
        await page.get_by_label("Title").fill("Our parks")
        await page.get_by_label("Introduction (optional)").fill("Tell us about the parks.")
        questions = [
            ("single_choice", "Which park needs work first?", {"choices": "North park\nSouth park"}),
            ("multiple_choice", "What would you add?", {"choices": "Benches\nTrees\nLights"}),
            ("scale", "How safe do you feel there?", {"minlabel": "not at all", "maxlabel": "very"}),
            ("open_text", "Why?", {}),
            ("idea", "Your ideas for the park", {}),
        ]
        for n, (kind, prompt, extra) in enumerate(questions, start=1):
            if n > 1:
                await page.get_by_role("button", name="Add a question").click()
            await page.locator(f"#q{n}-kind").select_option(kind)
            await page.locator(f"#q{n}-prompt").fill(prompt)
            if "choices" in extra:
                await page.locator(f"#q{n}-choices").fill(extra["choices"])
            for name in ("minlabel", "maxlabel"):
                if name in extra:
                    await page.locator(f"#q{n}-{name}").fill(extra[name])
        await accessible(page)
        await page.get_by_role("button", name="Save as draft").click()

        await expect(page.get_by_role("heading", level=1)).to_have_text("Our parks")
        await expect(page.get_by_text("Status: draft")).to_be_visible()
        # A draft is edited in the same form, its questions kept (by their IDs).
        draft_path = f"/v1/tenants/{tenant['tenant_id']}/dialogues/{page.url.split('#dialogue=', 1)[1]}"

        async def question_ids() -> list[str]:
            found = await platform.dialogue.get(draft_path, headers=bearer(tenant["api_key"]))
            return [q["question_id"] for q in found.json()["questions"]]

        before = await question_ids()
        await page.get_by_role("button", name="Edit").click()
        await expect(page.get_by_label("Title")).to_have_value("Our parks")
        await expect(page.locator("#q3-maxlabel")).to_have_value("very")
        await expect(page.locator("#q2-choices")).to_have_value("Benches\nTrees\nLights")
        await page.get_by_label("Title").fill("Our parks and squares")
        await page.locator("#q4-prompt").fill("Why do you say so?")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Our parks and squares")
        assert await question_ids() == before
        preview = page.get_by_role("region", name="Preview: what a participant sees")
        await expect(preview.get_by_role("radiogroup", name="Which park needs work first?").get_by_role("radio")
                     ).to_have_count(2)
        await expect(preview.get_by_role("group", name="What would you add?").get_by_role("checkbox")).to_have_count(3)
        await expect(preview.get_by_role("radiogroup", name="How safe do you feel there?").get_by_role("radio")
                     ).to_have_count(5)
        await expect(preview.get_by_text("1 (not at all)")).to_be_visible()
        await expect(preview.get_by_role("textbox", name="Why do you say so?")).to_be_visible()
        await accessible(page)
        await page.get_by_role("button", name="Publish").click()
        await expect(page.get_by_text("Status: published")).to_be_visible()
        await shot(page, "console-dialogue-en-1280")

        # The platform has the dialogue as written; phones answer it.
        dialogue_id = page.url.split("#dialogue=", 1)[1]
        dialogue = (await platform.dialogue.get(f"/v1/tenants/{tenant['tenant_id']}/dialogues/{dialogue_id}",
                                                headers=bearer(tenant["api_key"]))).json()
        assert [q["kind"] for q in dialogue["questions"]] == [q[0] for q in questions]
        assert dialogue["questions"][2]["scale"] == {"min": 1, "max": 5, "labels": {"1": "not at all", "5": "very"}}
        code = await create_code(platform.gateway, tenant)
        choice, text = dialogue["questions"][0], dialogue["questions"][3]
        answers_given = [("c1", "More shade"), ("c1", "Call me on 06 12345678"), ("c1", "Benches"),
                         ("c2", "Lights"), ("c2", "Paths"), ("c2", "Dogs")]
        devices = []
        for n, (pick, why) in enumerate(answers_given):
            device = (await enrol(platform.gateway, code["code"])).json()
            devices.append(device)
            path = f"/v1/me/dialogues/{dialogue_id}/questions"
            for question, value in ((choice, pick), (text, why)):
                answered = await platform.gateway.put(f"{path}/{question['question_id']}/answer",
                                                      json={"value": value}, headers=bearer(device["device_token"]))
                assert answered.status_code in (200, 201), (n, answered.text)

        await page.reload()
        await expect(page.locator("tbody tr")).to_have_count(12)
        await expect(page.get_by_role("row", name="Why do you say so? More shade nothing found")).to_be_visible()
        flagged = page.get_by_role("row", name="Why do you say so? Call me on 06 12345678")
        await expect(flagged).to_be_visible()
        await expect(flagged.locator("td").nth(2)).not_to_have_text("nothing found")  # the screening's finding

        # Figures: once analytics has the answers, the choice question's counts.
        await page.get_by_role("link", name="Figures").click()

        async def counted() -> bool:
            await page.reload()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Figures")
            return await page.get_by_role("row", name="North park 3").count() == 1

        try:
            await eventually(counted, timeout=60, interval=1)
        except TimeoutError:
            raise AssertionError([await page.locator("main").inner_text(), problems]) from None
        await expect(page.get_by_text("6 respondents").first).to_be_visible()
        await expect(page.get_by_role("row", name="South park 3")).to_be_visible()
        await accessible(page)
        await shot(page, "console-figures-en-1280")
        # The figures as a spreadsheet: the same counts, nothing about fewer than k people.
        async with page.expect_download() as download_info:
            await page.get_by_role("button", name=f"Download as spreadsheet (CSV): {dialogue['title']}").click()
        download = await download_info.value
        assert download.suggested_filename == f"figures-{dialogue_id}.csv"
        sheet = list(csv.reader(io.StringIO(Path(await download.path()).read_text(encoding="utf-8-sig"))))
        assert sheet[0] == ["Question", "Answer", "People", "Note"]
        assert [choice["prompt"], "North park", "3", ""] in sheet and [choice["prompt"], "South park", "3", ""] in sheet
        assert [choice["prompt"], "(respondents)", "6", ""] in sheet
        assert not any(why in str(sheet) for why in ("More shade", "06 12345678", "Paths", "Dogs"))  # counts only

        # The rights desk: an erasure on a participant's behalf, followed to its receipt.
        await page.get_by_role("link", name="Rights desk").click()
        await expect(page.get_by_text("No rights requests yet.")).to_be_visible()
        await page.get_by_label("Participant ID").fill(devices[0]["participant_id"])
        await page.get_by_label("Request").select_option("erasure")
        await page.get_by_role("button", name="Make the request").click()
        await expect(page.get_by_role("status")).to_have_text("Request received.")

        async def completed() -> bool:
            await page.reload()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Rights desk")
            return await page.get_by_role("button", name="Download receipt").count() == 1

        await eventually(completed, timeout=90, interval=1)
        await expect(page.locator("tbody tr").first).to_contain_text("erasure")
        await accessible(page)
        async with page.expect_download() as receipt_download:
            await page.get_by_role("button", name="Download receipt").click()
        receipt = json.loads(Path(await (await receipt_download.value).path()).read_text())
        key = (await platform.gateway.get("/v1/rights/receipt-key")).json()
        assert verify_receipt(key["public_key"], receipt)
        assert devices[0]["participant_id"] not in json.dumps(receipt)

        await page.get_by_role("button", name="Verify the audit trail").click()
        await expect(page.get_by_text(re.compile(r"The audit trail is intact: \d+ entries."))).to_be_visible()
        async with page.expect_download() as statement_download:
            await page.get_by_role("button", name="Download the signed statement").click()
        statement = json.loads(Path(await (await statement_download.value).path()).read_text())
        assert statement["receipt"]["valid"] is True and verify_receipt(key["public_key"], statement)
        await shot(page, "console-rights-en-1280")

        # Settings: the minimum group size and the allow-list, in Danish.
        await page.get_by_label("Language").select_option("da")
        await page.get_by_role("link", name="Indstillinger").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Indstillinger")
        await expect(page.get_by_label("Mindste gruppestørrelse")).to_have_value("3")
        await page.get_by_label("Mindste gruppestørrelse").fill("4")
        await page.get_by_role("button", name="Gem").first.click()
        await expect(page.get_by_role("status")).to_have_text("Gemt.")
        stored = await platform.dialogue.get(f"/v1/tenants/{tenant['tenant_id']}/settings",
                                             headers=bearer(tenant["api_key"]))
        assert stored.json()["min_group_size"] == 4
        await expect(page.get_by_text("Du er på 127.0.0.1.")).to_be_visible()
        await page.get_by_label("Tilladte netværk").fill("198.51.100.0/24")
        await page.get_by_role("button", name="Gem").last.click()
        await expect(page.get_by_role("alert").last).to_have_text("Listen skal indeholde det netværk, du er på nu.")
        await page.get_by_label("Tilladte netværk").fill("127.0.0.0/8\n2001:db8::/32")
        await page.get_by_role("button", name="Gem").last.click()
        await expect(page.get_by_role("status")).to_have_text("Gemt.")
        await accessible(page)
        await shot(page, "console-settings-da-1280")
        assert problems == []
    finally:
        await context.close()
