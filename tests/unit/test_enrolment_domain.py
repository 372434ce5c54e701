from datetime import UTC, datetime, timedelta

import pytest

from tessera_enrolment import domain


def test_codes_have_at_least_40_bits_and_no_look_alikes():
    assert domain.CODE_BITS >= 40
    assert not set("01OIL") & set(domain.CODE_ALPHABET)
    codes = {domain.new_opp_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == domain.CODE_LENGTH and set(c) <= set(domain.CODE_ALPHABET) for c in codes)


@pytest.mark.parametrize("typed", ["k7mq2-x9rta", "K7MQ2X9RTA", " k7mq2 x9rta ", "K7MQ2-X9RTA"])
def test_typed_codes_are_case_and_separator_insensitive(typed):
    assert domain.normalise_code(typed) == "K7MQ2X9RTA"


@pytest.mark.parametrize("typed", ["", "K7MQ2X9RT", "K7MQ2X9RTAA", "K7MQ2X9RT0", "K7MQ2X9RTO", "$gt", "K7MQ2.X9RT"])
def test_impossible_codes_normalise_to_none(typed):
    assert domain.normalise_code(typed) is None


@pytest.mark.parametrize("typed", [
    "K7MQ2X9R\u017fA",  # ſ (long s): str.upper() makes it S
    "k7mq2x9r\ufb00",  # ﬀ: str.upper() makes it FF, and the length right
    "K7MQ2X9RT\u0391",  # Greek capital alpha, an A to the eye
    "K7MQ2X9RT\uff21",  # fullwidth A
])
def test_characters_outside_ascii_are_never_mapped_onto_the_alphabet(typed):
    assert domain.normalise_code(typed) is None


def test_display_groups_the_code_in_fives():
    assert domain.display_code("K7MQ2X9RTA") == "K7MQ2-X9RTA"


NOW = datetime(2026, 11, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (domain.CodeState(False, None, None, 10_000), "active"),
        (domain.CodeState(True, None, None, 0), "revoked"),
        (domain.CodeState(False, NOW - timedelta(seconds=1), None, 0), "expired"),
        (domain.CodeState(False, NOW, None, 0), "expired"),
        (domain.CodeState(False, NOW + timedelta(days=1), 3, 3), "exhausted"),
        (domain.CodeState(False, NOW + timedelta(days=1), 3, 2), "active"),
    ],
)
def test_code_status(state, status):
    assert domain.code_status(state, NOW) == status


def test_a_device_record_holds_exactly_the_allowed_fields():
    record = domain.new_device_record("p_x", "t_y", "ab" * 32, "ios", "phone", NOW)
    assert record.keys() == domain.DEVICE_FIELDS
