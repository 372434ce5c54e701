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
    GroupAnswer,
    PersonalDataRejected,
    answer_id_for,
    apply_pii_policy,
    check_idempotent_replay,
    group_view,
    group_view_ready,
    idea_id_for,
    shown_to_others,
    validate_answer,
    value_fingerprint,
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
        (TEXT, "  more trees  ", Answer(text="  more trees  ")),  # as sent: spans point into it
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


# --- personal-data policy ---------------------------------------------------

LEAKY = "Mail me at jan.jansen@example.nl please"


def test_warn_stores_the_text_and_flags_where_the_personal_data_is():
    screened = apply_pii_policy(LEAKY, "warn")
    assert screened.stored_text == LEAKY and screened.action == "flagged"
    (finding,) = screened.findings
    assert (finding.kind, LEAKY[finding.start:finding.end]) == ("email", "jan.jansen@example.nl")


def test_redact_stores_the_text_without_the_personal_data():
    screened = apply_pii_policy(LEAKY, "redact")
    assert screened.stored_text == "Mail me at [email] please" and screened.action == "redacted"


def test_reject_refuses_and_says_what_and_where():
    with pytest.raises(PersonalDataRejected) as refused:
        apply_pii_policy(LEAKY, "reject")
    assert refused.value.code == "personal_data"
    assert [(f.kind, f.start) for f in refused.value.findings] == [("email", 11)]
    assert "jan.jansen" not in refused.value.message


@pytest.mark.parametrize("policy", ["warn", "redact", "reject"])
def test_a_clean_text_passes_every_policy_unchanged(policy):
    screened = apply_pii_policy("More benches in the park, please", policy)
    assert (screened.stored_text, screened.findings, screened.action) == ("More benches in the park, please", (), "none")


def test_the_group_never_sees_flagged_spans():
    findings = list(apply_pii_policy(LEAKY, "warn").findings)
    assert shown_to_others(LEAKY, findings) == "Mail me at [email] please"
    assert shown_to_others("no data", []) == "no data"


# --- identities and idempotency ---------------------------------------------


def test_answer_ids_are_stable_per_participant_and_question_and_hide_both():
    assert answer_id_for("p_1", "q_1") == answer_id_for("p_1", "q_1")
    assert len({answer_id_for("p_1", "q_1"), answer_id_for("p_2", "q_1"), answer_id_for("p_1", "q_2")}) == 3
    assert "p_1" not in answer_id_for("p_1", "q_1")
    assert idea_id_for("p_1", "q_1", "key-1") != idea_id_for("p_1", "q_1", "key-2")


def test_a_replay_is_recognised_and_a_reused_key_refused():
    fp = value_fingerprint(["a", "b"])
    assert check_idempotent_replay("k1", fp, "k1", value_fingerprint(["a", "b"])) is True
    assert check_idempotent_replay("k1", fp, "k2", fp) is False
    assert check_idempotent_replay("k1", fp, None, fp) is False
    with pytest.raises(RuleViolation) as refused:
        check_idempotent_replay("k1", fp, "k1", value_fingerprint(["a"]))
    assert refused.value.code == "idempotency_key_reused"


# --- group view --------------------------------------------------------------


def _choices(n: int, choice: str) -> list[GroupAnswer]:
    return [GroupAnswer(f"p_{choice}{i}", choices=(choice,)) for i in range(n)]


def test_the_group_view_appears_exactly_at_k_and_says_nothing_before():
    below = group_view(SINGLE, _choices(2, "a") + _choices(2, "b"), k=5, viewer="p_a0")
    assert below == {"status": "not_enough_answers", "min_group_size": 5}
    at_k = group_view(SINGLE, _choices(3, "a") + _choices(2, "b"), k=5, viewer="p_a0")
    assert at_k["status"] == "ready" and at_k["respondents"] == 5
    assert at_k["choices"] == [{"key": "a", "label": "A", "count": 3}, {"key": "b", "label": "B", "count": 2}]


def test_k_counts_distinct_participants_not_answers():
    ideas = [GroupAnswer("p_same", shown_text=f"idea {i}") for i in range(9)]
    assert group_view(Question("q", "idea", "?"), ideas, k=5, viewer="p_x")["status"] == "not_enough_answers"


def test_scale_view_is_a_histogram_over_every_point_with_the_mean():
    answers = [GroupAnswer(f"p_{i}", scale_value=v) for i, v in enumerate([1, 2, 2, 5, 5])]
    view = group_view(SCALE, answers, k=5, viewer="p_0")
    assert [(h["value"], h["count"]) for h in view["histogram"]] == [(1, 1), (2, 2), (3, 0), (4, 0), (5, 2)]
    assert view["histogram"][0]["label"] == "not" and view["mean"] == 3.0


def test_text_view_shows_the_others_texts_without_any_participant_id():
    answers = [GroupAnswer(f"p_{i}", shown_text=f"text {i}") for i in range(6)]
    view = group_view(TEXT, answers, k=5, viewer="p_0")
    assert sorted(view["texts"]) == [f"text {i}" for i in range(1, 6)] and view["texts_total"] == 5
    assert not any(f"p_{i}" in repr(view) for i in range(6))
