"""The dialogue service's HTTP routes.

Tenant routes (``/v1/tenants/{tenant_id}/...``, tenant API key): dialogues, their
lifecycle, the answers by participant ID, and the settings this service owns.
Participant routes (``/v1/me/...``): reached only through the enrolment gateway, which
checks the device token and forwards a signed participant assertion.

Routes parse and reply; the rules are in :mod:`.domain`, the writes in :mod:`.store`,
and the few steps that tie them together (an answer's idempotency, screening,
encryption and event) in :class:`Answers`.
"""


import asyncio
import random
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse
from opentelemetry import metrics
from pydantic import BaseModel, Field, JsonValue, StringConstraints

from tessera_common.crypto import UnreadableText, open_text, seal_text, sealed_bytes, sealed_from_bytes
from tessera_common.datakeys import DataKey, DataKeyClient, KeyServiceUnavailable, ParticipantErased
from tessera_common.events import (
    AnswerChanged,
    AnswerChangedData,
    AnswerSubmitted,
    AnswerSubmittedData,
    ChoiceDefinition,
    DialogueChanged,
    DialogueChangedData,
    PiiPolicy,
    QuestionDefinition,
    QuestionKind,
    TenantAnswer,
    TenantAnswerData,
    TenantDialogue,
    TenantSettingsChanged,
    TenantSettingsChangedData,
    Topics,
)
from tessera_common.tenant_access import key_use_router
from tessera_common.http import (
    IsoDatetime,
    StrictBody,
    whole_number,
    TenantIdPath,
    tenant_caller,
    errors,
    internal_caller,
    problem,
)
from tessera_common.identity import Participant, participant_dependency
from tessera_common.logs import get_logger
from tessera_common.postgres import now_ms
from tessera_common.screening import Finding
from tessera_common.secrets import erased_marker, new_id
from tessera_dialogue import domain
from tessera_dialogue.store import STORE_NAME, DialogueStore, ParticipantErasedError, TooManyIdeas

log = get_logger(__name__)
SOURCE = "tessera/dialogue"
AUDIENCE = "tessera-dialogue"
TEXT_PURPOSE = "answer-text"
#: How many ideas one participant may leave on one prompt.
MAX_IDEAS_PER_PARTICIPANT = 20

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", pattern=r"^[A-Za-z0-9_.:-]{8,100}$",
           description="repeat a request with the same key and it changes nothing"),
]

NO_DIALOGUE = errors(404, e404="no such dialogue here (`dialogue_not_found`); another tenant's alike")
DIALOGUE_CHANGE = errors(404, 409, e409="a move or change the dialogue's state does not allow (`bad_transition`, "
                                       "`has_answers`, `archived`, `no_questions`, `concurrent_change`)")
ANSWER_WRITE = errors(404, 409, 410, e404="no such dialogue, question or answer of this participant",
                      e409="the dialogue does not take answers now, the key was used for another value, too many "
                           "ideas, or a concurrent change", e410="the participant was erased")
ANSWER_WITHDRAWAL = errors(404, 409, e409="the dialogue does not take answers now, or a concurrent change")

#: Which refusals are a conflict with the current state (409) rather than bad input (422).
CONFLICTS = {
    "bad_transition", "has_answers", "archived", "idempotency_key_reused", "dialogue_not_open",
    "no_questions", "answer_first", "too_many_ideas", "concurrent_change",
}


def participant_erased() -> Exception:
    return problem(410, "participant_erased", "this participant has been erased")


def keys_unavailable() -> Exception:
    """The rights service (the data keys) did not answer: no text is sealed or opened
    without them, and nothing is stored unsealed instead."""
    return problem(503, "temporarily_unavailable", "a backing service is unavailable; retry shortly",
                   {"Retry-After": "5"})


def refused(violation: domain.RuleViolation) -> Exception:
    if isinstance(violation, domain.PersonalDataRejected):
        return PersonalDataProblem(violation)
    return problem(409 if violation.code in CONFLICTS else 422, violation.code, violation.message)


class PersonalDataProblem(Exception):
    """422 that also says what was found where, so the app can point at it."""

    def __init__(self, violation: domain.PersonalDataRejected) -> None:
        self.body = {
            "detail": {
                "code": violation.code,
                "message": violation.message,
                "findings": [_finding(f) for f in violation.findings],
            }
        }


async def personal_data_problem(_: Any, exc: PersonalDataProblem) -> JSONResponse:
    return JSONResponse(exc.body, status_code=422)


# --- request and response bodies ---------------------------------------------


Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
ChoiceKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,40}$")]


class ChoiceIn(StrictBody):
    key: ChoiceKey
    label: Text


class ScaleIn(StrictBody):
    min: whole_number(-100, 100)
    max: whole_number(-100, 100)
    labels: dict[Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,3}$")], Text] = Field(
        default_factory=dict, description="point of the scale → label, e.g. {\"1\": \"not at all\"}",
        json_schema_extra={"additionalProperties": False},  # a key is a point of the scale, nothing else
    )


class QuestionIn(StrictBody):
    question_id: str | None = Field(default=None, description="keep an existing question's ID when editing")
    kind: QuestionKind
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=1000, strip_whitespace=True)]
    choices: list[ChoiceIn] = Field(default_factory=list, max_length=50)
    scale: ScaleIn | None = None


class DialogueIn(StrictBody):
    title: Text
    intro: Annotated[str, StringConstraints(max_length=5000)] = ""
    opens_at: IsoDatetime | None = None
    closes_at: IsoDatetime | None = None
    questions: list[QuestionIn] = Field(default_factory=list, max_length=100)


class DialoguePatch(StrictBody):
    title: Text | None = None
    intro: Annotated[str, StringConstraints(max_length=5000)] | None = None
    opens_at: IsoDatetime | None = None
    closes_at: IsoDatetime | None = None
    questions: list[QuestionIn] | None = Field(default=None, max_length=100)


class ChoiceOut(BaseModel):
    key: str
    label: str


class ScaleOut(BaseModel):
    min: int
    max: int
    labels: dict[str, str]


class QuestionOut(BaseModel):
    question_id: str
    kind: QuestionKind
    prompt: str
    choices: list[ChoiceOut] = []
    scale: ScaleOut | None = None


