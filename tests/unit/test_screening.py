import dataclasses
import json
from itertools import pairwise
from pathlib import Path

import phonenumbers
import pytest

from tessera_common import screening_names
from tessera_common.screening import KINDS, Finding, redact, screen

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "screening_sample.jsonl"
# Names, birth dates, plates, IPs, handles, obfuscated e-mail: written before their rules.
PEOPLE_SAMPLE = SAMPLE.with_name("screening_sample_people.jsonl")


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


# Issue 17: what people type most is other people, and the identifiers around them.
@pytest.mark.parametrize(
    ("text", "kind", "found"),
    [
        ("Mijn buurman Henk Jansen zet zijn container op de stoep", "person_name", "Henk Jansen"),
        ("Mevrouw Bakker van de gemeente belde niet terug", "person_name", "Bakker"),
        ("Wethouder Van Dijk beloofde het", "person_name", "Van Dijk"),
        ("Collega Pieter van den Berg fietst ook", "person_name", "Pieter van den Berg"),
        ("Ik werk samen met Lotte Visser op de afdeling", "person_name", "Lotte Visser"),
        ("Min søn Oliver cykler til skole", "person_name", "Oliver"),
        ("Fru Hansen fra kommunen svarer ikke", "person_name", "Hansen"),
        ("Jeg har talt med hr. Mikkelsen om støjen", "person_name", "Mikkelsen"),
        ("Hjemmeplejen sender altid Birgitte, og hun er god", "person_name", "Birgitte"),
        ("My manager, Tom Baker, plans the shifts", "person_name", "Tom Baker"),
        ("Dr. O'Connor said so", "person_name", "O'Connor"),
        ("Yesterday Kate Morrison called back", "person_name", "Kate Morrison"),
        ("Ik ben geboren op 14 maart 1962 in Delft", "date_of_birth", "14 maart 1962"),
        ("Ik ben op 22-01-1971 geboren", "date_of_birth", "22-01-1971"),
        ("Min far er født 12.04.1936 og", "date_of_birth", "12.04.1936"),
        ("DOB: 12/07/1992, for my file", "date_of_birth", "12/07/1992"),
        ("My date of birth is 1964-11-30", "date_of_birth", "1964-11-30"),
        ("De auto met kenteken 12-ABC-3 staat er weer", "licence_plate", "12-ABC-3"),
        ("Die witte Golf, GX-84-LN, rijdt te hard", "licence_plate", "GX-84-LN"),
        ("Een Belgische wagen 1-ABC-234 parkeert daar", "licence_plate", "1-ABC-234"),
        ("Bilen AB 12 345 holder på cykelstien", "licence_plate", "AB 12 345"),
        ("Registreringsnummer XY12345 holder der", "licence_plate", "XY12345"),
        ("A van with registration AB12 CDE parks there", "licence_plate", "AB12 CDE"),
        ("Mijn IP-adres 84.105.22.17 wordt geblokkeerd", "ip_address", "84.105.22.17"),
        ("Login van 2001:db8:85a3::8a2e:370:7334 was niet van mij", "ip_address", "2001:db8:85a3::8a2e:370:7334"),
        ("Mijn Instagram is @sanne.fietst, kijk maar", "social_handle", "@sanne.fietst"),
        ("Zie linkedin.com/in/pieter-vandenberg-12345 voor meer", "social_handle", "linkedin.com/in/pieter-vandenberg-12345"),
        ("Mail naar j.devries(at)ziggo.nl graag", "email", "j.devries(at)ziggo.nl"),
        ("Email me at tom dot baker at outlook dot com.", "email", "tom dot baker at outlook dot com"),
        ("Min mail er lars.p snabel-a gmail punktum com.", "email", "lars.p snabel-a gmail punktum com"),
        ("mail: pietjanssen [at] hotmail [dot] com", "email", "pietjanssen [at] hotmail [dot] com"),
        ("Ik woon op nummer 14 aan de Beukenlaan", "street_address", "nummer 14 aan de Beukenlaan"),
        ("I live at number 8 on Mill Lane", "street_address", "number 8 on Mill Lane"),
        ("Jeg bor på Torvet 1, og markedet larmer", "street_address", "Torvet 1"),
        ("The flat at 12 high street is cold", "street_address", "12 high street"),
        ("Het kantoor aan de rue de la loi 16 is dicht", "street_address", "rue de la loi 16"),
    ],
)
def test_people_and_their_identifiers_are_found_with_their_exact_span(text, kind, found):
    assert spans(text) == [(kind, found)]


