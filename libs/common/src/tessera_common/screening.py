"""Personal-data screening of free text (DESIGN.md §1, "Dialogues").

Participants are warned not to type personal data; this module finds what they typed
anyway, so the tenant's policy can warn, redact or reject. It is pure: no I/O, no
logging, no state. :func:`screen` returns only kinds and character spans, never the
matched text, so a finding can be counted or logged without leaking what it points at.

Kinds, in precedence order (when two findings overlap, the earlier kind wins: a
checksummed identifier is stronger evidence than a shape):

``iban``
    An IBAN, compact or in groups of four; the mod-97 check and the country's length
    and structure are verified by python-stdnum, but not the national part
    (``check_country=False``): python-stdnum's Belgian check also wants the bank in its
    own list, which misses the standard example ``BE68 5390 0754 7034``.
``be_national_number``
    Belgian national number (rijksregisternummer), ``YY.MM.DD-XXX.CC`` or 11 digits;
    mod-97 check and birth date verified.
``nl_bsn``
    Dutch citizen service number, 9 digits, also ``1234.56.782`` or ``123 456 782``;
    the 11-proof is verified.
``dk_cpr``
    Danish CPR number, ``DDMMYY-SSSS``. CPR dropped its mod-11 check in 2007, so only
    the birth date (real, not in the future) can be verified, and any ten digits that
    start with a real date pass: a Dutch mobile number ``0612345678`` does. So the
    hyphenated form counts anywhere, the unhyphenated one only within 40 characters
    after a context word (``cpr``, ``personnummer``, ``person-nr``).
``email``
    An e-mail address.
``phone``
    A number that phonenumbers (leniency VALID) accepts for the Netherlands, Belgium or
    Denmark, or in international form (+.. / 00..) for any country. Danish numbers are
    any valid 8 digits, so dates and year ranges (``21-10-2012``, ``2019-2023``) that
    phonenumbers would otherwise accept are dropped.
``street_address``
    A street name with a house number: Dutch, Flemish and Danish compounds
    (``Kerkstraat 12``, ``Nørregade 7``, ``Vesterbrogade 3, 2. tv``), separate street
    words (``Frederiksberg Allé 14``, ``Grote Markt 7``), street word first
    (``Laan van Meerdervoort 100``, ``Steenweg op Gent 12``), French-Belgian
    (``Rue de la Loi 16``) and English (``221B Baker Street``).
``postcode``
    A Dutch postcode (``1234 AB``, ``1234AB``; validated by python-stdnum), or a
    Danish/Belgian four-digit postcode followed by a capitalised place name
    (``2100 København Ø``, ``1000 Brussel``). A bare four-digit number is never a
    postcode: it is far more often a count, a price or a year.

Precision over recall for shapes, recall over precision for checksums: a checksummed
identifier is flagged wherever it appears (a false alarm costs the participant a
warning), while shape-only kinds (addresses, Danish postcodes, unhyphenated CPR) demand
extra evidence, because a warning on "we need 12 more benches" teaches people to ignore
warnings. Known misses:

- an address with the number before the street (``nummer 14 aan de Beukenlaan``,
  ``number 8 on Mill Lane``), a bare street word (``Torvet 1``), lower-case French or
  English street words (``rue de la loi 16``, ``12 high street``);
- a Danish/Belgian postcode after "in/since/i/fra..." when the number is also a
  plausible year (``i 2000 Frederiksberg``), or before a lower-case place name;
- a national-form (not +..) phone number of another country (a UK ``(020) 7946 0440``);
- obfuscated e-mail (``jan at example dot nl``).

Known false alarms: a four-digit number before a capitalised word that is not a place
(``1500 Utrechters``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import Leniency
from stdnum import iban
from stdnum.be import nn
from stdnum.dk import cpr
from stdnum.nl import bsn
from stdnum.nl import postcode as nl_postcode

KINDS: tuple[str, ...] = (
    "iban",
    "be_national_number",
    "nl_bsn",
    "dk_cpr",
    "email",
    "phone",
    "street_address",
    "postcode",
)
_PRECEDENCE = {kind: rank for rank, kind in enumerate(KINDS)}


@dataclass(frozen=True, slots=True)
class Finding:
    """Where personal data of one kind sits in a text: ``text[start:end]``.

    Deliberately holds no copy of the text, so findings are safe to log and count."""

    kind: str
    start: int
    end: int


def screen(text: str) -> list[Finding]:
    """Every piece of personal data found in ``text``, ordered by position, without overlaps.

    Tens of microseconds for a typical answer; the cost grows with the number of digits
    (phonenumbers' matcher dominates, ~100 ms for 4,000 digit-dense characters), so
    callers cap the length of free text before screening it."""
    findings = [
        *_ibans(text),
        *_be_national_numbers(text),
        *_nl_bsns(text),
        *_dk_cprs(text),
        *_emails(text),
        *_phones(text),
        *_street_addresses(text),
        *_postcodes(text),
    ]
    return _without_overlaps(findings)


def redact(text: str, findings: list[Finding]) -> str:
    """``text`` with each finding replaced by ``[<kind>]``.

    Accepts findings in any order, even overlapping ones (not only :func:`screen`'s):
    overlapping spans are merged into one marker named after the highest-precedence
    kind among them, so no character of either span survives. Adjacent spans keep a
    marker each."""
    merged: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (f.start, f.end)):
        if merged and finding.start < merged[-1].end:
            last = merged[-1]
            kind = min(last.kind, finding.kind, key=lambda k: _PRECEDENCE.get(k, len(KINDS)))
            merged[-1] = Finding(kind, last.start, max(last.end, finding.end))
        else:
            merged.append(finding)
    parts: list[str] = []
    position = 0
    for finding in merged:
        parts.append(text[position : finding.start])
        parts.append(f"[{finding.kind}]")
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


def _without_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep the more specific kind where two findings overlap (a valid BSN that
    phonenumbers also reads as a phone number is a BSN); within a kind, the longer span."""
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (_PRECEDENCE[f.kind], f.start - f.end, f.start)):
        if all(finding.end <= other.start or other.end <= finding.start for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: (f.start, f.end))


# A number stands alone: not inside a word, an international prefix or a longer number
# such as 1.234.567,89 or 2024-0012345.
_ALONE_BEFORE = r"(?<![\w+])(?<!\d[.,/-])"
_ALONE_AFTER = r"(?!\w)(?![.,/-]\d)"

_UPPER = "A-ZÀ-ÖØ-Þ"
_LETTER = "A-Za-zÀ-ÖØ-öø-ÿ"


# --- checksummed identifiers ---------------------------------------------------------

# Two letters, two check digits, then 11-30 letters or digits, allowing one space
# between any two (groups of four). Greedy, so it may run into the next word; the
# longest prefix that validates is taken.
_IBAN_CANDIDATE = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}")


