from datetime import UTC, datetime, timedelta

import pytest

from tessera_dialogue.domain import (
    MAX_TEXT_CHARS,
    Answer,
    Choice,
    Question,
    RuleViolation,
    accepts_answers,
    check_min_group_size,
    check_questions_editable,
    check_transition,
    group_view_ready,
    validate_answer,
)

SINGLE = Question("q1", "single_choice", "Which?", choices=(Choice("a", "A"), Choice("b", "B")))
MULTI = Question("q2", "multiple_choice", "Which ones?", choices=(Choice("a", "A"), Choice("b", "B"), Choice("c", "C")))
SCALE = Question("q3", "scale", "How much?", scale_min=1, scale_max=5, scale_labels={1: "not", 5: "very"})
TEXT = Question("q4", "open_text", "Why?")


@pytest.mark.parametrize(
    ("question", "value", "answer"),
    [
        (SINGLE, "b", Answer(choices=("b",))),
        (MULTI, ["c", "a"], Answer(choices=("a", "c"))),
        (SCALE, 5, Answer(scale_value=5)),
        (TEXT, "  more trees  ", Answer(text="more trees")),
    ],
)
def test_valid_answers_are_normalised(question, value, answer):
    assert validate_answer(question, value) == answer


@pytest.mark.parametrize(
    ("question", "value", "code"),
    [
        (SINGLE, "z", "choice_not_offered"),
        (SINGLE, {"$gt": ""}, "wrong_type"),
        (SINGLE, ["a"], "wrong_type"),
        (MULTI, [], "wrong_type"),
        (MULTI, ["a", "a"], "duplicate_choice"),
        (MULTI, ["a", "z"], "choice_not_offered"),
        (SCALE, 6, "out_of_scale"),
        (SCALE, "3", "wrong_type"),
        (SCALE, True, "wrong_type"),
        (SCALE, 2.5, "wrong_type"),
        (TEXT, "   ", "empty_text"),
        (TEXT, "x" * (MAX_TEXT_CHARS + 1), "text_too_long"),
        (TEXT, 42, "wrong_type"),
    ],
)
def test_invalid_answers_are_refused_with_a_reason(question, value, code):
    with pytest.raises(RuleViolation) as refused:
        validate_answer(question, value)
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"kind": "single_choice", "choices": (Choice("a", "A"),)}, "bad_choices"),
        ({"kind": "multiple_choice", "choices": (Choice("a", "A"), Choice("a", "B"))}, "bad_choices"),
        ({"kind": "open_text", "choices": (Choice("a", "A"), Choice("b", "B"))}, "unexpected_choices"),
        ({"kind": "scale", "scale_min": 5, "scale_max": 5}, "bad_scale"),
        ({"kind": "scale", "scale_min": 1, "scale_max": 5, "scale_labels": {9: "x"}}, "bad_scale"),
        ({"kind": "idea", "scale_min": 1, "scale_max": 5}, "unexpected_scale"),
    ],
)
def test_malformed_questions_are_refused(kwargs, code):
    with pytest.raises(RuleViolation) as refused:
        Question("q", prompt="?", **kwargs)
    assert refused.value.code == code


def test_lifecycle_moves():
    check_transition("draft", "published")
    check_transition("published", "closed")
    check_transition("closed", "archived")
    for current, target in [("archived", "published"), ("published", "draft"), ("closed", "draft")]:
        with pytest.raises(RuleViolation):
            check_transition(current, target)


def test_questions_are_frozen_once_answered():
    check_questions_editable("draft", 0)
    check_questions_editable("published", 0)
    with pytest.raises(RuleViolation):
        check_questions_editable("published", 1)
    with pytest.raises(RuleViolation):
        check_questions_editable("archived", 0)


def test_answers_are_accepted_only_inside_the_window_of_a_published_dialogue():
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    hour = timedelta(hours=1)
    assert accepts_answers("published", now - hour, now + hour, now)
    assert not accepts_answers("published", now + hour, None, now)
    assert not accepts_answers("published", None, now, now)
    assert not accepts_answers("closed", None, None, now)


def test_group_view_appears_exactly_at_k_and_k_has_a_floor():
    assert not group_view_ready(4, 5)
    assert group_view_ready(5, 5)
    assert check_min_group_size(3) == 3
    with pytest.raises(RuleViolation):
        check_min_group_size(2)
