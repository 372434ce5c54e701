"""Dialogue figures, cross-dialogue analyses and suppression, from the real topics.

Events are produced onto the real broker (as the dialogue and rights services would)
and consumed by a real analytics service on PostgreSQL. The "from scratch" figures
are those of a twin tenant that was only ever sent the answers that remain: after an
erasure or an objection, the first tenant's counts must equal the twin's exactly.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from support.apps import running, served
from support.db import fetchval
from support.kafka import eventually, produce
from tessera_analytics.app import AnalyticsSettings, create_app
from tessera_analytics.store import AnalyticsStore
from tessera_common.events import (
    AnswerChanged,
    AnswerChangedData,
    AnswerSubmitted,
    AnswerSubmittedData,
    ChoiceDefinition,
    DialogueChanged,
    DialogueChangedData,
    ErasureRequested,
    ErasureRequestedData,
    ObjectionRecorded,
    ObjectionRecordedData,
    QuestionDefinition,
    TenantRegistered,
    TenantRegisteredData,
    Topics,
    partition_key,
)
from tessera_common.secrets import new_id, new_split_secret, secret_hash

pytestmark = pytest.mark.connected

DAY_1 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY_2 = DAY_1 + timedelta(days=1)


# Debian's chromium, driven by Playwright from PyPI (never `playwright install`).
CHROMIUM = os.environ.get("TESSERA_CHROMIUM", "/usr/bin/chromium")


@dataclass
class Analytics:
    client: httpx.AsyncClient
    store: AnalyticsStore
    app: Any
    owner_url: str


@pytest.fixture(scope="module")
async def analytics(stack) -> AsyncIterator[Analytics]:
    settings = AnalyticsSettings(kafka_bootstrap_servers=stack.kafka_bootstrap, environment="test",
                                 **stack.database("analytics"))
    app = create_app(settings)
    async with running(app) as client:
        yield Analytics(client, AnalyticsStore(app.state.wiring.database), app,
                        settings.database_owner_url.get_secret_value())


@dataclass
class Tenant:
    """A tenant, its dialogue and the events it was sent (to replay or mirror)."""

    tenant_id: str
    api_key: str
    dialogue_id: str
    questions: dict[str, QuestionDefinition] = field(default_factory=dict)
    sent: list[Any] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


QUESTIONS = {
    "single": dict(kind="single_choice", prompt="Which park?",
                   choices=[ChoiceDefinition(key="a", label="North"), ChoiceDefinition(key="b", label="South"),
                            ChoiceDefinition(key="c", label="East")]),
    "scale": dict(kind="scale", prompt="How safe do you feel?", scale_min=1, scale_max=5),
    "multi": dict(kind="multiple_choice", prompt="What is missing?",
                  choices=[ChoiceDefinition(key="x", label="Benches"), ChoiceDefinition(key="y", label="Light"),
                           ChoiceDefinition(key="z", label="Trees")]),
    "idea": dict(kind="idea", prompt="Your idea?"),
}


async def send(stack, topic: str, event: Any, key: str) -> None:
    await produce(stack.kafka, topic, event.model_dump_json().encode(), partition_key(key))


async def new_tenant(stack, questions: tuple[str, ...] = ("single", "scale", "multi", "idea"),
                     min_group_size: int = 5, title: str = "Parks") -> Tenant:
    tenant_id = new_id("t")
    api_key = new_split_secret("tak", tenant_id)
    await send(stack, Topics.TENANT_REGISTERED, TenantRegistered(
        source="test", tenant_id=tenant_id, subject=tenant_id,
        data=TenantRegisteredData(region="eu-west", api_key_sha256=secret_hash(api_key),
                                  min_group_size=min_group_size)), tenant_id)
    tenant = Tenant(tenant_id, api_key, new_id("d"))
    tenant.questions = {name: QuestionDefinition(question_id=new_id("q"), **QUESTIONS[name]) for name in questions}
    await send(stack, Topics.DIALOGUE_CHANGED, dialogue_event(tenant, title, revision=1), tenant.dialogue_id)
    return tenant


def dialogue_event(tenant: Tenant, title: str, revision: int, status: str = "published") -> DialogueChanged:
    return DialogueChanged(
        source="test", tenant_id=tenant.tenant_id, subject=tenant.dialogue_id,
        data=DialogueChangedData(dialogue_id=tenant.dialogue_id, title=title, status=status, revision=revision,
                                 questions=list(tenant.questions.values()), changed_at=datetime.now(UTC)))


def answer(tenant: Tenant, participant_id: str, question: str, *, choices: tuple[str, ...] = (),
           scale: int | None = None, version: int = 1, withdrawn: bool = False, at: datetime = DAY_1,
           device: tuple[str, str] | None = ("ios", "phone"), answer_no: int = 0) -> AnswerSubmitted | AnswerChanged:
    definition = tenant.questions[question]
    fields = dict(
        participant_id=participant_id, dialogue_id=tenant.dialogue_id, question_id=definition.question_id,
        answer_id=f"a_{participant_id}_{definition.question_id}_{answer_no}"[:64], question_kind=definition.kind,
        choices=list(choices), scale_value=scale,
        platform=device[0] if device else None, form_factor=device[1] if device else None,
    )
    if version == 1:
        return AnswerSubmitted(source="test", tenant_id=tenant.tenant_id, subject=participant_id,
                               data=AnswerSubmittedData(**fields, submitted_at=at))
    return AnswerChanged(source="test", tenant_id=tenant.tenant_id, subject=participant_id,
                         data=AnswerChangedData(**fields, version=version, changed_at=at,
                                                change="withdrawn" if withdrawn else "edited"))


async def publish(stack, tenant: Tenant, events: list[Any]) -> None:
    for event in events:
        topic = Topics.ANSWER_SUBMITTED if isinstance(event, AnswerSubmitted) else Topics.ANSWER_CHANGED
        await send(stack, topic, event, event.data.participant_id)
        tenant.sent.append(event)


def mirrored(events: list[Any], source: Tenant, target: Tenant, renamed: dict[str, str]) -> list[Any]:
    """The same answers, in another tenant, by participants with other IDs."""
    question_ids = {source.questions[n].question_id: target.questions[n].question_id for n in source.questions}
    out = []
    for event in events:
        pid = renamed.setdefault(event.data.participant_id, new_id("p"))
        data = event.data.model_copy(update={
            "participant_id": pid, "dialogue_id": target.dialogue_id,
            "question_id": question_ids[event.data.question_id],
            "answer_id": event.data.answer_id.replace(event.data.participant_id, pid).replace(
                event.data.question_id, question_ids[event.data.question_id]),
        })
        out.append(event.model_copy(update={"id": str(uuid4()), "tenant_id": target.tenant_id, "subject": pid,
                                            "data": data}))
    return out


async def counters(analytics: Analytics, tenant: Tenant) -> dict[str, dict[str, Any]]:
    """The raw counts per question name (what the figures are made from)."""
    names = {q.question_id: name for name, q in tenant.questions.items()}
    found = await analytics.store.question_counters(tenant.tenant_id, tenant.dialogue_id)
    return {names[question_id]: counts for question_id, counts in found.items()}


async def settled(analytics: Analytics, tenant: Tenant, answers: int) -> dict[str, dict[str, Any]]:
    """Wait until the tenant's counters hold ``answers`` answers in all."""
    async def check():
        found = await counters(analytics, tenant)
        return found if sum(q.get("answers", 0) for q in found.values()) == answers else None

    return await eventually(check, timeout=60)