class DialogueOut(BaseModel):
    dialogue_id: str
    title: str
    intro: str
    status: domain.DialogueStatus
    opens_at: datetime | None
    closes_at: datetime | None
    questions: list[QuestionOut]
    has_answers: bool
    version: int
    created_at: datetime
    updated_at: datetime


class DialogueList(BaseModel):
    dialogues: list[DialogueOut]
    limit: int
    offset: int


class SettingsIn(StrictBody):
    min_group_size: whole_number(domain.MIN_GROUP_SIZE_FLOOR, 1000) | None = None
    pii_policy: PiiPolicy | None = None


class SettingsOut(BaseModel):
    min_group_size: int
    pii_policy: PiiPolicy
    revision: int


class FindingOut(BaseModel):
    kind: str
    start: int = Field(description="character offset into the text as sent")
    end: int


class ScreeningOut(BaseModel):
    action: Literal["none", "flagged", "redacted"]
    findings: list[FindingOut]


class ScreeningIn(StrictBody):
    text: Annotated[str, StringConstraints(min_length=1, max_length=domain.MAX_TEXT_CHARS)] = Field(
        description="a text the participant is typing (kept nowhere)")


class ScreeningPreviewOut(BaseModel):
    findings: list[FindingOut] = Field(description="personal data found, as spans into the text as sent")
    policy: domain.PiiPolicy = Field(description="what the organisation does with a text that has findings: "
                                                 "`warn` (kept, flagged, others see it redacted), `redact` (kept "
                                                 "with the spans replaced) or `reject` (refused)")


class AnswerIn(StrictBody):
    value: JsonValue = Field(description="text, a choice key, a list of choice keys, or a whole number")


class AnswerOut(BaseModel):
    answer_id: str
    dialogue_id: str
    question_id: str
    kind: QuestionKind
    value: JsonValue = Field(description="null once withdrawn")
    version: int
    submitted_at: datetime
    updated_at: datetime
    screening: ScreeningOut


class TenantAnswerOut(AnswerOut):
    participant_id: str


class AnswerList(BaseModel):
    answers: list[AnswerOut]


class TenantAnswerList(BaseModel):
    answers: list[TenantAnswerOut]
    limit: int
    offset: int


class ExportedAnswerOut(BaseModel):
    """One answer as its participant receives it with their data: what they were
    asked, in which dialogue, and what is kept of their answer."""

    answer_id: str
    dialogue_id: str
    dialogue_title: str | None
    question_id: str
    question_prompt: str | None
    question_kind: QuestionKind
    value: JsonValue
    screening_action: Literal["none", "flagged", "redacted"]
    submitted_at: datetime
    updated_at: datetime
    version: int


class AnswerExportOut(BaseModel):
    store: str
    categories: list[str]
    records: list[ExportedAnswerOut]


class ClosedDialogueOut(BaseModel):
    dialogue_id: str
    closed_at: datetime


class ClosedDialogueList(BaseModel):
    dialogues: list[ClosedDialogueOut]


class ParticipantIdList(BaseModel):
    participant_ids: list[str]


class MyDialogueOut(BaseModel):
    dialogue_id: str
    title: str
    intro: str
    opens_at: datetime | None
    closes_at: datetime | None
    accepting_answers: bool
    questions: list[QuestionOut]
    my_answers: list[AnswerOut]


class MyDialogueSummary(BaseModel):
    dialogue_id: str
    title: str
    closes_at: datetime | None
    questions: int


class MyDialogueList(BaseModel):
    dialogues: list[MyDialogueSummary]


# --- conversions -------------------------------------------------------------


def _finding(f: Finding) -> dict[str, Any]:
    return {"kind": f.kind, "start": f.start, "end": f.end}


def question_of(doc: dict[str, Any]) -> domain.Question:
    return domain.Question(
        question_id=doc["question_id"],
        kind=doc["kind"],
        prompt=doc["prompt"],
        choices=tuple(domain.Choice(c["key"], c["label"]) for c in doc.get("choices", [])),
        scale_min=doc.get("scale_min"),
        scale_max=doc.get("scale_max"),
        scale_labels={int(k): v for k, v in (doc.get("scale_labels") or {}).items()},
    )


def question_doc(question: domain.Question) -> dict[str, Any]:
    return {
        "question_id": question.question_id,
        "kind": question.kind,
        "prompt": question.prompt,
        "choices": [{"key": c.key, "label": c.label} for c in question.choices],
        "scale_min": question.scale_min,
        "scale_max": question.scale_max,
        "scale_labels": {str(k): v for k, v in question.scale_labels.items()},
    }


def for_tenant(event: DialogueChanged) -> TenantDialogue:
    """The tenant's own copy of a dialogue's change, for its topic."""
    return TenantDialogue(source=SOURCE, subject=event.subject, tenant_id=event.tenant_id, data=event.data)


def dialogue_changed(dialogue: dict[str, Any]) -> DialogueChanged:
    """The dialogue's definition as it stands after a change (``dialogue["version"]``
    is already the new one): for analytics' labels and its lists of every choice."""
    questions = [QuestionDefinition(
        question_id=q["question_id"], kind=q["kind"], prompt=q["prompt"],
        choices=[ChoiceDefinition(key=c["key"], label=c["label"]) for c in q.get("choices", [])],
        scale_min=q.get("scale_min"), scale_max=q.get("scale_max"),
    ) for q in dialogue["questions"]]
    return DialogueChanged(
        source=SOURCE, subject=dialogue["_id"], tenant_id=dialogue["tenant_id"],
        data=DialogueChangedData(dialogue_id=dialogue["_id"], title=dialogue["title"], status=dialogue["status"],
                                 revision=dialogue["version"], questions=questions,
                                 changed_at=dialogue["updated_at"]),
    )


def question_out(doc: dict[str, Any]) -> QuestionOut:
    scale = None
    if doc["kind"] == "scale":
        scale = ScaleOut(min=doc["scale_min"], max=doc["scale_max"], labels=doc.get("scale_labels") or {})
    return QuestionOut(
        question_id=doc["question_id"], kind=doc["kind"], prompt=doc["prompt"],
        choices=[ChoiceOut(**c) for c in doc.get("choices", [])], scale=scale,
    )


