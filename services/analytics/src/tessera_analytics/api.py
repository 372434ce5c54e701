"""Analytics' HTTP routes: figures that respect the minimum group size (tenant API
key), and what the rights service asks about a participant (internal token)."""


from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from tessera_common.events import FormFactor, Platform
from tessera_common.tenant_access import key_use_router
from tessera_common.http import (
    TenantIdPath,
    tenant_caller,
    errors,
    internal_caller,
    problem,
)
from tessera_common.secrets import erased_marker
from tessera_analytics import domain
from tessera_analytics.store import STORE_NAME, AnalyticsStore

SAFE_ID = r"^[A-Za-z0-9_-]{1,64}$"
ParticipantIdPath = Annotated[str, Path(pattern=SAFE_ID, description="the participant's ID")]
DialogueIdPath = Annotated[str, Path(pattern=SAFE_ID, description="the dialogue's ID")]
MAX_RETENTION_DIALOGUES = 20


class CellOut(BaseModel):
    platform: str
    form_factor: str
    count: int | None = Field(description="null when suppressed")
    suppressed: bool
    reason: str | None = None


class DeviceStatsOut(BaseModel):
    tenant_id: str
    min_group_size: int
    total: int | None
    total_suppressed: bool
    cells: list[CellOut]


class FigureOut(BaseModel):
    """One figure: released (``value``) or suppressed (``value`` null, with the reason)."""

    key: str
    label: str | None = None
    value: int | float | None = Field(description="null when suppressed; counts are integers, a mean or median may not be")
    suppressed: bool
    reason: str | None = None

    @classmethod
    def of(cls, cell: domain.Cell) -> "FigureOut":
        return cls(key=cell.key, label=cell.label, value=cell.value, suppressed=cell.suppressed, reason=cell.reason)


def figures(cells: list[domain.Cell]) -> list[FigureOut]:
    return [FigureOut.of(cell) for cell in cells]


class ScaleOut(BaseModel):
    min: int
    max: int
    histogram: list[FigureOut]
    mean: FigureOut
    median: FigureOut


class QuestionFiguresOut(BaseModel):
    question_id: str
    kind: str
    prompt: str
    respondents: FigureOut = Field(description="distinct participants with a live answer")
    answers: FigureOut = Field(description="live answers (several per participant only for ideas)")
    choices: list[FigureOut] | None = Field(description="participants per choice, every choice listed")
    scale: ScaleOut | None
    over_time: list[FigureOut] = Field(description="participants who answered, per UTC day")
    devices: list[FigureOut] = Field(description="participants per platform/form factor")


class SuppressedOut(BaseModel):
    question_id: str | None = None
    figure: str
    key: str
    reason: str


class DialogueFiguresOut(BaseModel):
    tenant_id: str
    dialogue_id: str
    title: str
    status: str
    min_group_size: int
    questions: list[QuestionFiguresOut]
    suppressed: list[SuppressedOut] = Field(description="every hidden figure and why")


class DialogueSummaryOut(BaseModel):
    dialogue_id: str
    title: str
    status: str


class DialoguesOut(BaseModel):
    tenant_id: str
    dialogues: list[DialogueSummaryOut]


class QuestionRefOut(BaseModel):
    question_id: str
    dialogue_id: str
    kind: str
    prompt: str
    values: list[FigureOut] = Field(description="the question's values (keys and labels; value unused)")


class CrossTabOut(BaseModel):
    tenant_id: str
    min_group_size: int
    rows: QuestionRefOut
    columns: QuestionRefOut
    cells: list[list[FigureOut]] = Field(description="[row][column]: participants who gave both values")
    row_totals: list[FigureOut]
    column_totals: list[FigureOut]
    total: FigureOut = Field(description="participants who answered both questions")
    method: str
    suppressed: list[SuppressedOut]


class RetentionOut(BaseModel):
    tenant_id: str
    min_group_size: int
    dialogue_ids: list[str]
    cells: list[list[FigureOut]] = Field(
        description="[i][j]: participants who answered in both dialogues; [i][i]: in dialogue i")
    suppressed: list[SuppressedOut]


class ContributionOut(BaseModel):
    platform: Platform
    form_factor: FormFactor


class ContributionDataOut(BaseModel):
    """What analytics holds about a participant, for their access request."""

    store: str
    categories: list[str]
    records: list[ContributionOut]
    objected: bool = Field(description="whether they objected to analysis (and so count in no figure)")


AUDIENCE = "tessera-analytics"