@pytest.mark.parametrize(
    "text",
    [
        # Names of places, streets, schools, shops and famous people's namesakes.
        "De Jan van Goyenstraat is slecht verlicht",
        "De Willem de Zwijgerlaan en de Pieter Calandlaan worden 30 km-zones",
        "Bij de Albert Heijn staan fietsen op de stoep",
        "Het Anne Frank Huis en het Johan de Witt College",
        "Het Sophia Kinderziekenhuis ligt vlakbij",
        "Jens Baggesens Vej har ingen fortov",
        "Karen Blixen Museet og Niels Bohr Institutet",
        "Sankt Hans aften er der bål",
        "King Edward VII School has no crossing",
        "Jack Russell terriers are not allowed",
        "Victoria Station and Grace Church are near",
        # Words that are also given names, role words without a name, sentence starts.
        "May is the best month. Will the council act? Mark my words.",
        "Per måned betaler vi 12.000 kr",
        "Meneer de burgemeester, doe er iets aan!",
        "Hr. Borgmester, hvorfor sker der ingenting?",
        "Dear Mr. Mayor, our manager at Tesco agrees",
        "Mijn collega's uit Amersfoort en mijn buurman en ik",
        # Dates that are not birth dates, versions, hashtags, "@" and "at" in prose.
        "Ik ben geboren en getogen in Utrecht",
        "Born and raised in Leeds; my dad was born in 1947",
        "Op 12 maart 2024 was de bewonersavond",
        "Her birthday party is on 12 May 2024",
        "De app versie 2.4.1.9 en Windows 10.0.19045.4291",
        "Use #cleanupday and meet @ the community centre @5pm",
        "Sign the petition at change dot org",
        "We need 12 more benches; COVID-19 and ISO-9001; the A12 and N201",
    ],
)
def test_names_and_shapes_that_are_not_personal_data_are_left_alone(text):
    assert screen(text) == []


def test_a_street_named_after_a_person_is_an_address_not_a_name():
    assert [f.kind for f in screen("Flat 3, 27 Albert Road has damp")] == ["street_address"]
    assert [f.kind for f in screen("Pieter Calandlaan 12 heeft een lekkage")] == ["street_address"]


def test_the_given_names_come_with_their_provenance_and_leave_out_ambiguous_words():
    data = Path(screening_names.__file__).with_name("screening_data")
    assert "public name statistics" in (data / "NAMES_SOURCES.md").read_text(encoding="utf-8")
    for language in ("nl", "da", "en"):
        header = (data / f"given_names_{language}.txt").read_text(encoding="utf-8").splitlines()[0]
        assert header.startswith("#") and "NAMES_SOURCES.md" in header
    names = screening_names.given_names()
    assert {"Henk", "Mette", "Oliver", "Sanne", "Tom"} <= names
    assert not names & {"Mark", "Will", "May", "Per", "Bo", "Frank", "Charlotte"}


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


def _sample(path: Path = SAMPLE) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_the_labelled_samples_are_balanced_across_languages_and_kinds():
    rows = _sample()
    assert len(rows) >= 240
    for lang in ("nl", "da", "en"):
        assert len([r for r in rows if r["lang"] == lang]) >= 80
    with_data = [r for r in rows if r["kinds"]]
    assert 0.4 <= len(with_data) / len(rows) <= 0.6
    people = _sample(PEOPLE_SAMPLE)
    assert len(people) >= 150
    for lang in ("nl", "da", "en"):
        assert len([r for r in people if r["lang"] == lang]) >= 50
    assert len([r for r in people if not r["kinds"]]) >= 60
    assert {kind for r in rows + people for kind in r["kinds"]} == set(KINDS)


def _micro_precision_recall(rows: list[dict]) -> tuple[float, float]:
    """Per text, the set of kinds found against the set labelled, micro-averaged."""
    true_positives = false_positives = false_negatives = 0
    for row in rows:
        predicted = {finding.kind for finding in screen(row["text"])}
        labelled = set(row["kinds"])
        true_positives += len(predicted & labelled)
        false_positives += len(predicted - labelled)
        false_negatives += len(labelled - predicted)
    return true_positives / (true_positives + false_positives), true_positives / (true_positives + false_negatives)


def test_precision_and_recall_over_the_labelled_sample():
    precision, recall = _micro_precision_recall(_sample())
    assert precision >= 0.95, precision
    assert recall >= 0.90, recall


def test_precision_recall_and_false_alarms_over_the_people_sample():
    """Measured 1.000 / 1.000 and no false alarm on 90 clean texts, but on this sample the
    rules were written knowing the texts; on 44 texts written after the rules, recall and
    precision were both 0.91 (README). The floors leave room for that, not for more."""
    rows = _sample(PEOPLE_SAMPLE)
    precision, recall = _micro_precision_recall(rows)
    assert precision >= 0.95, precision
    assert recall >= 0.93, recall
    named = [row for row in rows if "person_name" in row["kinds"]]
    found = [row for row in named if "person_name" in {f.kind for f in screen(row["text"])}]
    assert len(found) / len(named) >= 0.9, len(found) / len(named)
    alarms = [row["text"] for row in rows if not row["kinds"] and screen(row["text"])]
    assert len(alarms) <= 2, alarms