async def until_equal(analytics: Analytics, tenant: Tenant, expected: dict) -> dict:
    """The tenant's counters once they equal ``expected`` (or as they are at the timeout)."""
    async def check():
        found = await counters(analytics, tenant)
        return found if found == expected else None

    try:
        return await eventually(check, timeout=60)
    except TimeoutError:
        return await counters(analytics, tenant)


async def figures(analytics: Analytics, tenant: Tenant, dialogue_id: str | None = None) -> httpx.Response:
    return await analytics.client.get(
        f"/v1/tenants/{tenant.tenant_id}/dialogues/{dialogue_id or tenant.dialogue_id}/figures", headers=tenant.auth)


async def dialogue_known(analytics: Analytics, tenant: Tenant) -> dict:
    async def check():
        response = await figures(analytics, tenant)
        return response.json() if response.status_code == 200 else None

    return await eventually(check)


def by_key(cells: list[dict]) -> dict[str, Any]:
    return {cell["key"]: cell["value"] for cell in cells}


def question(body: dict, tenant: Tenant, name: str) -> dict:
    return next(q for q in body["questions"] if q["question_id"] == tenant.questions[name].question_id)


def park_answers(tenant: Tenant, pids: list[str]) -> list[Any]:
    """12 participants: single a×6 b×5 c×1; scale 3×6 4×5 5×1; several ideas; picks."""
    events = []
    for i, pid in enumerate(pids):
        choice = "a" if i < 6 else "b" if i < 11 else "c"
        device = ("ios", "phone") if i < 7 else ("android", "phone") if i < 11 else ("android", "tablet")
        events.append(answer(tenant, pid, "single", choices=(choice,), device=device))
        events.append(answer(tenant, pid, "scale", scale=3 if i < 6 else 4 if i < 11 else 5, device=device,
                             at=DAY_1 if i < 7 else DAY_2))
        events.append(answer(tenant, pid, "multi", choices=("x", "y") if i % 2 else ("x",), device=device))
        if i < 6:
            events += [answer(tenant, pid, "idea", device=device, answer_no=n) for n in range(2)]
    return events