def _ibans(text: str) -> list[Finding]:
    findings = []
    position = 0
    while match := _IBAN_CANDIDATE.search(text, position):
        candidate = match.group()
        # Possible ends, longest first: after an alphanumeric run, where the candidate
        # continues with a space or stops.
        ends = [i for i in range(len(candidate), 14, -1) if i == len(candidate) or candidate[i] == " "]
        end = next((end for end in ends if iban.is_valid(candidate[:end], check_country=False)), None)
        if end is None:
            position = match.start() + 1
        else:
            # Search on after the IBAN, not after the candidate: it may have run on
            # into a second IBAN ("NL91... or BE68...").
            findings.append(Finding("iban", match.start(), match.start() + end))
            position = match.start() + end
    return findings


_BE_NATIONAL_NUMBER = re.compile(_ALONE_BEFORE + r"\d{2}([. ]?)\d{2}\1\d{2}[-. ]?\d{3}[. ]?\d{2}" + _ALONE_AFTER)


def _be_national_numbers(text: str) -> list[Finding]:
    return [
        Finding("be_national_number", m.start(), m.end())
        for m in _BE_NATIONAL_NUMBER.finditer(text)
        if nn.is_valid(m.group())
    ]


_NL_BSN = re.compile(_ALONE_BEFORE + r"(?:\d{9}|\d{4}\.\d{2}\.\d{3}|\d{3}([ .])\d{3}\1\d{3})" + _ALONE_AFTER)


def _nl_bsns(text: str) -> list[Finding]:
    return [Finding("nl_bsn", m.start(), m.end()) for m in _NL_BSN.finditer(text) if bsn.is_valid(m.group())]


_DK_CPR = re.compile(_ALONE_BEFORE + r"\d{6}(-?)\d{4}" + _ALONE_AFTER)
_DK_CPR_CONTEXT = re.compile(r"\b(?:cpr|personnummer|person-?nr)", re.IGNORECASE)
_CPR_CONTEXT_WINDOW = 40


