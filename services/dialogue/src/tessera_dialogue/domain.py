"""Dialogue rules, no I/O: question kinds, what a valid answer is, the dialogue's
lifecycle, and when a group view may be shown.

Groundwork for issue 3: the routes, store and events that use these rules come with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

QuestionKind = Literal["open_text", "idea", "single_choice", "multiple_choice", "scale"]
DialogueStatus = Literal["draft", "published", "closed", "archived"]
PiiPolicy = Literal["warn", "redact", "reject"]

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
        text = value.strip()
        if not text:
            raise RuleViolation("empty_text", "the answer is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise RuleViolation("text_too_long", f"at most {MAX_TEXT_CHARS} characters")
        return Answer(text=text)
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