def dialogue_out(doc: dict[str, Any]) -> DialogueOut:
    return DialogueOut(
        dialogue_id=doc["_id"], title=doc["title"], intro=doc["intro"], status=doc["status"],
        opens_at=doc.get("opens_at"), closes_at=doc.get("closes_at"),
        questions=[question_out(q) for q in doc["questions"]], has_answers=doc["has_answers"],
        version=doc["version"], created_at=doc["created_at"], updated_at=doc["updated_at"],
    )


def answer_value(doc: dict[str, Any]) -> JsonValue:
    if doc.get("withdrawn_at") is not None:
        return None
    if doc["kind"] in ("open_text", "idea"):
        return doc.get("text")
    if doc["kind"] == "single_choice":
        return doc["choices"][0]
    if doc["kind"] == "multiple_choice":
        return list(doc["choices"])
    return doc.get("scale_value")


def answer_out(doc: dict[str, Any], findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "answer_id": doc["_id"], "dialogue_id": doc["dialogue_id"], "question_id": doc["question_id"],
        "kind": doc["kind"], "value": answer_value(doc), "version": doc["version"],
        "submitted_at": doc["submitted_at"], "updated_at": doc["updated_at"],
        "screening": {
            "action": doc.get("screening_action", "none"),
            "findings": findings if findings is not None else doc.get("findings", []),
        },
    }


def exported_answer(doc: dict[str, Any], dialogue: dict[str, Any] | None) -> ExportedAnswerOut:
    question = next((q for q in (dialogue or {}).get("questions", []) if q["question_id"] == doc["question_id"]),
                    None)
    return ExportedAnswerOut(
        answer_id=doc["_id"], dialogue_id=doc["dialogue_id"],
        dialogue_title=dialogue["title"] if dialogue else None, question_id=doc["question_id"],
        question_prompt=question["prompt"] if question else None, question_kind=doc["kind"],
        value=answer_value(doc), screening_action=doc.get("screening_action", "none"),
        submitted_at=doc["submitted_at"], updated_at=doc["updated_at"], version=doc["version"],
    )


def build_questions(items: list[QuestionIn], existing_ids: set[str]) -> list[dict[str, Any]]:
    questions = []
    for item in items:
        if item.question_id is not None and item.question_id not in existing_ids:
            raise problem(422, "unknown_question_id", "question_id must name one of this dialogue's questions")
        scale = item.scale
        question = domain.Question(
            question_id=item.question_id or new_id("q"),
            kind=item.kind,
            prompt=item.prompt,
            choices=tuple(domain.Choice(c.key, c.label) for c in item.choices),
            scale_min=scale.min if scale else None,
            scale_max=scale.max if scale else None,
            scale_labels={int(k): v for k, v in scale.labels.items()} if scale else {},
        )
        questions.append(question_doc(question))
    if len({q["question_id"] for q in questions}) != len(questions):
        raise problem(422, "duplicate_question_id", "each question at most once")
    return questions


def check_window(opens_at: datetime | None, closes_at: datetime | None) -> None:
    if opens_at is not None and closes_at is not None and closes_at <= opens_at:
        raise problem(422, "bad_window", "closes_at must be after opens_at")


# --- answers: the steps that tie rules, store, keys and events together ------------


