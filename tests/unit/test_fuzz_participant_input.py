"""Properties of the pure rules that read what participants type, fuzzed with Hypothesis.

Three rules take participant input before anything else looks at it: the personal-data
screening of free text, the validation of an answer against its question, and the
normalisation of a typed opp code. Each property below must hold for *any* input, so a
counter-example is a bug in the rule (or in the property), never bad luck.

How long, chosen by ``TESSERA_FUZZ``: ``ci`` (the default, in ``make test``) is brief
and derandomised, the same examples on every run, so a red build is reproducible and
never a coin toss; ``long`` (``make fuzz``) searches afresh, ``TESSERA_FUZZ_EXAMPLES``
examples per property (100,000 unless set), keeps what fails in ``.hypothesis/`` and
replays it first on the next run. The settings apply to this module's tests only, not
to other Hypothesis users in the suite (Schemathesis). The deadline is per example and
generous: it is there to catch a regular expression that backtracks catastrophically
(seconds to forever on 2,000 characters), not to measure speed, which ``make bench``
does.

What the pure functions accept: any Python ``str``, lone UTF-16 surrogates included.
The HTTP edge refuses those with 422 ``string_unicode`` before a rule runs, but the
rules are also called from consumers and replays, so they must not depend on it.
"""

from __future__ import annotations

import os
import string
from datetime import date, timedelta
from itertools import pairwise

from hypothesis import HealthCheck, assume, example, given, settings, target
from hypothesis import strategies as st
from stdnum import iban
from stdnum.be import nn
from stdnum.dk import cpr
from stdnum.nl import bsn

from tessera_common.screening import _PRECEDENCE, KINDS, Finding, _candidates, redact, screen
from tessera_dialogue.domain import (
    MAX_TEXT_CHARS,
    Answer,
    Choice,
    PersonalDataRejected,
    Question,
    RuleViolation,
    apply_pii_policy,
    validate_answer,
)
from tessera_enrolment.domain import CODE_ALPHABET, CODE_LENGTH, display_code, normalise_code

_ANY_LENGTH = {"deadline": timedelta(seconds=2), "print_blob": True, "suppress_health_check": [HealthCheck.too_slow]}
fuzzing = {
    "ci": settings(max_examples=150, derandomize=True, database=None, **_ANY_LENGTH),
    "long": settings(max_examples=int(os.environ.get("TESSERA_FUZZ_EXAMPLES", "100000")), **_ANY_LENGTH),
}[os.environ.get("TESSERA_FUZZ", "ci")]


# --- text that participants could type ----------------------------------------------

#: Every code point Python can hold in a str, lone surrogates included.
any_character = st.characters(codec=None, exclude_categories=())

#: Words, numbers and punctuation the screening's patterns look for, so that random
#: texts reach its rules (and their overlaps) instead of stopping at the first check.
_VOCABULARY = (
    # streets, house numbers, postcodes and places
    "Kerkstraat", "straat", "laan", "Laan", "van", "de", "der", "la", "Rue", "Allé", "Vej", "gade", "Street",
    "Road", "high", "street", "nummer", "nr.", "number", "aan", "op", "på", "at", "on", "in", "Torvet", "Markt",
    "12", "221B", "3", "2.", "tv", "st.", "bus", "3521", "AB", "2100", "København", "Ø", "1000", "Brussel",
    "'s-", "Sint-", "Ab-", "H.C.", "O'", "km", "%",
    # people
    "buurman", "Mevrouw", "Fru", "hr.", "Dr.", "my", "name", "is", "Henk", "Jansen", "Sophie", "Van", "Dijk",
    "Birgitte", "Tom", "Baker", "Oliver", "Jan", "School", "Huis", "College",
    # e-mail and handles
    "@", "(at)", "[at]", "snabel-a", "apenstaartje", "dot", "punt", "punktum", "[dot]", "gmail", "outlook",
    "com", "nl", "dk", "mail", "jan.de.vries", "example", "instagram.com/", "linkedin.com/in/", "@sanne.fietst",
    # numbers, dates, plates, addresses on the net
    "+31", "+45", "0031", "06", "12345678", "20 30 40 50", "NL91", "ABNA", "0417", "1643", "00", "BE68",
    "DK50", "111222333", "1234.56.782", "211062-5629", "85.07.30-033.28", "cpr", "geboren", "født", "born",
    "DOB:", "birthday", "14", "maart", "1962", "March", "3,", "1985", "22-01-1971", "12.04.1936",
    "kenteken", "GX-84-LN", "12-ABC-3", "AB 12 345", "XY12345", "versie", "2.4.1.9", "84.105.22.17",
    "2001:db8", "::", "8a2e", "7334", "2019-2023",
)  # fmt: skip
_SEPARATORS = (" ", " ", " ", "", "-", ".", ",", "\n", "/", ":", ", ", "  ")

