import dataclasses
import json
from itertools import pairwise
from pathlib import Path

import phonenumbers
import pytest

from tessera_common.screening import KINDS, Finding, redact, screen

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "screening_sample.jsonl"


def spans(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in screen(text)]


# Identifiers from standards and library documentation, not from people.
@pytest.mark.parametrize(
    ("text", "kind", "found"),
    [
        ("Mail me op jan.de.vries@example.nl.", "email", "jan.de.vries@example.nl"),
        ("Bel me op 06-12345678 als het kan", "phone", "06-12345678"),
        ("Ring på 20 30 40 50 efter kl. 16", "phone", "20 30 40 50"),
        ("Bel 0470 12 34 56", "phone", "0470 12 34 56"),
        ("call +44 20 7946 0958 please", "phone", "+44 20 7946 0958"),
        ("Stort terug op NL91 ABNA 0417 1643 00 voor de huur", "iban", "NL91 ABNA 0417 1643 00"),
        ("IBAN: BE68539007547034", "iban", "BE68539007547034"),
        ("konto dk50 0040 0440 1162 43", "iban", "dk50 0040 0440 1162 43"),
        ("Mijn BSN is 111222333.", "nl_bsn", "111222333"),
        ("BSN 1234.56.782 graag", "nl_bsn", "1234.56.782"),
        ("BSN 123 456 782 graag", "nl_bsn", "123 456 782"),
        ("Mit CPR-nummer er 211062-5629.", "dk_cpr", "211062-5629"),
        ("mit cpr er 2110625629", "dk_cpr", "2110625629"),
        ("Rijksregisternummer 85.07.30-033.28!", "be_national_number", "85.07.30-033.28"),
        ("national number 85073003328", "be_national_number", "85073003328"),
        ("Ik woon aan de Kerkstraat 12 en de stoep is kapot", "street_address", "Kerkstraat 12"),
        ("Vesterbrogade 3, 2. tv har rotter", "street_address", "Vesterbrogade 3, 2. tv"),
        ("Het gaat om de Rue de la Loi 16 in Brussel", "street_address", "Rue de la Loi 16"),
        ("I live at 221B Baker Street, London", "street_address", "221B Baker Street"),
        ("Jeg bor på Nørregade 7.", "street_address", "Nørregade 7"),
        ("Laan van Meerdervoort 100 is druk", "street_address", "Laan van Meerdervoort 100"),
        ("Postcode 3521AB", "postcode", "3521AB"),
        ("Jeg bor i 2100 København Ø nu", "postcode", "2100 København Ø"),
        ("Kantoor in 1000 Brussel.", "postcode", "1000 Brussel"),
    ],
)
def test_each_kind_is_found_with_its_exact_span(text, kind, found):
    assert spans(text) == [(kind, found)]


@pytest.mark.parametrize(
    "text",
    [
        "Ordernummer 123456789",  # BSN shape, fails the 11-proof
        "Stort terug op NL92 ABNA 0417 1643 00",  # IBAN check digits off by one
        "Rijksregisternummer 85.07.30-033.29",  # national number, wrong check
        "Code 311162-5629",  # CPR shape, no 31 November
        "Klantnummer 2110625629",  # a date-like ten digits without a CPR context word
        "Op 21-10-2012 is de lamp kapotgegaan",  # a date phonenumbers reads as Danish
        "I perioden 2019-2023 skete der ingenting",  # a year range, likewise
        "We need 12 more benches, bus 1234 route, 35% agree, since 2019",
        "De Kerkstraat is te druk",  # a street without a number
        "De straat is 250 meter lang, de Kerkstraat 12 km verderop",  # a measure, not a house number
        "Meer dan 1000 mensen tekenden",  # a count before a lower-case word
        "Wij hebben in 2000 Antwerpen bezocht",  # a year before a place
        "Postcode 1234 SA bestaat niet",  # SA, SD and SS are not issued
        "Kosten: 1.250 euro, versie 2.3.1, om 19:30",
    ],
)
def test_numbers_that_only_look_like_personal_data_are_left_alone(text):
    assert screen(text) == []


def test_a_valid_bsn_that_is_also_a_belgian_phone_number_is_reported_once_as_a_bsn():
    text = "Mijn BSN is 014105718"
    assert [m.raw_string for m in phonenumbers.PhoneNumberMatcher(text, "BE")] == ["014105718"]

    assert spans(text) == [("nl_bsn", "014105718")]


def test_an_iban_is_not_also_reported_as_the_numbers_inside_it():
    assert [f.kind for f in screen("IBAN DK50 0040 0440 1162 43")] == ["iban"]


def test_an_iban_running_on_into_a_second_one_yields_both():
    text = "NL91ABNA0417164300 of BE68 5390 0754 7034"
    assert spans(text) == [("iban", "NL91ABNA0417164300"), ("iban", "BE68 5390 0754 7034")]


def test_findings_are_ordered_by_position_and_do_not_overlap():
    text = "Kerkstraat 12, 3521 AB Utrecht. Bel 06-12345678 of mail a@example.org"
    findings = screen(text)
    assert [f.kind for f in findings] == ["street_address", "postcode", "phone", "email"]
    assert all(a.end <= b.start for a, b in pairwise(findings))


def test_a_finding_carries_no_copy_of_the_text():
    finding = screen("mail jan@example.nl")[0]
    assert [field.name for field in dataclasses.fields(Finding)] == ["kind", "start", "end"]
    assert "jan" not in repr(finding)


def test_redaction_replaces_each_span_by_its_kind():
    text = "Bel 06-12345678 of mail jan@example.nl."
    assert redact(text, screen(text)) == "Bel [phone] of mail [email]."


def test_redaction_keeps_adjacent_spans_apart_and_accepts_any_order():
    text = "abcdef"
    findings = [Finding("phone", 3, 6), Finding("email", 0, 3)]
    assert redact(text, findings) == "[email][phone]"


def test_redaction_merges_overlapping_spans_under_the_more_specific_kind():
    text = "0123456789 rest"
    findings = [Finding("phone", 0, 8), Finding("nl_bsn", 2, 10)]
    assert redact(text, findings) == "[nl_bsn] rest"


def test_redaction_without_findings_returns_the_text():
    assert redact("niets te zien", []) == "niets te zien"


def _sample() -> list[dict]:
    with SAMPLE.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_the_labelled_sample_is_balanced_across_languages_and_kinds():
    rows = _sample()
    assert len(rows) >= 240
    for lang in ("nl", "da", "en"):
        assert len([r for r in rows if r["lang"] == lang]) >= 80
    with_data = [r for r in rows if r["kinds"]]
    assert 0.4 <= len(with_data) / len(rows) <= 0.6
    assert {kind for r in rows for kind in r["kinds"]} == set(KINDS)


def test_precision_and_recall_over_the_labelled_sample():
    """Per text, the set of kinds found against the set labelled, micro-averaged."""
    true_positives = false_positives = false_negatives = 0
    for row in _sample():
        predicted = {finding.kind for finding in screen(row["text"])}
        labelled = set(row["kinds"])
        true_positives += len(predicted & labelled)
        false_positives += len(predicted - labelled)
        false_negatives += len(labelled - predicted)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / (true_positives + false_negatives)
    assert precision >= 0.95, precision
    assert recall >= 0.90, recall