async def test_dialogue_figures_count_participants_and_hide_small_cells(analytics, stack):
    tenant = await new_tenant(stack)
    await publish(stack, tenant, park_answers(tenant, [new_id("p") for _ in range(12)]))
    raw = await settled(analytics, tenant, 12 * 3 + 12)

    assert raw["single"]["choices"] == {"a": 6, "b": 5, "c": 1}
    assert raw["idea"]["respondents"] == 6 and raw["idea"]["answers"] == 12
    body = (await figures(analytics, tenant)).json()
    assert body["title"] == "Parks" and body["min_group_size"] == 5

    single = question(body, tenant, "single")
    assert single["respondents"]["value"] == 12
    # c (1) is below k; b (5) would give it away as 12 − 6 − 5, so b goes too.
    assert by_key(single["choices"]) == {"a": 6, "b": None, "c": None}
    reasons = {c["key"]: c["reason"] for c in single["choices"]}
    assert reasons["c"] == "fewer than k participants" and reasons["b"].startswith("complementary")
    assert {c["key"]: c["label"] for c in single["choices"]} == {"a": "North", "b": "South", "c": "East"}

    scale = question(body, tenant, "scale")["scale"]
    assert (scale["min"], scale["max"]) == (1, 5)
    assert by_key(scale["histogram"]) == {"1": None, "2": None, "3": 6, "4": None, "5": None}
    assert scale["mean"]["suppressed"]  # with the count, an exact mean would solve for 4 and 5
    over_time = by_key(question(body, tenant, "scale")["over_time"])
    assert over_time == {"2026-11-02": 7, "2026-11-03": 5}
    devices = by_key(single["devices"])
    assert devices["ios/phone"] == 7 and devices["android/tablet"] is None and devices["android/phone"] is None

    multi = question(body, tenant, "multi")
    assert by_key(multi["choices"]) == {"x": 12, "y": 6, "z": None}  # overlapping picks: no complement needed

    idea = question(body, tenant, "idea")
    assert idea["respondents"]["value"] == 6 and idea["answers"]["value"] == 12

    listed = {(s["question_id"], s["figure"], s["key"]) for s in body["suppressed"]}
    assert (tenant.questions["single"].question_id, "choices", "c") in listed
    assert (tenant.questions["scale"].question_id, "mean", "mean") in listed


