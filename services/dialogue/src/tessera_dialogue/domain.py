"""Dialogue rules, no I/O: question kinds, what a valid answer is, the dialogue's
lifecycle, what the personal-data policy does to a text, and what the group view
may show.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tessera_common.events import PiiPolicy, QuestionKind
from tessera_common.screening import Finding, redact, screen

DialogueStatus = Literal["draft", "published", "closed", "archived"]
DEFAULT_PII_POLICY: PiiPolicy = "warn"
#: The group view of a text question shows at most this many of the others' texts.
GROUP_TEXTS_SHOWN = 100

MAX_TEXT_CHARS = 2000
MIN_GROUP_SIZE_FLOOR = 3
DEFAULT_MIN_GROUP_SIZE = 5

#: Which lifecycle moves a tenant may make. Archived is final; a closed dialogue can
#: be reopened (published again) but never go back to draft once it had answers.
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"published", "archived"}),
    "published": frozenset({"closed"}),
    "closed": frozenset({"published", "archived"}),
    "archived": frozenset(),
}


class RuleViolation(Exception):
    """A request the rules refuse; ``code`` is stable, ``message`` says what to change."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Choice:
    key: str
    label: str


@dataclass(frozen=True)
class Question:
    question_id: str
    kind: QuestionKind
    prompt: str
    choices: tuple[Choice, ...] = ()
    scale_min: int | None = None
    scale_max: int | None = None
    scale_labels: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind in ("single_choice", "multiple_choice"):
            keys = [c.key for c in self.choices]
            if len(keys) < 2 or len(set(keys)) != len(keys):
                raise RuleViolation("bad_choices", "a choice question needs at least two choices with distinct keys")
        elif self.choices:
            raise RuleViolation("unexpected_choices", f"a {self.kind} question has no choices")
        if self.kind == "scale":
            if self.scale_min is None or self.scale_max is None or not self.scale_min < self.scale_max:
                raise RuleViolation("bad_scale", "a scale needs integers min < max")
            if self.scale_max - self.scale_min > 100:
                raise RuleViolation("bad_scale", "a scale spans at most 100 steps")
            if any(not self.scale_min <= point <= self.scale_max for point in self.scale_labels):
                raise RuleViolation("bad_scale", "scale labels must sit on points of the scale")
        elif self.scale_min is not None or self.scale_max is not None:
            raise RuleViolation("unexpected_scale", f"a {self.kind} question has no scale")


@dataclass(frozen=True)
class Answer:
    """A validated answer: exactly one of ``text``, ``choices`` or ``scale_value``."""

    text: str | None = None
    choices: tuple[str, ...] = ()
    scale_value: int | None = None


def validate_answer(question: Question, value: object) -> Answer:
    """What a participant sent (``{"value": ...}``) → a valid answer, or RuleViolation.

    Types are checked exactly (``True`` is not 1, ``"3"`` is not 3), so a crafted JSON
    value such as ``{"$gt": ""}`` never reaches the store."""
    if question.kind in ("open_text", "idea"):
        if not isinstance(value, str):
            raise RuleViolation("wrong_type", "this question takes text")
        # Kept as sent (not stripped), so the screening's character spans point into
        # exactly the text the app holds.
        if not value.strip():
            raise RuleViolation("empty_text", "the answer is empty")
        if len(value) > MAX_TEXT_CHARS:
            raise RuleViolation("text_too_long", f"at most {MAX_TEXT_CHARS} characters")
        return Answer(text=value)
    offered = {c.key for c in question.choices}
    if question.kind == "single_choice":
        if not isinstance(value, str):
            raise RuleViolation("wrong_type", "this question takes one choice key")
        if value not in offered:
            raise RuleViolation("choice_not_offered", "that choice is not offered")
        return Answer(choices=(value,))
    if question.kind == "multiple_choice":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise RuleViolation("wrong_type", "this question takes a non-empty list of choice keys")
        if len(set(value)) != len(value):
            raise RuleViolation("duplicate_choice", "each choice at most once")
        if not set(value) <= offered:
            raise RuleViolation("choice_not_offered", "a choice is not offered")
        return Answer(choices=tuple(sorted(value)))
    if not isinstance(value, int) or isinstance(value, bool):
        raise RuleViolation("wrong_type", "this question takes a whole number")
    assert question.scale_min is not None and question.scale_max is not None
    if not question.scale_min <= value <= question.scale_max:
        raise RuleViolation("out_of_scale", f"choose from {question.scale_min} to {question.scale_max}")
    return Answer(scale_value=value)