def _dk_cprs(text: str) -> list[Finding]:
    findings = []
    for match in _DK_CPR.finditer(text):
        hyphenated = bool(match.group(1))
        before = text[max(0, match.start() - _CPR_CONTEXT_WINDOW) : match.start()]
        if (hyphenated or _DK_CPR_CONTEXT.search(before)) and cpr.is_valid(match.group()):
            findings.append(Finding("dk_cpr", match.start(), match.end()))
    return findings


# --- e-mail and phone ----------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")


def _emails(text: str) -> list[Finding]:
    if "@" not in text:
        return []
    return [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]


# Any region finds +.. numbers of every country, so these three cover "international".
_PHONE_REGIONS = ("NL", "BE", "DK")
# No valid number in these regions, nor any with a country code, has fewer digits;
# the check spares most texts the matcher, the costly part of screening.
_PHONE_MIN_DIGITS = 8
_DATE_OR_YEAR_RANGE = re.compile(r"\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|(?:19|20)\d{2}\s*[-–]\s*(?:19|20)\d{2}")


def _phones(text: str) -> list[Finding]:
    if sum(character.isdigit() for character in text) < _PHONE_MIN_DIGITS:
        return []
    spans = set()
    for region in _PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
            if not _DATE_OR_YEAR_RANGE.fullmatch(match.raw_string):
                spans.add((match.start, match.end))
    return [Finding("phone", start, end) for start, end in sorted(spans)]


# --- street addresses and postcodes -------------------------------------------------

# Street suffixes rarely found at the end of any other word; accepted in lower case
# too, since people type "kerkstraat 8".
_STRONG_SUFFIXES = (
    "straat|straatje|laan|gracht|steenweg|singel|kade|kaai|dijk|plein|dreef|lei"
    "|gade|gaden|vej|vejen|stræde|strædet|allé"
)
# Suffixes that also end ordinary words (snelweg, supermarkt, loopbaan, kerkhof):
# only in a capitalised name.
_WEAK_SUFFIXES = "weg|hof|pad|markt|baan|wal|steeg|torv|torvet|plads|pladsen|vænge|vænget|boulevard|park"
# Street words written apart from the name: "Frederiksberg Allé", "Grote Markt".
_SEPARATE_STREET_WORDS = "Allé|Alle|Boulevard|Torv|Plads|Vej|Gade|Markt|Plein|Laan|Straat|Street|Road|Avenue|Lane"
# A capitalised word, hyphenated parts included ("H.C.", "Queen's", "Sint-Jans"). Each
# hyphen can only belong to the word, never separate two: an ambiguous split makes the
# patterns below backtrack exponentially on "Ab-Ab-Ab-...".
_NAME_WORD = rf"[{_UPPER}][{_LETTER}.']*(?:-[{_LETTER}][{_LETTER}.']*)*"
_PARTICLES = r"(?:van|de|der|den|het|ter|ten|op|'t)"

# A house number: 12, 12a, 221B, 12-14, 12-II; not a measure, a time or a decimal.
_UNITS = (
    r"km|m|m2|meter|meters|metres?|keer|x|min|minuten|minutter|minutes|uur|timer|hours|"
    r"jaar|jaren|år|years|euro|euros|eur|kr|kroner|procent|gange|times|miles|mph|dB"
)
_HOUSE_NUMBER = (
    rf"\d{{1,4}}(?!\d)(?!\s?(?:{_UNITS})\b)(?!\s?%)(?![:.,]\d)"
    rf"(?:[A-Za-z](?![{_LETTER}])|-\d{{1,4}}|-[IV]{{1,3}}\b)?"
)
# Danish floor and side: "3, 2. tv", "5, st. tv.", "22, 1. sal"; Belgian box: "7 bus 3".
_FLOOR_OR_BOX = (
    r"(?:,?\s*(?:st|kl|\d{1,2})\.?\s*(?:th|tv|mf)\b\.?"
    r"|,?\s*\d{1,2}\.\s*sal\b"
    r"|\s+(?:bus|bte|boîte)\s*\d{1,4}[A-Za-z]?\b)?"
)
_NUMBER_WORD = r"(?:(?:nr|no|nummer)\.?\s*)?"

# Matches start only where a word starts, so a long hyphenated run is scanned once,
# not once per letter.
_WORD_START = rf"(?<![{_LETTER}'.-])"