async def test_figures_after_erasure_and_objection_equal_figures_without_them(analytics, stack):
    tenant, twin = await new_tenant(stack), await new_tenant(stack)
    stay = [new_id("p") for _ in range(10)]
    erased, objector = new_id("p"), new_id("p")
    events = park_answers(tenant, stay + [erased, objector])
    # The erased participant also changed their mind, and alone picked z.
    events += [answer(tenant, erased, "multi", choices=("z",), version=2, at=DAY_2),
               answer(tenant, erased, "single", version=2, withdrawn=True, at=DAY_2)]
    await publish(stack, tenant, events)
    remaining = [e for e in events if e.data.participant_id not in (erased, objector)]
    await publish(stack, twin, mirrored(remaining, tenant, twin, {}))
    await settled(analytics, tenant, sum(1 for e in events if isinstance(e, AnswerSubmitted)) - 1)
    expected = await settled(analytics, twin, len(remaining))

    now = datetime.now(UTC)
    request_id = new_id("r")
    await send(stack, Topics.ERASURE_REQUESTED, ErasureRequested(
        source="test", tenant_id=tenant.tenant_id, subject=request_id,
        data=ErasureRequestedData(request_id=request_id, participant_id=erased, reason="participant",
                                  requested_at=now)), erased)
    await send(stack, Topics.OBJECTION_RECORDED, ObjectionRecorded(
        source="test", tenant_id=tenant.tenant_id, subject=objector,
        data=ObjectionRecordedData(request_id=new_id("r"), participant_id=objector, recorded_at=now)), objector)

    assert await until_equal(analytics, tenant, expected) == expected
    ours, theirs = (await figures(analytics, tenant)).json(), (await figures(analytics, twin)).json()
    for name in tenant.questions:
        mine, twins = question(ours, tenant, name), question(theirs, twin, name)
        assert {k: v for k, v in mine.items() if k != "question_id"} == \
               {k: v for k, v in twins.items() if k != "question_id"}
    # Redelivered, their answers bring nothing back.
    for event in events:
        if event.data.participant_id in (erased, objector):
            topic = Topics.ANSWER_SUBMITTED if isinstance(event, AnswerSubmitted) else Topics.ANSWER_CHANGED
            await send(stack, topic, event, event.data.participant_id)
    marker = new_id("p")  # a later answer by someone else shows the redeliveries were consumed
    await publish(stack, tenant, [answer(tenant, marker, "single", choices=("a",))])
    with_marker = {name: {key: dict(value) if isinstance(value, dict) else value for key, value in q.items()}
                   for name, q in expected.items()}
    single = with_marker["single"]
    single["answers"] += 1
    single["respondents"] += 1
    single["choices"]["a"] += 1
    single["days"]["2026-11-02"] += 1
    single["devices"]["ios/phone"] += 1
    assert await until_equal(analytics, tenant, with_marker) == with_marker
    assert await fetchval(analytics.owner_url, "SELECT count(*) FROM answer_contributions"
                                               " WHERE participant_id = ANY($1)", [erased, objector]) == 0