def build_router(store: AnalyticsStore, gateway_public_key: str | None = None) -> APIRouter:
    router = APIRouter(tags=["tenant"])

    # The tenant's API key, or a console account's assertion (figures: not privacy officers).
    tenant_key = tenant_caller(store.access, gateway_public_key, AUDIENCE, ("owner", "editor", "analyst"),
                               scope="figures")
    router.include_router(key_use_router(store.access, gateway_public_key, AUDIENCE))

    @router.get("/v1/tenants/{tenant_id}/stats/devices", responses=errors(404))
    async def device_stats(tenant_id: Annotated[str, Depends(tenant_key)]) -> DeviceStatsOut:
        k = await store.min_group_size(tenant_id)
        if k is None:  # authorised a moment ago, so only a race with erasure of the tenant
            raise problem(404, "tenant_not_found", "unknown tenant")
        figures = domain.device_figures(await store.device_counts(tenant_id), k)
        return DeviceStatsOut(
            tenant_id=tenant_id,
            min_group_size=figures.k,
            total=figures.total,
            total_suppressed=figures.total_suppressed,
            cells=[CellOut(**cell.__dict__) for cell in figures.cells],
        )

    async def group_size(tenant_id: str) -> int:
        k = await store.min_group_size(tenant_id)
        if k is None:  # authorised a moment ago, so only a race with erasure of the tenant
            raise problem(404, "tenant_not_found", "unknown tenant")
        return k

    @router.get("/v1/tenants/{tenant_id}/dialogues")
    async def dialogues(tenant_id: Annotated[str, Depends(tenant_key)]) -> DialoguesOut:
        """The tenant's dialogues that analytics knows (from ``dialogue-changed``)."""
        found = await store.tenant_dialogues(tenant_id)
        return DialoguesOut(tenant_id=tenant_id, dialogues=[
            DialogueSummaryOut(dialogue_id=d["_id"], title=d["title"], status=d["status"]) for d in found])

    @router.get("/v1/tenants/{tenant_id}/dialogues/{dialogue_id}/figures", responses=errors(404))
    async def dialogue_figures(tenant_id: Annotated[str, Depends(tenant_key)],
                               dialogue_id: DialogueIdPath) -> DialogueFiguresOut:
        """Per question: respondents, answers, choices, scale, days, device types; every
        figure about fewer than k participants hidden, with the reason. Grouped from
        the dialogue's answer rows as they are now, in one query."""
        dialogue = await store.dialogue(tenant_id, dialogue_id)
        if dialogue is None:  # another tenant's dialogue looks exactly like a missing one
            raise problem(404, "dialogue_not_found", "this tenant has no such dialogue")
        k = await group_size(tenant_id)
        counters = await store.question_counters(tenant_id, dialogue_id)
        questions = [domain.question_figures(q, counters.get(q["question_id"]), k) for q in dialogue["questions"]]
        return DialogueFiguresOut(
            tenant_id=tenant_id, dialogue_id=dialogue_id, title=dialogue["title"], status=dialogue["status"],
            min_group_size=k, questions=[question_out(q) for q in questions],
            suppressed=[SuppressedOut(question_id=q.question_id, figure=figure, key=cell.key, reason=cell.reason or "")
                        for q in questions for figure, cell in q.suppressed()],
        )

    @router.get("/v1/tenants/{tenant_id}/analyses/cross-tab", responses=errors(404))
    async def cross_tab(
        tenant_id: Annotated[str, Depends(tenant_key)],
        row_question_id: Annotated[str, Query(pattern=SAFE_ID, description="a single-choice or scale question")],
        column_question_id: Annotated[str, Query(pattern=SAFE_ID, description="another, in any dialogue")],
    ) -> CrossTabOut:
        """How the participants who gave each answer to one question answered another,
        across the tenant's dialogues, linked by their pseudonymous participant ID."""
        if row_question_id == column_question_id:
            raise problem(422, "same_question", "a cross-tab needs two different questions")
        questions = await store.tenant_questions(tenant_id)
        pair = []
        for question_id in (row_question_id, column_question_id):
            question = questions.get(question_id)
            if question is None:
                raise problem(404, "question_not_found", f"this tenant has no question {question_id}")
            if question["kind"] not in domain.ONE_VALUE_KINDS:
                raise problem(422, "question_kind", "a cross-tab pairs questions where each participant gives one "
                                                    f"value (single choice or scale), not {question['kind']}")
            pair.append(question)
        k = await group_size(tenant_id)
        rows, columns = pair
        row_keys, column_keys = value_keys(rows), value_keys(columns)
        counts = await store.cross_counts(tenant_id, (row_question_id, rows["kind"]),
                                          (column_question_id, columns["kind"]))
        table = domain.cross_tab(counts, row_keys, column_keys, k)
        hidden = [("cell", f"{r}|{c}", cell) for r, row in zip(table.row_keys, table.cells, strict=True)
                  for c, cell in zip(table.col_keys, row, strict=True)]
        hidden += [("row_total", cell.key, cell) for cell in table.row_totals]
        hidden += [("column_total", cell.key, cell) for cell in table.col_totals] + [("total", "total", table.total)]
        return CrossTabOut(
            tenant_id=tenant_id, min_group_size=k, rows=question_ref(rows), columns=question_ref(columns),
            cells=[figures(row) for row in table.cells], row_totals=figures(table.row_totals),
            column_totals=figures(table.col_totals), total=FigureOut.of(table.total), method=table.method,
            suppressed=[SuppressedOut(figure=figure, key=key, reason=cell.reason or "")
                        for figure, key, cell in hidden if cell.suppressed],
        )

    @router.get("/v1/tenants/{tenant_id}/analyses/retention", responses=errors(404))
    async def retention(
        tenant_id: Annotated[str, Depends(tenant_key)],
        dialogue_id: Annotated[list[str] | None, Query(description="2 to 20 of the tenant's dialogues; "
                                                                   "default: its first 20")] = None,
    ) -> RetentionOut:
        """How many participants of each dialogue took part in each other one."""
        known = [d["_id"] for d in await store.tenant_dialogues(tenant_id)]
        chosen = dialogue_id if dialogue_id is not None else known[:MAX_RETENTION_DIALOGUES]
        if not 1 <= len(chosen) <= MAX_RETENTION_DIALOGUES or len(set(chosen)) != len(chosen):
            raise problem(422, "dialogue_ids", f"name 1 to {MAX_RETENTION_DIALOGUES} different dialogues")
        unknown = [d for d in chosen if d not in known]
        if unknown:
            raise problem(404, "dialogue_not_found", "this tenant has no such dialogue")
        k = await group_size(tenant_id)
        participants, both = await store.dialogue_overlap(tenant_id, chosen)
        table = domain.overlap(participants, both, chosen, k)
        return RetentionOut(
            tenant_id=tenant_id, min_group_size=k, dialogue_ids=chosen, cells=[figures(row) for row in table.cells],
            suppressed=[SuppressedOut(figure="overlap", key=f"{a}|{b}", reason=cell.reason or "")
                        for a, row in zip(chosen, table.cells, strict=True)
                        for b, cell in zip(chosen, row, strict=True) if cell.suppressed],
        )

    return router