token = st.one_of(
    st.sampled_from(_VOCABULARY),
    st.text(string.digits, min_size=1, max_size=12),
    st.text(string.ascii_letters, min_size=1, max_size=8),
    st.text(any_character, min_size=1, max_size=3),
)
token_soup = st.lists(st.tuples(token, st.sampled_from(_SEPARATORS)), max_size=40).map(
    lambda pairs: "".join(word + separator for word, separator in pairs)
)
#: A short run repeated up to the length of the longest answer: where a regular
#: expression backtracks catastrophically, it is on a repetition ("Ab-Ab-Ab-...").
repetition = st.builds(lambda run, times: (run * times)[:MAX_TEXT_CHARS], token_soup.filter(bool),
                       st.integers(min_value=1, max_value=MAX_TEXT_CHARS))
free_text = st.one_of(st.text(any_character, max_size=200), token_soup, repetition)


# --- identifiers to plant, made valid by their own checks ---------------------------


@st.composite
def an_iban(draw) -> str:
    country = draw(st.sampled_from(["NL", "BE", "DK"]))
    digits = {"NL": 10, "BE": 12, "DK": 14}[country]
    bank = draw(st.text(string.ascii_uppercase, min_size=4, max_size=4)) if country == "NL" else ""
    body = bank + draw(st.text(string.digits, min_size=digits, max_size=digits))
    number = country + iban.calc_check_digits(country + "00" + body) + body
    return draw(st.sampled_from([number, iban.format(number)]))


@st.composite
def a_bsn(draw) -> str:
    stem = draw(st.text(string.digits, min_size=8, max_size=8))
    valid = [stem + digit for digit in string.digits if bsn.is_valid(stem + digit)]
    assume(valid)
    n = valid[0]
    return draw(st.sampled_from([n, f"{n[:4]}.{n[4:6]}.{n[6:]}", f"{n[:3]} {n[3:6]} {n[6:]}"]))


@st.composite
def a_be_national_number(draw) -> str:
    born = draw(st.dates(min_value=date(1920, 1, 1), max_value=date(2020, 12, 31)))
    serial = draw(st.integers(min_value=1, max_value=997))
    stem = f"{born:%y%m%d}{serial:03d}"
    check = 97 - int(("2" if born.year >= 2000 else "") + stem) % 97
    number = f"{stem}{check:02d}"
    assert nn.is_valid(number), number
    return draw(st.sampled_from([number, nn.format(number)]))


@st.composite
def a_cpr(draw) -> str:
    born = draw(st.dates(min_value=date(1937, 1, 1), max_value=date(1999, 12, 31)))
    # A sequence number whose seventh digit puts the birth in the 1900s for any year.
    serial = draw(st.integers(min_value=0, max_value=3999))
    number = f"{born:%d%m%y}-{serial:04d}"
    assert cpr.is_valid(number), number
    return number


an_email = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,15}[a-z0-9]", fullmatch=True),
    st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True),
    st.sampled_from(["nl", "dk", "be", "com", "org", "eu", "co.uk"]),
)
planted = st.one_of(an_iban(), a_bsn(), a_be_national_number(), a_cpr(), an_email)


# --- screening ------------------------------------------------------------------------


@fuzzing
@given(free_text)
def test_screening_any_text_gives_sorted_disjoint_findings_of_known_kinds(text):
    findings = screen(text)
    target(float(len(findings)), label="findings")
    assert all(isinstance(f, Finding) and f.kind in KINDS for f in findings)
    assert all(0 <= f.start < f.end <= len(text) for f in findings)
    assert all(a.end <= b.start for a, b in pairwise(findings)), findings
    assert screen(text) == findings  # no state, no randomness


@fuzzing
@given(free_text)
@example("2.0.1.000 00")  # found: the IP address won and the phone number's tail was dropped
def test_screening_reports_every_character_any_rule_flagged(text):
    """Where rules overlap, the finding that is kept spans them all: redacting the
    findings leaves no character any rule took for personal data."""
    covered = {i for f in screen(text) for i in range(f.start, f.end)}
    assert all(set(range(f.start, f.end)) <= covered for f in _candidates(text)), _candidates(text)