class Answers:
    """Submitting, changing and withdrawing an answer.

    Each is read, checked and prepared outside any transaction (the data key comes
    from the rights service over HTTP), then written with its event in one unit of
    work that holds only if nothing it was based on changed: concurrent requests for
    the same answer are serialised by the answer's ``version`` (a write against a
    stale read fails and is retried from a fresh read)."""

    def __init__(self, store: DialogueStore, keys: DataKeyClient, marker_key: str) -> None:
        self.store = store
        self.keys = keys
        self.marker_key = marker_key
        self.written = metrics.get_meter("tessera.dialogue").create_counter(
            "tessera_dialogue_answers", unit="1", description="answers written, by question kind and screening action"
        )

    async def open_dialogue(self, participant: Participant, dialogue_id: str) -> dict[str, Any]:
        return self._open(await self.visible_dialogue(participant, dialogue_id))

    async def visible_dialogue(self, participant: Participant, dialogue_id: str) -> dict[str, Any]:
        """A dialogue of the participant's own tenant that participants may see."""
        return self._visible(await self.store.dialogue(participant.tenant_id, dialogue_id))

    @staticmethod
    def _visible(dialogue: dict[str, Any] | None) -> dict[str, Any]:
        if dialogue is None or dialogue["status"] not in ("published", "closed"):
            raise problem(404, "dialogue_not_found", "no such dialogue")
        return dialogue

    @staticmethod
    def _open(dialogue: dict[str, Any]) -> dict[str, Any]:
        if not domain.accepts_answers(dialogue["status"], dialogue.get("opens_at"), dialogue.get("closes_at"),
                                      now_ms()):
            raise problem(409, "dialogue_not_open", "this dialogue does not take answers now")
        return dialogue

    async def own_answer(self, participant: Participant, answer_id: str) -> dict[str, Any]:
        """A current answer of this participant in their tenant; anything else is 404."""
        found = await self.store.answer(participant.tenant_id, answer_id)
        if (found is None or found["participant_id"] != participant.participant_id
                or found["tenant_id"] != participant.tenant_id or found.get("withdrawn_at")):
            raise problem(404, "answer_not_found", "no such answer")
        return found

    @staticmethod
    def question_in(dialogue: dict[str, Any], question_id: str) -> dict[str, Any]:
        for question in dialogue["questions"]:
            if question["question_id"] == question_id:
                return question
        raise problem(404, "question_not_found", "this dialogue has no such question")

    async def policy(self, tenant_id: str) -> tuple[PiiPolicy, int]:
        tenant = await self.store.tenant(tenant_id) or {}
        return (tenant.get("pii_policy", domain.DEFAULT_PII_POLICY),
                tenant.get("min_group_size", domain.DEFAULT_MIN_GROUP_SIZE))

    async def submit(
        self, participant: Participant, dialogue_id: str, question_id: str, value: JsonValue,
        idempotency_key: str | None, *, idea: bool, answer_id: str | None = None, rectification: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Create or replace an answer (or add an idea): (HTTP status, answer body).

        ``rectification``: a change on the participant's behalf, which the right to
        rectification allows after the dialogue closed too; it only ever changes a
        current answer, so one erased or withdrawn meanwhile is not brought back."""
        if answer_id is None:
            if idea:
                answer_id = (domain.idea_id_for(participant.participant_id, question_id, idempotency_key)
                             if idempotency_key else new_id("i"))
            else:
                answer_id = domain.answer_id_for(participant.participant_id, question_id)
        key: DataKey | None = None
        for _ in range(3):
            dialogue, existing, tenant = await self.store.answer_context(participant.tenant_id, dialogue_id, answer_id)
            dialogue = self._visible(dialogue)
            if not rectification:
                self._open(dialogue)
            question_doc_ = self.question_in(dialogue, question_id)
            question = question_of(question_doc_)
            if idea != (question.kind == "idea"):
                raise problem(422, "wrong_route", "ideas are posted to .../ideas; other answers are PUT to .../answer")
            try:
                answer = domain.validate_answer(question, value)
            except domain.RuleViolation as violation:
                raise refused(violation) from None
            # Free text's fingerprint is keyed with the participant's data key, the key the
            # text is sealed under too: fetched once for both, and for every retry here.
            if answer.text is not None and key is None:
                key = await self._key(participant)
            fingerprint = domain.value_fingerprint(value, key.key if answer.text is not None else None)
            someone_elses = existing is not None and existing["participant_id"] != participant.participant_id
            gone = rectification and (existing is None or existing.get("withdrawn_at") is not None)
            if someone_elses or gone:
                raise problem(404, "answer_not_found", "no such answer")
            try:
                if existing is not None and domain.check_idempotent_replay(
                    existing.get("idempotency_key"), existing.get("fingerprint"), idempotency_key, fingerprint
                ):
                    return 200, answer_out((await self.opened(participant.tenant_id, [existing]))[0])
            except domain.RuleViolation as violation:
                raise refused(violation) from None
            if existing is None and idea and await self.store.ideas_of(
                participant.tenant_id, participant.participant_id, dialogue_id, question_id
            ) >= MAX_IDEAS_PER_PARTICIPANT:
                raise problem(409, "too_many_ideas", f"at most {MAX_IDEAS_PER_PARTICIPANT} ideas per prompt")
            policy = (tenant or {}).get("pii_policy", domain.DEFAULT_PII_POLICY)
            screened = None
            if answer.text is not None:
                try:
                    screened = domain.apply_pii_policy(answer.text, policy)
                except domain.RuleViolation as violation:
                    raise refused(violation) from None
            # The dialogue's first answer freezes its questions, only if they are still
            # those it was validated against; otherwise everything is read again.
            freeze_at = None if dialogue["has_answers"] else dialogue["version"]
            result = await self._write(participant, dialogue_id, question, answer_id, answer, screened,
                                       existing, idempotency_key, fingerprint, freeze_at, key, idea=idea)
            if result is None:
                continue  # the answer or the questions changed meanwhile: start from a fresh read
            return result
        raise problem(409, "concurrent_change", "this answer changed while being saved; send it again")

    async def rectify(self, participant: Participant, answer_id: str, value: JsonValue) -> dict[str, Any]:
        """Change a participant's answer on their behalf (rights request): validated and
        screened like their own change, published as an edit."""
        if await self._erased(participant):
            raise participant_erased()
        found = await self.own_answer(participant, answer_id)
        _, body = await self.submit(participant, found["dialogue_id"], found["question_id"], value, None,
                                    idea=found["kind"] == "idea", answer_id=answer_id, rectification=True)
        return body

    async def _key(self, participant: Participant) -> DataKey:
        try:
            return await self.keys.key_for(participant.tenant_id, participant.participant_id)
        except ParticipantErased:
            raise participant_erased() from None
        except KeyServiceUnavailable:
            raise keys_unavailable() from None

    async def opened(self, tenant_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` with their free text opened (``text``), in memory only, with the
        keys of all their participants fetched in one call (or from the cache). A
        participant whose key is gone (erased meanwhile) has nothing to open: None."""
        sealed = [row for row in rows if row.get("text_sealed") is not None]
        keys: dict[str, DataKey] = {}
        if sealed:
            try:
                keys = await self.keys.keys_for(tenant_id, (row["participant_id"] for row in sealed))
            except KeyServiceUnavailable:
                raise keys_unavailable() from None
        for row in rows:
            row["text"] = None
            key = keys.get(row["participant_id"]) if row.get("text_sealed") is not None else None
            if key is None:
                continue
            try:
                row["text"] = open_text(sealed_from_bytes(row["text_key_id"], row["text_sealed"]), key.key,
                                        row["participant_id"], TEXT_PURPOSE)
            except UnreadableText:
                log.warning("stored_text_unreadable")  # never expected: a key of another ID, or a damaged row
        return rows

    async def _write(
        self, participant: Participant, dialogue_id: str, question: domain.Question, answer_id: str,
        answer: domain.Answer, screened: domain.Screened | None, existing: dict[str, Any] | None,
        idempotency_key: str | None, fingerprint: str, freeze_at: int | None, key: DataKey | None, *, idea: bool,
    ) -> tuple[int, dict[str, Any]] | None:
        now = now_ms()
        stored_text = screened.stored_text if screened else None
        findings = [_finding(f) for f in screened.findings] if screened else []
        kinds = sorted({f["kind"] for f in findings})
        sealed = (seal_text(stored_text, key.key, key.key_id, participant.participant_id, TEXT_PURPOSE)
                  if stored_text is not None and key is not None else None)
        fields: dict[str, Any] = {
            "kind": question.kind,
            "text_key_id": sealed.key_id if sealed else None,
            "text_sealed": sealed_bytes(sealed) if sealed else None,
            "choices": list(answer.choices),
            "scale_value": answer.scale_value,
            "screening_action": screened.action if screened else "none",
            # Spans only where they point into the stored text (warn); after redaction
            # the spans of the text as sent no longer mean anything in what is kept.
            "findings": findings if screened and screened.action == "flagged" else [],
            "screening_kinds": kinds,
            "idempotency_key": idempotency_key,
            "fingerprint": fingerprint,
            "updated_at": now,
            "withdrawn_at": None,
        }
        common = dict(
            participant_id=participant.participant_id, dialogue_id=dialogue_id, question_id=question.question_id,
            answer_id=answer_id, question_kind=question.kind, choices=list(answer.choices),
            scale_value=answer.scale_value, text=sealed, screening_kinds=kinds,
            platform=participant.platform, form_factor=participant.form_factor,
        )
        version = 1 if existing is None else existing["version"] + 1
        tenant_event = TenantAnswer(source=SOURCE, subject=answer_id, tenant_id=participant.tenant_id, data=TenantAnswerData(
            participant_id=participant.participant_id, dialogue_id=dialogue_id, question_id=question.question_id,
            answer_id=answer_id, question_kind=question.kind, change="submitted" if existing is None else "edited",
            choices=list(answer.choices), scale_value=answer.scale_value, text=sealed, screening_kinds=kinds,
            version=version, at=now))
        if existing is None:
            stored = {
                "_id": answer_id, "tenant_id": participant.tenant_id, "participant_id": participant.participant_id,
                "dialogue_id": dialogue_id, "question_id": question.question_id, "version": 1,
                "submitted_at": now, **fields,
            }
            event: AnswerSubmitted | AnswerChanged = AnswerSubmitted(
                source=SOURCE, subject=answer_id, tenant_id=participant.tenant_id,
                data=AnswerSubmittedData(**common, version=1, submitted_at=now))
            topic, status_code = Topics.ANSWER_SUBMITTED, 201
        else:
            stored = {**existing, **fields, "version": version}
            event = AnswerChanged(source=SOURCE, subject=answer_id, tenant_id=participant.tenant_id,
                                  data=AnswerChangedData(**common, change="edited", version=version, changed_at=now))
            topic, status_code = Topics.ANSWER_CHANGED, 200
        try:
            saved = await self.store.save_answer(
                stored, expected_version=None if existing is None else existing["version"],
                marker=self._marker(participant), freeze_dialogue_at=freeze_at, event=event, topic=topic,
                max_per_question=MAX_IDEAS_PER_PARTICIPANT if idea and existing is None else None,
                tenant_event=tenant_event,
            )
        except ParticipantErasedError:
            raise participant_erased() from None
        except TooManyIdeas:
            raise problem(409, "too_many_ideas", f"at most {MAX_IDEAS_PER_PARTICIPANT} ideas per prompt") from None
        if not saved:
            return None
        self.written.add(1, {"kind": question.kind, "screening": fields["screening_action"]})
        # The response shows the spans into the text as sent, whatever the policy kept;
        # the text itself only from memory (the store has it sealed).
        return status_code, answer_out({**stored, "text": stored_text}, findings)

    async def withdraw(self, participant: Participant, answer_id: str) -> None:
        for _ in range(3):
            existing = await self.store.answer(participant.tenant_id, answer_id)
            if (existing is None or existing["participant_id"] != participant.participant_id
                    or existing.get("withdrawn_at") is not None):
                raise problem(404, "answer_not_found", "no such answer")
            await self.open_dialogue(participant, existing["dialogue_id"])
            now = now_ms()
            event = AnswerChanged(
                source=SOURCE, subject=answer_id, tenant_id=participant.tenant_id,
                data=AnswerChangedData(
                    participant_id=participant.participant_id, dialogue_id=existing["dialogue_id"],
                    question_id=existing["question_id"], answer_id=answer_id, question_kind=existing["kind"],
                    change="withdrawn", version=existing["version"] + 1, changed_at=now,
                    platform=participant.platform, form_factor=participant.form_factor,
                ),
            )
            tenant_event = TenantAnswer(source=SOURCE, subject=answer_id, tenant_id=participant.tenant_id,
                                        data=TenantAnswerData(
                participant_id=participant.participant_id, dialogue_id=existing["dialogue_id"],
                question_id=existing["question_id"], answer_id=answer_id, question_kind=existing["kind"],
                change="withdrawn", version=existing["version"] + 1, at=now))
            if await self.store.withdraw_answer(participant.tenant_id, answer_id, existing["version"], now, event,
                                                tenant_event):
                return
        raise problem(409, "concurrent_change", "this answer changed while being withdrawn; try again")

    def _marker(self, participant: Participant) -> str:
        return erased_marker(self.marker_key, participant.participant_id)

    async def _erased(self, participant: Participant) -> bool:
        return await self.store.is_erased(participant.tenant_id, self._marker(participant))


async def seal_legacy_texts(store: DialogueStore, answers: Answers, *, batch: int = 200,
                            retry_seconds: float = 5.0) -> int:
    """Seal the free text of rows written before texts were sealed at rest (migration
    0002), tenant by tenant, under each participant's data key; then nothing in the
    store is plaintext. Runs once at start, in the background; waits out a rights
    service that does not answer. Returns how many rows it sealed."""
    sealed = 0
    while True:
        try:
            for tenant_id in await store.tenants_with_plaintext():
                while rows := await store.plaintext_answers(tenant_id, batch):
                    for row in rows:
                        participant = Participant(participant_id=row["participant_id"], tenant_id=tenant_id)
                        try:
                            key = await answers.keys.key_for(tenant_id, row["participant_id"])
                        except ParticipantErased:
                            await store.drop_plaintext(tenant_id, row["answer_id"])
                            continue
                        text = seal_text(row["text"], key.key, key.key_id, participant.participant_id, TEXT_PURPOSE)
                        sealed += await store.seal_plaintext(tenant_id, row["answer_id"], row["text"], key.key_id,
                                                             sealed_bytes(text))
            if sealed:
                log.info("legacy_texts_sealed", answers=sealed)
            return sealed
        except KeyServiceUnavailable:
            await asyncio.sleep(retry_seconds)


# --- routes ------------------------------------------------------------------------


def build_router(store: DialogueStore, answers: Answers, gateway_public_key: str | None) -> APIRouter:
    router = APIRouter()

    # One of the tenant's API keys (scope dialogues), or a console editor's or owner's assertion through the gateway.
    tenant_key = tenant_caller(store.access, gateway_public_key, AUDIENCE, ("owner", "editor"), scope="dialogues")

    AuthorisedTenant = Annotated[str, Depends(tenant_key)]
    router.include_router(key_use_router(store.access, gateway_public_key, AUDIENCE))
    CurrentParticipant = Annotated[Participant, Depends(participant_dependency(gateway_public_key, AUDIENCE))]

    async def tenant_dialogue(tenant_id: str, dialogue_id: str) -> dict[str, Any]:
        dialogue = await store.dialogue(tenant_id, dialogue_id)
        if dialogue is None:
            raise problem(404, "dialogue_not_found", "this tenant has no such dialogue")
        return dialogue

    # --- tenant: settings ---------------------------------------------------

    @router.get("/v1/tenants/{tenant_id}/settings", tags=["tenant"])
    async def get_settings(tenant_id: AuthorisedTenant) -> SettingsOut:
        tenant = await store.tenant(tenant_id) or {}
        return SettingsOut(
            min_group_size=tenant.get("min_group_size", domain.DEFAULT_MIN_GROUP_SIZE),
            pii_policy=tenant.get("pii_policy", domain.DEFAULT_PII_POLICY),
            revision=tenant.get("revision", 0),
        )

    @router.put("/v1/tenants/{tenant_id}/settings", tags=["tenant"], responses=errors(409))
    async def put_settings(tenant_id: AuthorisedTenant, body: SettingsIn) -> SettingsOut:
        """Minimum group size k (never below 3) and the personal-data policy.
        Published as ``tenant-settings-changed`` so analytics applies the same k."""
        for _ in range(3):
            tenant = await store.tenant(tenant_id) or {}
            revision = tenant.get("revision", 0)
            settings = {
                "min_group_size": body.min_group_size or tenant.get("min_group_size", domain.DEFAULT_MIN_GROUP_SIZE),
                "pii_policy": body.pii_policy or tenant.get("pii_policy", domain.DEFAULT_PII_POLICY),
            }
            event = TenantSettingsChanged(
                source=SOURCE, subject=tenant_id, tenant_id=tenant_id,
                data=TenantSettingsChangedData(**settings, revision=revision + 1),
            )
            if await store.change_settings(tenant_id, revision, settings, event, Topics.TENANT_SETTINGS_CHANGED):
                return SettingsOut(**settings, revision=revision + 1)
        raise problem(409, "concurrent_change", "the settings changed meanwhile; read them and try again")

    # --- tenant: dialogues ----------------------------------------------------

    @router.post("/v1/tenants/{tenant_id}/dialogues", status_code=status.HTTP_201_CREATED, tags=["tenant"])
    async def create_dialogue(tenant_id: AuthorisedTenant, body: DialogueIn) -> DialogueOut:
        check_window(body.opens_at, body.closes_at)
        try:
            questions = build_questions(body.questions, set())
        except domain.RuleViolation as violation:
            raise refused(violation) from None
        now = now_ms()
        dialogue = {
            "_id": new_id("d"), "tenant_id": tenant_id, "title": body.title, "intro": body.intro,
            "opens_at": body.opens_at, "closes_at": body.closes_at, "status": "draft", "questions": questions,
            "has_answers": False, "version": 1, "created_at": now, "updated_at": now,
        }
        event = dialogue_changed(dialogue)
        await store.add_dialogue(dialogue, event, Topics.DIALOGUE_CHANGED, tenant_event=for_tenant(event))
        return dialogue_out(dialogue)

    @router.get("/v1/tenants/{tenant_id}/dialogues", tags=["tenant"])
    async def list_dialogues(
        tenant_id: AuthorisedTenant,
        status_: Annotated[list[domain.DialogueStatus] | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> DialogueList:
        statuses = status_ or ["draft", "published", "closed", "archived"]
        found = await store.list_dialogues(tenant_id, list(statuses), limit, offset)
        return DialogueList(dialogues=[dialogue_out(d) for d in found], limit=limit, offset=offset)

    @router.get("/v1/tenants/{tenant_id}/dialogues/{dialogue_id}", tags=["tenant"], responses=NO_DIALOGUE)
    async def get_dialogue(tenant_id: AuthorisedTenant, dialogue_id: Id) -> DialogueOut:
        return dialogue_out(await tenant_dialogue(tenant_id, dialogue_id))

    @router.patch("/v1/tenants/{tenant_id}/dialogues/{dialogue_id}", tags=["tenant"], responses=DIALOGUE_CHANGE)
    async def edit_dialogue(tenant_id: AuthorisedTenant, dialogue_id: Id, body: DialoguePatch) -> DialogueOut:
        """Change the title, intro, window or questions. The questions of a dialogue
        that has answers cannot change (they would change what people answered)."""
        given = body.model_fields_set
        if not given:
            raise problem(422, "nothing_to_change", "send at least one field")
        if "title" in given and body.title is None:
            raise problem(422, "title_required", "a dialogue keeps a title")
        dialogue = await tenant_dialogue(tenant_id, dialogue_id)
        if dialogue["status"] == "archived":
            raise problem(409, "archived", "an archived dialogue cannot change")
        changes: dict[str, Any] = {k: getattr(body, k) for k in ("title", "intro", "opens_at", "closes_at")
                                   if k in given}
        if "intro" in changes and changes["intro"] is None:
            changes["intro"] = ""
        check_window(changes.get("opens_at", dialogue.get("opens_at")),
                     changes.get("closes_at", dialogue.get("closes_at")))
        if "questions" in given:
            if body.questions is None:
                raise problem(422, "questions_required", "send a list of questions")
            try:
                domain.check_questions_editable(dialogue["status"], 1 if dialogue["has_answers"] else 0)
                changes["questions"] = build_questions(body.questions, {q["question_id"] for q in dialogue["questions"]})
            except domain.RuleViolation as violation:
                raise refused(violation) from None
            if not changes["questions"] and dialogue["status"] != "draft":
                raise problem(422, "no_questions", "a published dialogue keeps at least one question")
        changes["updated_at"] = now_ms()
        event = dialogue_changed({**dialogue, **changes, "version": dialogue["version"] + 1})
        if not await store.update_dialogue(tenant_id, dialogue_id, dialogue["version"], changes, event,
                                           Topics.DIALOGUE_CHANGED, questions_frozen_if_answered="questions" in given,
                                           tenant_event=for_tenant(event)):
            current = await tenant_dialogue(tenant_id, dialogue_id)
            if "questions" in given and current["has_answers"]:
                raise problem(409, "has_answers", "questions of a dialogue with answers cannot change")
            raise problem(409, "concurrent_change", "the dialogue changed meanwhile; read it and try again")
        return dialogue_out(await tenant_dialogue(tenant_id, dialogue_id))

    async def move(tenant_id: str, dialogue_id: str, target: domain.DialogueStatus) -> DialogueOut:
        dialogue = await tenant_dialogue(tenant_id, dialogue_id)
        try:
            domain.check_transition(dialogue["status"], target)
        except domain.RuleViolation as violation:
            raise refused(violation) from None
        if target == "published" and not dialogue["questions"]:
            raise problem(409, "no_questions", "a dialogue needs at least one question to be published")
        now = now_ms()
        changes = {"status": target, "updated_at": now,
                   "closed_at": domain.closed_at_after(target, dialogue.get("closed_at"), now)}
        event = dialogue_changed({**dialogue, **changes, "version": dialogue["version"] + 1})
        if not await store.update_dialogue(tenant_id, dialogue_id, dialogue["version"], changes, event,
                                           Topics.DIALOGUE_CHANGED, questions_frozen_if_answered=False,
                                           tenant_event=for_tenant(event)):
            raise problem(409, "concurrent_change", "the dialogue changed meanwhile; read it and try again")
        log.info("dialogue_moved", dialogue_id=dialogue_id, status=target)
        return dialogue_out(await tenant_dialogue(tenant_id, dialogue_id))

    @router.post("/v1/tenants/{tenant_id}/dialogues/{dialogue_id}/publish", tags=["tenant"], responses=DIALOGUE_CHANGE)
    async def publish_dialogue(tenant_id: AuthorisedTenant, dialogue_id: Id) -> DialogueOut:
        return await move(tenant_id, dialogue_id, "published")

    @router.post("/v1/tenants/{tenant_id}/dialogues/{dialogue_id}/close", tags=["tenant"], responses=DIALOGUE_CHANGE)
    async def close_dialogue(tenant_id: AuthorisedTenant, dialogue_id: Id) -> DialogueOut:
        return await move(tenant_id, dialogue_id, "closed")

    @router.post("/v1/tenants/{tenant_id}/dialogues/{dialogue_id}/archive", tags=["tenant"], responses=DIALOGUE_CHANGE)
    async def archive_dialogue(tenant_id: AuthorisedTenant, dialogue_id: Id) -> DialogueOut:
        return await move(tenant_id, dialogue_id, "archived")

    @router.get("/v1/tenants/{tenant_id}/dialogues/{dialogue_id}/answers", tags=["tenant"], responses=NO_DIALOGUE)
    async def dialogue_answers(
        tenant_id: AuthorisedTenant,
        dialogue_id: Id,
        question_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
        participant_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> TenantAnswerList:
        """The answers by participant ID (the only identity a tenant sees), with the
        screening flags of each; withdrawn answers are gone from here."""
        await tenant_dialogue(tenant_id, dialogue_id)
        found = await answers.opened(tenant_id, await store.answers_of_dialogue(
            tenant_id, dialogue_id, question_id, participant_id, limit, offset))
        return TenantAnswerList(
            answers=[TenantAnswerOut(**answer_out(a), participant_id=a["participant_id"]) for a in found],
            limit=limit, offset=offset,
        )

    # --- participant ------------------------------------------------------------

    @router.get("/v1/me/dialogues", tags=["participant"])
    async def my_dialogues(participant: CurrentParticipant) -> MyDialogueList:
        """The open dialogues of the participant's own tenant."""
        now = now_ms()
        found = await store.list_dialogues(participant.tenant_id, ["published"], 200, 0)
        return MyDialogueList(dialogues=[
            MyDialogueSummary(dialogue_id=d["_id"], title=d["title"], closes_at=d.get("closes_at"),
                              questions=len(d["questions"]))
            for d in found if domain.accepts_answers(d["status"], d.get("opens_at"), d.get("closes_at"), now)
        ])

    @router.get("/v1/me/dialogues/{dialogue_id}", tags=["participant"], responses=NO_DIALOGUE)
    async def my_dialogue(participant: CurrentParticipant, dialogue_id: Id) -> MyDialogueOut:
        dialogue = await answers.visible_dialogue(participant, dialogue_id)
        mine = [a for a in await store.answers_of_participant(participant.tenant_id, participant.participant_id)
                if a["dialogue_id"] == dialogue_id]
        await answers.opened(participant.tenant_id, mine)
        return MyDialogueOut(
            dialogue_id=dialogue["_id"], title=dialogue["title"], intro=dialogue["intro"],
            opens_at=dialogue.get("opens_at"), closes_at=dialogue.get("closes_at"),
            accepting_answers=domain.accepts_answers(dialogue["status"], dialogue.get("opens_at"),
                                                     dialogue.get("closes_at"), now_ms()),
            questions=[question_out(q) for q in dialogue["questions"]],
            my_answers=[AnswerOut(**answer_out(a)) for a in mine],
        )

    def replied(response: Response, result: tuple[int, dict[str, Any]]) -> AnswerOut:
        status_code, body = result
        response.status_code = status_code
        return AnswerOut(**body)

    @router.put("/v1/me/dialogues/{dialogue_id}/questions/{question_id}/answer", tags=["participant"],
                responses={201: {"model": AnswerOut, "description": "created"}, **ANSWER_WRITE})
    async def put_answer(participant: CurrentParticipant, dialogue_id: Id, question_id: Id, body: AnswerIn,
                         response: Response, idempotency_key: IdempotencyKey = None) -> AnswerOut:
        """Create (201) or replace (200) the answer to a question. The screening says
        what personal data was found where; with policy ``reject`` that is a 422."""
        return replied(response, await answers.submit(participant, dialogue_id, question_id, body.value,
                                                      idempotency_key, idea=False))

    @router.delete("/v1/me/dialogues/{dialogue_id}/questions/{question_id}/answer", tags=["participant"],
                   status_code=status.HTTP_204_NO_CONTENT, responses=ANSWER_WITHDRAWAL)
    async def withdraw_answer(participant: CurrentParticipant, dialogue_id: Id, question_id: Id) -> Response:
        await answers.visible_dialogue(participant, dialogue_id)
        await answers.withdraw(participant, domain.answer_id_for(participant.participant_id, question_id))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/v1/me/dialogues/{dialogue_id}/questions/{question_id}/ideas", tags=["participant"],
                 status_code=status.HTTP_201_CREATED,
                 responses={200: {"model": AnswerOut, "description": "the same idea again (Idempotency-Key)"},
                            **ANSWER_WRITE})
    async def add_idea(participant: CurrentParticipant, dialogue_id: Id, question_id: Id, body: AnswerIn,
                       response: Response, idempotency_key: IdempotencyKey = None) -> AnswerOut:
        """Add one idea (a participant may add several). Send an Idempotency-Key so a
        retry after a lost response does not add it twice."""
        return replied(response, await answers.submit(participant, dialogue_id, question_id, body.value,
                                                      idempotency_key, idea=True))

    @router.post("/v1/me/screening", tags=["participant"])
    async def screening_preview(participant: CurrentParticipant, body: ScreeningIn) -> ScreeningPreviewOut:
        """The platform's own personal-data screening of a text before it is sent, and
        the tenant's policy, so an app can point at what it found while the participant
        types (and carries no copy of the rules). Nothing is stored or logged."""
        policy, _ = await answers.policy(participant.tenant_id)
        findings = domain.screen(body.text)
        return ScreeningPreviewOut(findings=[FindingOut(**_finding(f)) for f in findings], policy=policy)

    @router.get("/v1/me/answers", tags=["participant"])
    async def my_answers(participant: CurrentParticipant) -> AnswerList:
        """Every current answer of the participant, in any dialogue, open or not."""
        mine = await store.answers_of_participant(participant.tenant_id, participant.participant_id)
        return AnswerList(answers=[AnswerOut(**answer_out(a)) for a in await answers.opened(participant.tenant_id, mine)])

    @router.put("/v1/me/answers/{answer_id}", tags=["participant"], responses=ANSWER_WRITE)
    async def change_answer(participant: CurrentParticipant, answer_id: Id, body: AnswerIn, response: Response,
                            idempotency_key: IdempotencyKey = None) -> AnswerOut:
        """Change one of one's answers (an idea too) by its ID, while its dialogue is open."""
        found = await answers.own_answer(participant, answer_id)
        return replied(response, await answers.submit(
            participant, found["dialogue_id"], found["question_id"], body.value, idempotency_key,
            idea=found["kind"] == "idea", answer_id=answer_id,
        ))

    @router.delete("/v1/me/answers/{answer_id}", tags=["participant"], status_code=status.HTTP_204_NO_CONTENT,
                   responses=ANSWER_WITHDRAWAL)
    async def withdraw_by_id(participant: CurrentParticipant, answer_id: Id) -> Response:
        await answers.withdraw(participant, answer_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get("/v1/me/dialogues/{dialogue_id}/questions/{question_id}/group", tags=["participant"],
                responses=errors(404, 409, e409="the group's answers show after one's own (`answer_first`)"))
    async def group(participant: CurrentParticipant, dialogue_id: Id, question_id: Id) -> dict[str, Any]:
        """What the group answered, once the participant answered too, and only once at
        least k distinct participants did; no participant ID, ever."""
        dialogue = await answers.visible_dialogue(participant, dialogue_id)
        question = question_of(Answers.question_in(dialogue, question_id))
        current = await store.answers_to_question(participant.tenant_id, dialogue_id, question_id)
        if not any(a["participant_id"] == participant.participant_id for a in current):
            raise problem(409, "answer_first", "the group's answers show after you answered")
        _, k = await answers.policy(participant.tenant_id)
        texts_total = None
        if question.kind in ("open_text", "idea") and domain.group_view_ready(
                len({a["participant_id"] for a in current}), k):
            # Only the texts to be shown are opened (a random sample of the others'), so a
            # view costs the same at 100 texts as at 100,000; below k none is.
            others = [a for a in current
                      if a["participant_id"] != participant.participant_id and a.get("text_sealed") is not None]
            random.shuffle(others)
            await answers.opened(participant.tenant_id, others[:domain.GROUP_TEXTS_SHOWN])
            texts_total = len(others)
        group_answers = [
            domain.GroupAnswer(
                participant_id=a["participant_id"],
                choices=tuple(a.get("choices") or ()),
                scale_value=a.get("scale_value"),
                shown_text=domain.shown_to_others(
                    a["text"], [Finding(**f) for f in a.get("findings") or []]) if a.get("text") else None,
            )
            for a in current
        ]
        return domain.group_view(question, group_answers, k, participant.participant_id, texts_total=texts_total)

    return router


def build_internal_router(store: DialogueStore, answers: Answers, internal_token: str) -> APIRouter:
    """What the rights service asks of this store for a participant (access,
    rectification) and for retention (closed dialogues and who answered them).
    Only other Tessera services reach these, with the internal token."""
    router = APIRouter(prefix="/internal/v1", tags=["internal"],
                       dependencies=[Depends(internal_caller(internal_token))])
    participant_base = "/tenants/{tenant_id}/participants/{participant_id}"

    @router.get(f"{participant_base}/data")
    async def participant_data(tenant_id: TenantIdPath, participant_id: Id) -> AnswerExportOut:
        """Every current answer of the participant in this tenant, with what was asked."""
        mine = await answers.opened(tenant_id, await store.answers_of_participant(tenant_id, participant_id))
        dialogues = await store.dialogues_by_id(tenant_id, sorted({a["dialogue_id"] for a in mine}))
        return AnswerExportOut(store=STORE_NAME, categories=["answers"],
                               records=[exported_answer(a, dialogues.get(a["dialogue_id"])) for a in mine])

    @router.put(f"{participant_base}/answers/{{answer_id}}", responses=ANSWER_WRITE)
    async def rectify_answer(tenant_id: TenantIdPath, participant_id: Id, answer_id: Id, body: AnswerIn) -> AnswerOut:
        """Rectification on the participant's behalf, open or closed dialogue alike."""
        participant = Participant(participant_id=participant_id, tenant_id=tenant_id)
        return AnswerOut(**await answers.rectify(participant, answer_id, body.value))

    @router.get("/tenants/{tenant_id}/retention/closed-dialogues")
    async def closed_dialogues(
        tenant_id: TenantIdPath, closed_before: Annotated[IsoDatetime, Query(description="with a time zone")],
    ) -> ClosedDialogueList:
        found = await store.closed_dialogues(tenant_id, closed_before)
        return ClosedDialogueList(dialogues=[ClosedDialogueOut(**d) for d in found])

    @router.get("/tenants/{tenant_id}/retention/dialogues/{dialogue_id}/participants")
    async def dialogue_participants(
        tenant_id: TenantIdPath, dialogue_id: Id, limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> ParticipantIdList:
        """Who still has answers (or tombstones) there: erasing them shortens the list,
        so asking again until it is empty needs no paging."""
        return ParticipantIdList(participant_ids=await store.participants_of_dialogue(tenant_id, dialogue_id, limit))

    return router