def value_keys(question: dict[str, Any]) -> list[str]:
    if question["kind"] == "scale":
        return [str(point) for point in range(question["scale_min"], question["scale_max"] + 1)]
    return [choice["key"] for choice in question["choices"]]


def question_ref(question: dict[str, Any]) -> QuestionRefOut:
    labels = {c["key"]: c["label"] for c in question.get("choices", [])}
    return QuestionRefOut(
        question_id=question["question_id"], dialogue_id=question["dialogue_id"], kind=question["kind"],
        prompt=question["prompt"],
        values=[FigureOut(key=key, label=labels.get(key), value=None, suppressed=False) for key in value_keys(question)],
    )


def question_out(q: domain.QuestionFigures) -> QuestionFiguresOut:
    scale = None
    if q.scale is not None and q.scale_range is not None:
        scale = ScaleOut(min=q.scale_range[0], max=q.scale_range[1], histogram=figures(q.scale.histogram),
                         mean=FigureOut.of(q.scale.mean), median=FigureOut.of(q.scale.median))
    return QuestionFiguresOut(
        question_id=q.question_id, kind=q.kind, prompt=q.prompt, respondents=FigureOut.of(q.respondents),
        answers=FigureOut.of(q.answers), choices=None if q.choices is None else figures(q.choices), scale=scale,
        over_time=figures(q.over_time), devices=figures(q.devices),
    )


def build_internal_router(store: AnalyticsStore, internal_token: str, marker_key: str) -> APIRouter:
    """Only other Tessera services reach these, with the internal token."""
    router = APIRouter(prefix="/internal/v1", tags=["internal"],
                       dependencies=[Depends(internal_caller(internal_token))])

    @router.get("/tenants/{tenant_id}/participants/{participant_id}/data")
    async def participant_data(tenant_id: TenantIdPath, participant_id: ParticipantIdPath) -> ContributionDataOut:
        """The participant's contribution to this tenant's figures, and whether they
        objected; another tenant's participant has none and did not."""
        found = await store.contribution(tenant_id, participant_id)
        return ContributionDataOut(
            store=STORE_NAME, categories=["device_facts", "aggregates"],
            records=[] if found is None else [ContributionOut(platform=found["platform"],
                                                              form_factor=found["form_factor"])],
            objected=await store.is_objected(erased_marker(marker_key, participant_id), tenant_id),
        )

    return router