@fuzzing
@given(free_text)
def test_screening_finds_nothing_in_what_was_redacted(text):
    """A redacted text, screened again, finds no personal data in or across a marker:
    no marker reads as personal data, nor joins its neighbours into some.

    Not "redacting twice is redacting once": a marker changes the context of the words
    beside it. In "00-AAA-0 Birgitte" the name follows a number, as in "3 Jan", so it
    is not taken; in "[licence_plate] Birgitte" it is."""
    findings = screen(text)
    once = redact(text, findings)
    markers, shift = [], 0
    for finding in findings:
        start = finding.start + shift
        markers.append(range(start, start + len(finding.kind) + 2))
        shift += len(finding.kind) + 2 - (finding.end - finding.start)
    assert [once[m.start : m.stop] for m in markers] == [f"[{f.kind}]" for f in findings]
    for again in screen(once):
        assert not any(again.start < m.stop and m.start < again.end for m in markers), (once, again)


@fuzzing
@given(free_text, planted, free_text)
# Found: "000 000 000" failed the 11-proof and hid the valid BSN starting inside it;
# then "255 000 005", itself valid, hid "000 005 009" overlapping it.
@example(before="000", identifier="000 000 012", after="")
@example(before="255", identifier="000 005 009", after="")
def test_screening_finds_a_valid_identifier_wherever_it_is_planted(before, identifier, after):
    text = f"{before} {identifier} {after}"
    start = len(before) + 1
    covered = {i for f in screen(text) for i in range(f.start, f.end)}
    assert set(range(start, start + len(identifier))) <= covered, (identifier, screen(text))


@st.composite
def digits_and_findings(draw) -> tuple[str, list[Finding]]:
    """A text of digits (so markers stand out) and findings anywhere in it."""
    length = draw(st.integers(min_value=1, max_value=30))
    position = st.integers(0, length - 1)
    spans = st.tuples(st.sampled_from([*KINDS, "unknown"]), position, position)
    findings = [Finding(kind, min(a, b), max(a, b) + 1) for kind, a, b in draw(st.lists(spans, max_size=8))]
    return "".join(string.digits[i % 10] for i in range(length)), findings


@fuzzing
@given(digits_and_findings())
def test_redaction_of_any_findings_leaves_no_character_of_any_span(case):
    """Whatever findings a caller passes, in any order and overlapping: each maximal run
    of overlapping spans becomes one marker of its highest-precedence kind, and every
    other character is kept, in order."""
    text, findings = case
    groups: list[list[Finding]] = []
    for finding in sorted(findings, key=lambda f: (f.start, f.end)):
        if groups and finding.start < max(f.end for f in groups[-1]):
            groups[-1].append(finding)
        else:
            groups.append([finding])
    redacted = redact(text, findings)
    markers = [m for m in redacted.replace("]", "[").split("[") if m and not m.isdigit()]
    assert markers == [min((f.kind for f in group), key=lambda k: _PRECEDENCE.get(k, len(KINDS))) for group in groups]
    covered = {i for f in findings for i in range(f.start, f.end)}
    kept = "".join(ch for i, ch in enumerate(text) if i not in covered)
    assert "".join(ch for ch in redacted if ch.isdigit()) == kept


# --- answer validation ----------------------------------------------------------------

_RULE_CODES = {"wrong_type", "empty_text", "text_too_long", "choice_not_offered", "duplicate_choice", "out_of_scale"}

choice_keys = st.lists(st.text(max_size=6), min_size=2, max_size=6, unique=True)


@st.composite
def a_question(draw) -> Question:
    kind = draw(st.sampled_from(["open_text", "idea", "single_choice", "multiple_choice", "scale"]))
    if kind in ("single_choice", "multiple_choice"):
        return Question("q", kind, "?", choices=tuple(Choice(key, key.upper()) for key in draw(choice_keys)))
    if kind == "scale":
        low = draw(st.one_of(st.integers(-1, 1), st.integers(-100, 100)))
        return Question("q", kind, "?", scale_min=low, scale_max=low + draw(st.integers(1, 100)))
    return Question("q", kind, "?")


def json_values(question: Question) -> st.SearchStrategy[object]:
    """Anything JSON can carry, with values near the valid ones (blank text, text at the
    length limit, the question's keys, repeated or not, the numbers around its scale,
    True and False included) as often as wild ones."""
    keys = [choice.key for choice in question.choices]
    at_the_limit = st.integers(MAX_TEXT_CHARS - 2, MAX_TEXT_CHARS + 2).map(lambda length: "x" * length)
    near = [st.text(" \t\n\u00a0\u2003x", max_size=5), at_the_limit]
    if keys:
        near += [st.sampled_from(keys), st.lists(st.sampled_from(keys), max_size=len(keys) + 1)]
    if question.kind == "scale":
        near += [st.integers(question.scale_min - 2, question.scale_max + 2), st.booleans(), st.floats(-2, 2)]
    wild = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(any_character, max_size=50)),
        _arrays_and_objects_of,
        max_leaves=10,
    )
    return st.one_of(*near, wild)