def check_transition(current: DialogueStatus, target: DialogueStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise RuleViolation("bad_transition", f"a {current} dialogue cannot become {target}")


def closed_at_after(target: DialogueStatus, closed_at: datetime | None, now: datetime) -> datetime | None:
    """Since when a dialogue takes no answers, after a move to ``target``: the answers'
    retention counts from it. Closing (or archiving one never closed) sets it; archiving
    a closed one keeps the first closing; reopening clears it, so a later close counts
    afresh."""
    if target == "published":
        return None
    if target in ("closed", "archived"):
        return closed_at or now
    return closed_at


def check_questions_editable(status: DialogueStatus, answer_count: int) -> None:
    """Changing questions under existing answers would change what they answered."""
    if status == "archived":
        raise RuleViolation("archived", "an archived dialogue cannot change")
    if status != "draft" and answer_count > 0:
        raise RuleViolation("has_answers", "questions of a dialogue with answers cannot change")


def accepts_answers(status: DialogueStatus, opens_at: datetime | None, closes_at: datetime | None,
                    now: datetime) -> bool:
    if status != "published":
        return False
    if opens_at is not None and now < opens_at:
        return False
    return closes_at is None or now < closes_at


def check_min_group_size(k: int) -> int:
    if k < MIN_GROUP_SIZE_FLOOR:
        raise RuleViolation("k_too_small", f"the minimum group size is never below {MIN_GROUP_SIZE_FLOOR}")
    return k


def group_view_ready(distinct_participants: int, k: int) -> bool:
    """The group view exists only once at least k distinct participants answered."""
    return distinct_participants >= k


# --- personal-data screening ----------------------------------------------


class PersonalDataRejected(RuleViolation):
    """Policy ``reject`` and the text holds personal data: nothing is stored."""

    def __init__(self, findings: list[Finding]) -> None:
        kinds = ", ".join(sorted({f.kind for f in findings}))
        super().__init__("personal_data", f"the text seems to contain personal data ({kinds}); remove it and resend")
        self.findings = findings


@dataclass(frozen=True)
class Screened:
    """A text after the tenant's policy: what to store, and what was found where
    (spans into the text the participant sent)."""

    stored_text: str
    findings: tuple[Finding, ...]
    action: Literal["none", "flagged", "redacted"]


def apply_pii_policy(text: str, policy: PiiPolicy) -> Screened:
    findings = screen(text)
    if not findings:
        return Screened(text, (), "none")
    if policy == "reject":
        raise PersonalDataRejected(findings)
    if policy == "redact":
        return Screened(redact(text, findings), tuple(findings), "redacted")
    return Screened(text, tuple(findings), "flagged")


def shown_to_others(text: str, findings: list[Finding]) -> str:
    """What other participants see of a text: under ``warn`` the tenant keeps the
    original, but the group never sees personal data, so flagged spans are redacted."""
    return redact(text, findings) if findings else text


# --- identities and idempotency --------------------------------------------


def answer_id_for(participant_id: str, question_id: str) -> str:
    """One answer per participant and (non-idea) question, so its ID is derived from
    both: a retried create finds the same document instead of making a second."""
    return "a_" + hashlib.blake2b(f"{participant_id}/{question_id}".encode(), digest_size=12).hexdigest()


def idea_id_for(participant_id: str, question_id: str, idempotency_key: str) -> str:
    """Ideas are many per participant; a client-supplied idempotency key names one."""
    raw = f"{participant_id}/{question_id}/{idempotency_key}".encode()
    return "i_" + hashlib.blake2b(raw, digest_size=12).hexdigest()


def value_fingerprint(value: object, secret: bytes | None = None) -> str:
    """A digest of what was sent, to tell a true retry from a reused idempotency key.
    Keyed (HMAC) with the participant's data key for free text: a plain hash of a text
    would outlive its erasure in the store's files and confirm a guess of it; keyed, it
    dies with the key like the sealed text itself."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if secret is not None:
        return hmac.new(secret, canonical, hashlib.sha256).hexdigest()
    return hashlib.sha256(canonical).hexdigest()


def check_idempotent_replay(stored_key: str | None, stored_fingerprint: str | None,
                            key: str | None, fingerprint: str) -> bool:
    """True when this request repeats the stored one (same key, same value): change
    nothing. The same key with another value is a client bug, refused rather than
    guessed at."""
    if key is None or stored_key != key:
        return False
    if stored_fingerprint != fingerprint:
        raise RuleViolation("idempotency_key_reused", "this Idempotency-Key was used with another value")
    return True


# --- the group view ----------------------------------------------------------


@dataclass(frozen=True)
class GroupAnswer:
    """One current answer to a question as the group view needs it: whose (only to
    count distinct participants and leave out the viewer's own), never shown."""

    participant_id: str
    choices: tuple[str, ...] = ()
    scale_value: int | None = None
    shown_text: str | None = None


def group_view(question: Question, answers: list[GroupAnswer], k: int, viewer: str,
               rng: random.Random | None = None, texts_total: int | None = None) -> dict[str, Any]:
    """What the participant sees of the group's answers to ``question``.

    ``texts_total``: how many texts the others wrote, where only a sample of them was
    opened (see the route: a sealed text is opened only to be shown).

    Nothing but "not enough answers yet" below k distinct participants — not even how
    many there are, which would itself be a figure about fewer than k. No participant
    ID is ever part of the result."""
    participants = {a.participant_id for a in answers}
    if not group_view_ready(len(participants), k):
        return {"status": "not_enough_answers", "min_group_size": k}
    view: dict[str, Any] = {"status": "ready", "min_group_size": k, "respondents": len(participants)}
    if question.kind in ("single_choice", "multiple_choice"):
        counts = Counter(choice for a in answers for choice in a.choices)
        view["choices"] = [{"key": c.key, "label": c.label, "count": counts.get(c.key, 0)} for c in question.choices]
    elif question.kind == "scale":
        values = [a.scale_value for a in answers if a.scale_value is not None]
        counts = Counter(values)
        assert question.scale_min is not None and question.scale_max is not None
        view["histogram"] = [
            {"value": v, "label": question.scale_labels.get(v), "count": counts.get(v, 0)}
            for v in range(question.scale_min, question.scale_max + 1)
        ]
        view["mean"] = round(sum(values) / len(values), 2)
    else:
        texts = [a.shown_text for a in answers if a.participant_id != viewer and a.shown_text]
        # Shuffled, not in arrival order: the order would tell who wrote last.
        (rng or random.Random()).shuffle(texts)
        view["texts"] = texts[:GROUP_TEXTS_SHOWN]
        view["texts_total"] = len(texts) if texts_total is None else texts_total
    return view