async def test_replayed_and_reordered_events_change_nothing(analytics, stack):
    in_order, shuffled = await new_tenant(stack), await new_tenant(stack)
    pids = [new_id("p") for _ in range(8)]
    events = park_answers(in_order, pids)
    for pid in pids[:3]:  # edits on another day, and one withdrawal
        events.append(answer(in_order, pid, "scale", scale=1, version=2, at=DAY_2))
        events.append(answer(in_order, pid, "scale", scale=2, version=3, at=DAY_2 + timedelta(hours=1)))
    events.append(answer(in_order, pids[4], "multi", version=2, withdrawn=True, at=DAY_2))
    await publish(stack, in_order, events)
    live = sum(1 for e in events if isinstance(e, AnswerSubmitted)) - 1
    expected = await settled(analytics, in_order, live)

    replay = mirrored(events, in_order, shuffled, {})
    replay = replay + random.Random(7).sample(replay, len(replay) // 2)  # half of them twice
    random.Random(11).shuffle(replay)
    await publish(stack, shuffled, replay)
    assert await settled(analytics, shuffled, live) == expected
    assert expected["scale"]["scale"] == {"2": 3, "3": 3, "4": 2}
    assert expected["scale"]["days"] == {"2026-11-02": 7, "2026-11-03": 1}  # by submission, not by edit


async def test_cross_tab_and_retention_across_dialogues(analytics, stack):
    first = await new_tenant(stack, questions=("single",), title="Spring")
    second = Tenant(first.tenant_id, first.api_key, new_id("d"))
    second.questions = {"single": QuestionDefinition(question_id=new_id("q"), **QUESTIONS["single"])}
    await send(stack, Topics.DIALOGUE_CHANGED, dialogue_event(second, "Autumn", revision=1), second.dialogue_id)
    pids = [new_id("p") for _ in range(30)]
    # Rows (spring) × columns (autumn): a→a 12, a→b 6, b→b 7, b→c 2; 3 only in spring.
    plan = [("a", "a")] * 12 + [("a", "b")] * 6 + [("b", "b")] * 7 + [("b", "c")] * 2 + [("c", None)] * 3
    spring, autumn = [], []
    for pid, (row, column) in zip(pids, plan, strict=True):
        spring.append(answer(first, pid, "single", choices=(row,)))
        if column:
            autumn.append(answer(second, pid, "single", choices=(column,)))
    await publish(stack, first, spring)
    await publish(stack, second, autumn)
    await settled(analytics, first, 30)
    await settled(analytics, second, 27)

    response = await analytics.client.get(f"/v1/tenants/{first.tenant_id}/analyses/cross-tab", headers=first.auth,
                                          params={"row_question_id": first.questions["single"].question_id,
                                                  "column_question_id": second.questions["single"].question_id})
    assert response.status_code == 200, response.text
    table = response.json()
    assert table["total"]["value"] == 27
    cells = [[cell["value"] for cell in row] for row in table["cells"]]
    assert cells[0][0] == 12  # spring a → autumn a
    assert cells[1][2] is None  # b→c: 2 participants
    # No line lets a hidden group below k be recovered by subtraction.
    k = table["min_group_size"]
    lines = [(row, total) for row, total in zip(table["cells"], table["row_totals"], strict=True)]
    lines += [([row[j] for row in table["cells"]], table["column_totals"][j]) for j in range(3)]
    lines += [(table["row_totals"], table["total"]), (table["column_totals"], table["total"])]
    for line, total in lines:
        if total["suppressed"]:
            continue
        hidden = total["value"] - sum(cell["value"] for cell in line if not cell["suppressed"])
        assert hidden == 0 or hidden >= k, (line, total)
    assert table["suppressed"] and all(s["reason"] for s in table["suppressed"])

    retention = await analytics.client.get(f"/v1/tenants/{first.tenant_id}/analyses/retention", headers=first.auth,
                                           params={"dialogue_id": [first.dialogue_id, second.dialogue_id]})
    assert retention.status_code == 200, retention.text
    overlap = [[cell["value"] for cell in row] for row in retention.json()["cells"]]
    assert overlap[0][0] == 30 and overlap[1][1] == 27
    assert overlap[0][1] is None  # 27 came back, but 30 − 27 = 3 would single out the ones who did not
    assert retention.json()["suppressed"][0]["reason"]


async def test_bad_requests_change_nothing_and_say_why(analytics, stack):
    tenant = await new_tenant(stack)
    other = await new_tenant(stack)
    await dialogue_known(analytics, tenant)
    await dialogue_known(analytics, other)
    base = f"/v1/tenants/{tenant.tenant_id}"

    async def get(path: str, auth=None, **params) -> httpx.Response:
        return await analytics.client.get(base + path, headers=auth or tenant.auth, params=params)

    assert (await get("/dialogues/d_nope/figures")).status_code == 404
    assert (await get(f"/dialogues/{other.dialogue_id}/figures")).status_code == 404  # another tenant's
    assert (await get(f"/dialogues/{tenant.dialogue_id}/figures", auth=other.auth)).status_code == 403
    assert (await get(f"/dialogues/{tenant.dialogue_id}/figures",
                      auth={"Authorization": "Bearer tak_nope"})).status_code == 401
    injected = await get("/analyses/cross-tab", row_question_id='{"$gt": ""}',
                         column_question_id=tenant.questions["scale"].question_id)
    assert injected.status_code == 422
    single, scale = tenant.questions["single"].question_id, tenant.questions["scale"].question_id
    same = await get("/analyses/cross-tab", row_question_id=single, column_question_id=single)
    assert same.status_code == 422 and same.json()["detail"]["code"] == "same_question"
    text = await get("/analyses/cross-tab", row_question_id=single,
                     column_question_id=tenant.questions["idea"].question_id)
    assert text.status_code == 422 and "single choice or scale" in text.json()["detail"]["message"]
    foreign = await get("/analyses/cross-tab", row_question_id=single,
                        column_question_id=other.questions["single"].question_id)
    assert foreign.status_code == 404
    assert (await get("/analyses/cross-tab", row_question_id=single, column_question_id=scale)).status_code == 200
    too_many = await get("/analyses/retention", dialogue_id=[f"d_{i}" for i in range(21)])
    assert too_many.status_code == 422
    assert (await get("/analyses/retention", dialogue_id=[other.dialogue_id])).status_code == 404
    # A late, older revision of the dialogue does not roll its definition back.
    await send(stack, Topics.DIALOGUE_CHANGED, dialogue_event(tenant, "Parks, revised", revision=3), tenant.dialogue_id)
    await send(stack, Topics.DIALOGUE_CHANGED, dialogue_event(tenant, "Parks, stale", revision=2), tenant.dialogue_id)

    async def revised():
        body = (await figures(analytics, tenant)).json()
        return body["title"] == "Parks, revised"

    await eventually(revised)
    # Another dialogue on the same key, so the same partition: once it is in, the stale
    # revision before it has been consumed too.
    later = Tenant(tenant.tenant_id, tenant.api_key, new_id("d"), questions=tenant.questions)
    await send(stack, Topics.DIALOGUE_CHANGED, dialogue_event(later, "Later", revision=1), tenant.dialogue_id)
    await dialogue_known(analytics, later)
    assert (await figures(analytics, tenant)).json()["title"] == "Parks, revised"


CHART_BARS = """els => els.map(e => ({
    key: e.dataset.key, label: e.dataset.label, value: e.dataset.value ?? null,
    suppressed: e.dataset.suppressed === "true", reason: e.dataset.reason ?? null,
    text: e.querySelector("text.figure").textContent,
    width: e.querySelector("rect").getBBox().width, height: e.querySelector("rect").getBBox().height,
    fill: getComputedStyle(e.querySelector("rect")).fill,
}))"""


async def test_dashboard_draws_the_figures_and_marks_suppressed_cells_in_chromium(analytics, stack):
    """The tenant's page in a real headless Chromium: sign in (a wrong key first), pick
    the dialogue, and read back what was drawn: bar lengths in proportion to the
    figures, and the hidden cells hatched and labelled as suppressed."""
    assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium"
    tenant = await new_tenant(stack, title="Parks <b>2030</b>")
    await publish(stack, tenant, park_answers(tenant, [new_id("p") for _ in range(12)]))
    await settled(analytics, tenant, 12 * 3 + 12)
    expected = (await figures(analytics, tenant)).json()

    async with served(analytics.app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error"
                    and not m.text.startswith("Failed to load resource") else None)
            opened = await page.goto(f"{base}/dashboard/")
            assert opened is not None and opened.status == 200
            assert "script-src 'self'" in opened.headers["content-security-policy"]

            await page.fill("#tenant-id", tenant.tenant_id)
            await page.fill("#api-key", f"tak_{uuid4().hex}")
            await page.click("#sign-in button[type=submit]")
            await expect(page.locator("#message")).to_contain_text("not accepted")
            await expect(page.locator("#sign-in")).to_be_visible()

            await page.fill("#tenant-id", tenant.tenant_id)
            await page.fill("#api-key", tenant.api_key)
            await page.click("#sign-in button[type=submit]")
            link = page.get_by_role("link", name="Parks <b>2030</b>")  # the title as text, never as markup
            await expect(link).to_be_visible()
            await expect(page.locator("#sign-in")).to_be_hidden()
            await link.click()
            await expect(page.locator("#title")).to_have_text("Parks <b>2030</b>")
            assert f"dialogue={tenant.dialogue_id}" in page.url

            single = page.locator(f'[data-question="{tenant.questions["single"].question_id}"]')
            await expect(single.locator('[data-figure="respondents"] dd')).to_have_text("12")
            bars = await single.locator('[data-chart="choices"] .bar').evaluate_all(CHART_BARS)
            assert [(b["key"], b["label"], b["value"], b["text"]) for b in bars] == [
                ("a", "North", "6", "6"), ("b", "South", None, "suppressed"), ("c", "East", None, "suppressed")]
            assert bars[0]["width"] > 0 and bars[0]["fill"].startswith("rgb")
            assert bars[2]["reason"] == "fewer than k participants" and bars[1]["reason"].startswith("complementary")
            assert all("url(" in b["fill"] for b in bars[1:])  # hatched, not a bar of some length

            scale_id = tenant.questions["scale"].question_id
            scale = page.locator(f'[data-question="{scale_id}"]')
            histogram = await scale.locator('[data-chart="histogram"] .bar').evaluate_all(CHART_BARS)
            assert [(b["key"], b["value"]) for b in histogram] == [("1", None), ("2", None), ("3", "6"), ("4", None),
                                                                  ("5", None)]
            assert [b["suppressed"] for b in histogram] == [True, True, False, True, True]
            await expect(scale.locator('[data-figure="mean"] dd')).to_have_text("suppressed")
            days = await scale.locator('[data-chart="over_time"] .bar').evaluate_all(CHART_BARS)
            assert [(b["key"], b["text"]) for b in days] == [("2026-11-02", "7"), ("2026-11-03", "5")]
            assert days[1]["height"] / days[0]["height"] == pytest.approx(5 / 7, rel=0.01)
            devices = await scale.locator('[data-chart="devices"] .bar').evaluate_all(CHART_BARS)
            assert {b["key"]: b["value"] for b in devices}["ios/phone"] == "7"

            await page.click("details.hidden-figures summary")
            rows = page.locator("table.hidden-list tbody tr")
            await expect(rows).to_have_count(len(expected["suppressed"]))
            await expect(rows.first).to_be_visible()

            await page.click("#sign-out")
            await expect(page.locator("#sign-in")).to_be_visible()
            assert await page.evaluate("sessionStorage.length") == 0
            assert problems == []
        finally:
            await browser.close()