def _arrays_and_objects_of(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=3)


@fuzzing
@given(st.data())
def test_any_json_value_is_either_a_valid_answer_or_refused_with_a_code(data):
    question = data.draw(a_question())
    keys = [choice.key for choice in question.choices]
    value = data.draw(json_values(question))
    try:
        answer = validate_answer(question, value)
    except RuleViolation as refused:
        assert refused.code in _RULE_CODES
        return
    assert isinstance(answer, Answer)
    assert sum((answer.text is not None, bool(answer.choices), answer.scale_value is not None)) == 1
    if question.kind in ("open_text", "idea"):
        assert answer.text == value and answer.text.strip() and len(answer.text) <= MAX_TEXT_CHARS
    elif question.kind == "scale":
        assert type(answer.scale_value) is int and question.scale_min <= answer.scale_value <= question.scale_max
    else:
        assert set(answer.choices) <= set(keys) and len(set(answer.choices)) == len(answer.choices)
        assert list(answer.choices) == sorted(answer.choices)
        assert question.kind == "multiple_choice" or len(answer.choices) == 1


@fuzzing
@given(st.data())
def test_every_valid_answer_is_accepted_as_sent(data):
    question = data.draw(a_question())
    if question.kind in ("open_text", "idea"):
        text = data.draw(st.text(any_character, min_size=1, max_size=MAX_TEXT_CHARS).filter(str.strip))
        assert validate_answer(question, text) == Answer(text=text)
    elif question.kind == "scale":
        point = data.draw(st.integers(question.scale_min, question.scale_max))
        assert validate_answer(question, point) == Answer(scale_value=point)
    elif question.kind == "single_choice":
        key = data.draw(st.sampled_from([c.key for c in question.choices]))
        assert validate_answer(question, key) == Answer(choices=(key,))
    else:
        keys = data.draw(st.lists(st.sampled_from([c.key for c in question.choices]), min_size=1, unique=True))
        assert validate_answer(question, keys) == Answer(choices=tuple(sorted(keys)))


@fuzzing
@given(free_text, st.sampled_from(["warn", "redact", "reject"]))
def test_the_policy_stores_the_text_flagged_redacted_or_nothing(text, policy):
    findings = screen(text)
    try:
        screened = apply_pii_policy(text, policy)
    except PersonalDataRejected as rejected:
        assert policy == "reject" and rejected.findings == findings and rejected.code == "personal_data"
        return
    assert list(screened.findings) == findings
    if not findings:
        assert (screened.stored_text, screened.action) == (text, "none")
    elif policy == "warn":
        assert (screened.stored_text, screened.action) == (text, "flagged")
    else:
        assert policy == "redact" and (screened.stored_text, screened.action) == (redact(text, findings), "redacted")


# --- opp codes ------------------------------------------------------------------------

a_code = st.text(CODE_ALPHABET, min_size=CODE_LENGTH, max_size=CODE_LENGTH)


@fuzzing
@given(a_code, st.lists(st.sampled_from(["", "", "-", " ", "  ", "--"]), min_size=CODE_LENGTH + 1,
                        max_size=CODE_LENGTH + 1), st.lists(st.booleans(), min_size=CODE_LENGTH, max_size=CODE_LENGTH))
def test_a_code_as_shown_or_retyped_in_any_case_and_spacing_normalises_to_itself(code, gaps, lower):
    assert normalise_code(display_code(code)) == code
    typed = gaps[0] + "".join(
        (ch.lower() if low else ch) + gap for ch, low, gap in zip(code, lower, gaps[1:], strict=True)
    )
    assert normalise_code(typed) == code


@fuzzing
@given(st.text(any_character, max_size=24) | st.text(CODE_ALPHABET.lower() + CODE_ALPHABET + "-  01OIL", max_size=24))
@example("K7MQ2X9R\u017fA")  # ſ upper-cases to S outside ASCII
@example("k7mq2x9r\ufb00")  # ﬀ upper-cases to FF
def test_any_text_is_either_refused_or_a_code_of_the_alphabet_typed_in_ascii(typed):
    code = normalise_code(typed)
    if code is None:
        return
    assert len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET)
    # Only ASCII letters and digits were read, upper-cased; only "-" and " " left out.
    assert typed.replace("-", "").replace(" ", "").upper() == code and typed.isascii()
    assert normalise_code(code) == code == normalise_code(display_code(code))