_STREET_THEN_NUMBER = re.compile(
    rf"{_WORD_START}(?:{_NAME_WORD}\s+(?:{_PARTICLES}\s+)*)?"
    rf"(?:{_WORD_START}(?:'s-)?[{_UPPER}][{_LETTER}'-]*(?:{_STRONG_SUFFIXES}|{_WEAK_SUFFIXES})"
    rf"|{_WORD_START}[{_LETTER}][{_LETTER}'-]+(?:{_STRONG_SUFFIXES})"
    rf"|{_NAME_WORD}\s+(?:{_SEPARATE_STREET_WORDS}))\b"
    rf",?\s+{_NUMBER_WORD}{_HOUSE_NUMBER}{_FLOOR_OR_BOX}"
)
# Dutch and Flemish streets named street-word first: "Laan van Meerdervoort 100",
# "Steenweg op Gent 12", "Weg der Verenigde Naties 3".
_STREET_WORD_FIRST = re.compile(
    r"\b(?:Laan|Weg|Steenweg|Straatweg|Kade|Dijk|Plein|Singel|Dreef)"
    rf"\s+(?:van|der|de|den|op|tot|naar)(?:\s+(?:van|der|de|den|het))*"
    rf"\s+{_NAME_WORD}(?:\s+{_NAME_WORD})*,?\s+{_HOUSE_NUMBER}{_FLOOR_OR_BOX}"
)
_FRENCH_STREET = re.compile(
    r"\b(?:Rue|Avenue|Av\.|Boulevard|Bd|Chaussée|Place|Chemin|Quai|Square|Allée|Impasse|Drève)"
    rf"\s+(?:(?:de\s+la|de\s+l'|du|des|de|d')\s*)?{_NAME_WORD}(?:\s+{_NAME_WORD})*"
    rf",?\s+{_HOUSE_NUMBER}{_FLOOR_OR_BOX}"
)
_ENGLISH_STREET = re.compile(
    rf"(?<![\w.,])\d{{1,4}}[A-Za-z]?\s+(?:{_NAME_WORD}\s+){{1,3}}"
    r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Close|Way|Place|Square|Crescent|Terrace"
    r"|Gardens|Court|Grove|Row|Walk|Mews)\b\.?"
)


def _street_addresses(text: str) -> list[Finding]:
    return [
        Finding("street_address", m.start(), m.end())
        for pattern in (_STREET_THEN_NUMBER, _STREET_WORD_FIRST, _FRENCH_STREET, _ENGLISH_STREET)
        for m in pattern.finditer(text)
    ]


_NL_POSTCODE = re.compile(r"(?<![\w.,])[1-9]\d{3}(?: ?[A-Z]{2}|[a-z]{2})\b")
# Danish district letters follow the town: "København Ø", "Aarhus C", "København NV".
_FOUR_DIGIT_POSTCODE = re.compile(
    rf"(?<![\w.,])([1-9]\d{{3}})\s+([{_UPPER}][{_LETTER}'-]{{2,}})(?:\s[{_UPPER}]{{1,2}}\b)?"
)
# Capitalised words after a number that are not places.
_NOT_A_PLACE = frozenset(
    {
        *("The", "This", "That", "We", "They", "It", "He", "She", "My", "Our", "People"),
        *("De", "Het", "Een", "Ik", "Wij", "Hij", "Zij", "Mensen", "Personen"),
        *("Den", "Det", "Der", "En", "Et", "Jeg", "Vi"),
        *("Euro", "Euros", "EUR", "DKK", "Kroner", "Kr"),
    }
)
# "in 2000 Antwerpen bezocht": a year, not a postcode, when a year-ish word precedes it.
_YEAR_WORD_BEFORE = re.compile(
    r"\b(?:in|since|sinds|siden|i|fra|from|until|till|tot|before|after|voor|na|før|efter|"
    r"year|jaar|år|around|circa|ca|omkring|ongeveer|rond|by|tegen|inden|sedert)\s*$",
    re.IGNORECASE,
)


def _postcodes(text: str) -> list[Finding]:
    findings = [
        Finding("postcode", m.start(), m.end()) for m in _NL_POSTCODE.finditer(text) if nl_postcode.is_valid(m.group())
    ]
    for match in _FOUR_DIGIT_POSTCODE.finditer(text):
        number, place = int(match.group(1)), match.group(2)
        if place in _NOT_A_PLACE:
            continue
        before = text[max(0, match.start() - 20) : match.start()]
        if 1900 <= number <= 2099 and _YEAR_WORD_BEFORE.search(before):
            continue
        findings.append(Finding("postcode", match.start(), match.end()))
    return findings
