"""Personal-data screening of free text (DESIGN.md §1, "Dialogues").

Participants are warned not to type personal data; this module finds what they typed
anyway, so the tenant's policy can warn, redact or reject. It is pure: no I/O, no
logging, no state. :func:`screen` returns only kinds and character spans, never the
matched text, so a finding can be counted or logged without leaking what it points at.

Kinds, in precedence order (when two findings overlap, the earlier kind wins: a
checksummed identifier is stronger evidence than a shape; the one finding then spans
both, so no character either rule flagged is left out):

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
    An e-mail address, also obfuscated: ``info(at)example.nl``, ``sarah[at]example[dot]org``,
    ``lars.p snabel-a gmail punktum com``; with a plain " at " (``tom dot baker at outlook
    dot com``) only with a mail provider's domain, a dotted local part, or a word about
    mail just before, since "the petition at change dot org" is prose.
``social_handle``
    ``@name`` on its own (not in an address, not ``@ the hall`` or ``@5pm``), or a profile
    link on a social network (``instagram.com/...``, ``linkedin.com/in/...``), not a
    group, event or search page. Hashtags are not handles.
``ip_address``
    IPv4 (every part at most 255, not after a version word: ``versie 2.4.1.9``) or IPv6
    (validated by :mod:`ipaddress`, at least three groups).
``date_of_birth``
    A full date with a year (``14 maart 1962``, ``4. juni 1958``, ``12/07/1992``,
    ``1964-11-30``, ``March 3, 1985``) that is real and past, within a few words after a
    birth word (``geboren``, ``geb.``, ``geboortedatum``, ``født``, ``fødselsdato``,
    ``born``, ``date of birth``, ``DOB``) or just before ``geboren``/``født``/``born``;
    after ``birthday``/``verjaardag``/``fødselsdag`` only when the year is ten or more
    years ago (a recent one is a party). A year alone ("born in 1947") is not a date.
``phone``
    A number that phonenumbers (leniency VALID) accepts for the Netherlands, Belgium or
    Denmark, or in international form (+.. / 00..) for any country. Danish numbers are
    any valid 8 digits, so dates and year ranges (``21-10-2012``, ``2019-2023``) that
    phonenumbers would otherwise accept are dropped.
``licence_plate``
    Dutch sidecodes 1-14 (``GX-84-LN``, ``12-ABC-3``, ``VZ-123-B``), Belgian ``1-ABC-234``,
    UK ``AB12 CDE`` and Danish ``AB 12 345`` anywhere; the compact Danish ``XY12345``,
    the old Belgian ``ABC-123`` and a compact UK plate only after a word for a plate
    (``kenteken``, ``nummerplade``, ``registreringsnummer``, ``plate``...). Upper case only.
``street_address``
    A street name with a house number: Dutch, Flemish and Danish compounds
    (``Kerkstraat 12``, ``Nørregade 7``, ``Vesterbrogade 3, 2. tv``), separate street
    words (``Frederiksberg Allé 14``, ``Grote Markt 7``), street word first
    (``Laan van Meerdervoort 100``, ``Steenweg op Gent 12``), French-Belgian
    (``Rue de la Loi 16``) and English (``221B Baker Street``); the number first
    (``nummer 14 aan de Beukenlaan``, ``number 8 on Mill Lane``), a bare street word
    after "op/aan/på/on/at" (``på Torvet 1``), lower-case English street words after
    "at/on/in" (``at 12 high street``) and ``rue de la loi 16``.
``postcode``
    A Dutch postcode (``1234 AB``, ``1234AB``; validated by python-stdnum), or a
    Danish/Belgian four-digit postcode followed by a capitalised place name
    (``2100 København Ø``, ``1000 Brussel``). A bare four-digit number is never a
    postcode: it is far more often a count, a price or a year.
``person_name``
    A person's name, the participant's or anyone else's, found by
    :mod:`tessera_common.screening_names` (whose docstring has the rules): after an
    introducing word (``buurman``, ``mevrouw``, ``nabo``, ``søn``, ``fru``, ``manager``,
    ``Dr.``...), a known given name with a surname (``Sophie de Vries``), or a known given
    name alone in mid-sentence; never a street, school, church, shop or institution
    named after a person. Last in precedence: "Pieter Calandlaan 12" is an address.

Precision over recall for shapes, recall over precision for checksums: a checksummed
identifier is flagged wherever it appears (a false alarm costs the participant a
warning), while shape-only kinds (addresses, Danish postcodes, unhyphenated CPR) demand
extra evidence, because a warning on "we need 12 more benches" teaches people to ignore
warnings. Known misses:

- a name with no introducing word whose given name is not in the lists, is ambiguous
  (``Bill Gates``, ``Rosa Parks``, ``May``, ``Mark``), starts a sentence on its own
  (``Jan komt morgen``) or is typed in lower case (``mijn buurman henk``); a name only in
  a genitive (``Daan's fiets``);
- a birth year without a full date (``born in 1947``), a birthday without a year;
- lower-case or foreign plates (``12-abc-3``, German ``B-AB 123``);
- an e-mail obfuscated with a plain " at " and no other sign (``jan at example dot nl``
  is found only after a word like "mail");
- a bare street word without "op/aan/på/on/at" before it (``Torvet 1 er larmende``),
  a lower-case English street with the number first but no "at/on/in" before it;
- a Danish/Belgian postcode after "in/since/i/fra..." when the number is also a
  plausible year (``i 2000 Frederiksberg``), or before a lower-case place name;
- a national-form (not +..) phone number of another country (a UK ``(020) 7946 0440``).

Known false alarms: a four-digit number before a capitalised word that is not a place
(``1500 Utrechters``); a famous or fictional person's name used for a thing (``The
Harry Potter shop``); a private IP address (``192.168.0.1``) is reported like any other.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import phonenumbers
from phonenumbers import Leniency
from stdnum import iban
from stdnum.be import nn
from stdnum.dk import cpr
from stdnum.nl import bsn
from stdnum.nl import postcode as nl_postcode

from tessera_common.screening_names import person_names

KINDS: tuple[str, ...] = (
    "iban",
    "be_national_number",
    "nl_bsn",
    "dk_cpr",
    "email",
    "social_handle",
    "ip_address",
    "date_of_birth",
    "phone",
    "licence_plate",
    "street_address",
    "postcode",
    "person_name",
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
    return _merged(_candidates(text))


def _candidates(text: str) -> list[Finding]:
    """What each kind's rules find, overlaps and all."""
    return [
        *_ibans(text),
        *_be_national_numbers(text),
        *_nl_bsns(text),
        *_dk_cprs(text),
        *_emails(text),
        *_social_handles(text),
        *_ip_addresses(text),
        *_dates_of_birth(text),
        *_phones(text),
        *_licence_plates(text),
        *_street_addresses(text),
        *_postcodes(text),
        *(Finding("person_name", start, end) for start, end in person_names(text)),
    ]


def redact(text: str, findings: list[Finding]) -> str:
    """``text`` with each finding replaced by ``[<kind>]``.

    Accepts findings in any order, even overlapping ones (not only :func:`screen`'s):
    overlapping spans are merged into one marker named after the highest-precedence
    kind among them, so no character of either span survives. Adjacent spans keep a
    marker each."""
    parts: list[str] = []
    position = 0
    for finding in _merged(findings):
        parts.append(text[position : finding.start])
        parts.append(f"[{finding.kind}]")
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


def _merged(findings: list[Finding]) -> list[Finding]:
    """One finding per run of overlapping ones, spanning them all, named after the
    highest-precedence kind among them (a valid BSN that phonenumbers also reads as a
    phone number is a BSN), ordered by position.

    :func:`screen` merges rather than keeps the winner alone: a phone number whose first
    digits also read as an IP address ("2.0.1.000 00") would otherwise lose its tail to
    the IP address, and redaction would leave that tail in place."""
    merged: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (f.start, f.end)):
        if merged and finding.start < merged[-1].end:
            last = merged[-1]
            kind = min(last.kind, finding.kind, key=lambda k: _PRECEDENCE.get(k, len(KINDS)))
            merged[-1] = Finding(kind, last.start, max(last.end, finding.end))
        else:
            merged.append(finding)
    return merged


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
    return _checked("be_national_number", _BE_NATIONAL_NUMBER, text, nn.is_valid)


_NL_BSN = re.compile(_ALONE_BEFORE + r"(?:\d{9}|\d{4}\.\d{2}\.\d{3}|\d{3}([ .])\d{3}\1\d{3})" + _ALONE_AFTER)


def _nl_bsns(text: str) -> list[Finding]:
    return _checked("nl_bsn", _NL_BSN, text, bsn.is_valid)


def _checked(kind: str, pattern: re.Pattern[str], text: str, is_valid: Callable[[str], bool]) -> list[Finding]:
    """Matches of ``pattern`` that pass their check, overlapping ones included: a
    candidate does not hide one that starts inside it. In "100 111 222 333" the BSN is
    the last three groups, not the first three; in "255 000 005 009" both "255 000 005"
    and "000 005 009" pass the 11-proof, and :func:`screen` merges them into one."""
    findings = []
    position = 0
    while match := pattern.search(text, position):
        if is_valid(match.group()):
            findings.append(Finding(kind, match.start(), match.end()))
        position = match.start() + 1
    return findings


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


# Obfuscated: "info(at)example.nl", "sarah[at]example[dot]org", "tom dot baker at outlook
# dot com", "lars.p snabel-a gmail punktum com", "sanne punt bakker at gmail punt com".
_BRACKETED_AT = r"\s*[(\[{<]\s*(?:at|@|snabel-?a|apenstaartje)\s*[)\]}>]\s*"
_SPOKEN_AT = r"\s+(?:snabel-?a|apenstaartje)\s+"
_PLAIN_AT = r"\s+at\s+"
_SPOKEN_DOT = r"(?:\s*[(\[{<]\s*(?:dot|punt|punktum)\s*[)\]}>]\s*|\s+(?:dot|punt|punktum)\s+|\.)"
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LEVEL = r"(?:com|org|net|nl|dk|be|eu|uk|de|se|no|fr|info|io|me|edu|gov|biz)"
_OBFUSCATED_EMAIL = re.compile(
    rf"(?<![\w.@-])(?P<local>[\w+-]+(?:{_SPOKEN_DOT}[\w+-]+)*)"
    rf"(?P<at>{_BRACKETED_AT}|{_SPOKEN_AT}|{_PLAIN_AT})"
    rf"(?P<domain>{_DOMAIN_LABEL}(?:{_SPOKEN_DOT}{_DOMAIN_LABEL})*){_SPOKEN_DOT}{_TOP_LEVEL}(?![\w-])",
    re.IGNORECASE,
)
# A plain " at " is prose far more often ("sign the petition at change dot org"), so it
# needs more: a mail provider's domain, a local part with a dot in it, or a word about
# mail shortly before.
_MAIL_PROVIDERS = frozenset(
    {
        *("gmail", "googlemail", "hotmail", "outlook", "live", "msn", "yahoo", "icloud", "me", "aol", "gmx"),
        *("protonmail", "proton", "ziggo", "kpnmail", "kpn", "xs4all", "planet", "home", "hetnet", "telenet"),
        *("skynet", "proximus", "tdcadsl", "jubii", "ofir", "stofanet", "btinternet", "sky", "virginmedia"),
        *("talktalk", "mail"),
    }
)
_MAIL_CONTEXT = re.compile(
    r"(?:e-?mail|mail|contact|reach|bereiken|bereikbaar|skriv|write|inbox)\w*\W+(?:\w+\W+){0,3}$", re.IGNORECASE
)


def _emails(text: str) -> list[Finding]:
    findings = [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text)] if "@" in text else []
    lowered = text.lower()
    if not any(word in lowered for word in (" at", "(at", "[at", "{at", "<at", "snabel", "apenstaartje", "(@", "[@")):
        return findings
    for match in _OBFUSCATED_EMAIL.finditer(text):
        if match.group("at").strip() == "at" and not _plain_at_is_an_address(text, match):
            continue
        findings.append(Finding("email", match.start(), match.end()))
    return findings


def _plain_at_is_an_address(text: str, match: re.Match[str]) -> bool:
    first_label = re.split(r"\W", match.group("domain").lower(), maxsplit=1)[0]
    dotted_local = bool(re.search(_SPOKEN_DOT, match.group("local"), re.IGNORECASE))
    return first_label in _MAIL_PROVIDERS or dotted_local or bool(_MAIL_CONTEXT.search(text[: match.start()]))


# A handle on its own ("@sanne.fietst", "ik ben @henkjansen1960"), never inside an
# address or after a letter; not "@ the town hall", "@5pm" or a bare number.
_HANDLE = re.compile(r"(?<![\w@./])@(?=[\w.]*[A-Za-z])[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?(?![\w@-])")
_TIME = re.compile(r"@\d{1,2}(?:[:.]\d{2})?(?:am|pm|u|h)$", re.IGNORECASE)
# A profile link on a social network: "instagram.com/sarah.t.gardens",
# "linkedin.com/in/pieter-vandenberg-12345", "tiktok.com/@frejaogfar"; not a group, an
# event or a search page.
_PROFILE_LINK = re.compile(
    r"(?<![\w.])(?:https?://)?(?:www\.|m\.)?"
    r"(?:facebook\.com|fb\.com|instagram\.com|twitter\.com|x\.com|tiktok\.com|linkedin\.com/in|youtube\.com"
    r"|threads\.net|snapchat\.com/add|bsky\.app/profile|reddit\.com/u(?:ser)?|mastodon\.social)/"
    r"(?!(?:groups|events|pages|hashtag|watch|share|explore|search|p|reel|help|login|company|school)\b)"
    r"@?[A-Za-z0-9_.-]*[A-Za-z0-9_]",
    re.IGNORECASE,
)


def _social_handles(text: str) -> list[Finding]:
    findings = []
    if "@" in text:
        findings += [
            Finding("social_handle", m.start(), m.end()) for m in _HANDLE.finditer(text) if not _TIME.match(m.group())
        ]
    if "/" in text:
        findings += [Finding("social_handle", m.start(), m.end()) for m in _PROFILE_LINK.finditer(text)]
    return findings


# --- IP addresses, dates of birth and licence plates --------------------------------

# Four numbers of at most 255; not a version ("versie 2.4.1.9", "v1.2.3.4"), nor part
# of a longer dotted number.
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_VERSION_BEFORE = re.compile(
    r"\b(?:versie|version|versjon|ver|v|build|release|firmware|update|opdatering|ios|android|windows)\W{0,3}$",
    re.IGNORECASE,
)
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


def _ip_addresses(text: str) -> list[Finding]:
    findings = []
    for match in _IPV4.finditer(text):
        if not _VERSION_BEFORE.search(text[max(0, match.start() - 12) : match.start()]) and all(
            int(part) <= 255 for part in match.group().split(".")
        ):
            findings.append(Finding("ip_address", match.start(), match.end()))
    if "::" in text or text.count(":") >= 3:
        for match in _IPV6.finditer(text):
            groups = [group for group in match.group().split(":") if group]
            if len(groups) >= 3 and _is_ipv6(match.group()):
                findings.append(Finding("ip_address", match.start(), match.end()))
    return findings


def _is_ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


_MONTHS = {
    **dict.fromkeys(("januari", "januar", "january", "jan"), 1),
    **dict.fromkeys(("februari", "februar", "february", "feb"), 2),
    **dict.fromkeys(("maart", "marts", "march", "mrt", "mar"), 3),
    **dict.fromkeys(("april", "apr"), 4),
    **dict.fromkeys(("mei", "maj", "may"), 5),
    **dict.fromkeys(("juni", "june", "jun"), 6),
    **dict.fromkeys(("juli", "july", "jul"), 7),
    **dict.fromkeys(("augustus", "august", "aug"), 8),
    **dict.fromkeys(("september", "sept", "sep"), 9),
    **dict.fromkeys(("oktober", "october", "okt", "oct"), 10),
    **dict.fromkeys(("november", "nov"), 11),
    **dict.fromkeys(("december", "dec"), 12),
}
_MONTH_NAME = "|".join(sorted(_MONTHS, key=len, reverse=True))
# A full date with its year: 12-06-2015, 12.04.1936, 12/07/1992, 1979-08-23,
# 14 maart 1962, 4. juni 1958, 3rd of March 1985, March 3, 1985.
_DATE = re.compile(
    r"(?<![\w.,/-])(?:"
    r"(?P<d1>\d{1,2})(?P<sep>[-./])(?P<m1>\d{1,2})(?P=sep)(?P<y1>\d{4}|\d{2})"
    r"|(?P<y2>\d{4})-(?P<m2>\d{1,2})-(?P<d2>\d{1,2})"
    rf"|(?P<d3>\d{{1,2}})(?:\.|st|nd|rd|th)?\s+(?:of\s+)?(?P<n3>{_MONTH_NAME})\.?,?\s+(?P<y3>\d{{4}})"
    rf"|(?P<n4>{_MONTH_NAME})\.?\s+(?P<d4>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y4>\d{{4}})"
    r")(?![\w/-])(?!\.\d)",
    re.IGNORECASE,
)
# Words that make a date a birth date, shortly before it ("geboren op", "født den",
# "DOB:") or, in Dutch word order, just after it ("op 3 mei 1962 geboren").
_BIRTH_BEFORE = re.compile(
    r"(?:geboren|geb\.?|geboortedatum|born|birth|birthdate|dob|d\.o\.b\.?|født|fødselsdato|fødselsdag)"
    r"\W+(?:\w+\W+){0,2}$",
    re.IGNORECASE,
)
_BIRTH_AFTER = re.compile(r"^\W{0,3}(?:geboren|født|born)\b", re.IGNORECASE)
# A birthday with a year is a birth date when the year is long past; a recent one is a
# party ("birthday on 12 May 2024").
_BIRTHDAY_BEFORE = re.compile(r"(?:birthday|verjaardag|jarig|fødselsdag)\W+(?:\w+\W+){0,2}$", re.IGNORECASE)
_BIRTHDAY_YEARS_AGO = 10


def _dates_of_birth(text: str) -> list[Finding]:
    findings = []
    for match in _DATE.finditer(text):
        before = text[max(0, match.start() - 30) : match.start()]
        after = text[match.end() : match.end() + 12]
        born = _date_of(match)
        if born is None or not date(1900, 1, 1) <= born <= date.today():
            continue
        long_ago = born.year <= date.today().year - _BIRTHDAY_YEARS_AGO
        if _BIRTH_BEFORE.search(before) or _BIRTH_AFTER.search(after) or (long_ago and _BIRTHDAY_BEFORE.search(before)):
            findings.append(Finding("date_of_birth", match.start(), match.end()))
    return findings


def _date_of(match: re.Match[str]) -> date | None:
    groups = match.groupdict()
    day, month, year = next(
        (groups[f"d{n}"], groups.get(f"m{n}") or _MONTHS[groups[f"n{n}"].lower()], groups[f"y{n}"])
        for n in (1, 2, 3, 4)
        if groups[f"d{n}"]
    )
    full_year = int(year)
    if full_year < 100:
        full_year += 2000 if 2000 + full_year <= date.today().year else 1900
    try:
        return date(full_year, int(month), int(day))
    except ValueError:
        return None


# Dutch sidecodes 1-14 (XX-99-99 ... 999-XX-9), the Belgian 1-ABC-234 and the UK AB12 CDE
# anywhere; the Danish AB 12 345 written with its spaces anywhere, compact (XY12345)
# only after a word for a plate, like the older Belgian ABC-123.
_NL_SIDECODES = (
    "XX-99-99", "99-99-XX", "99-XX-99", "XX-99-XX", "XX-XX-99", "99-XX-XX", "99-XXX-9", "9-XXX-99", "XX-999-X",
    "X-999-XX", "XXX-99-X", "X-99-XXX", "9-XX-999", "999-XX-9",
)  # fmt: skip
_PLATE = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(code.replace("X", "[A-Z]").replace("9", "\\d") for code in _NL_SIDECODES)
    + r"|\d-[A-Z]{3}-\d{3}|[A-Z]{2}\d{2} [A-Z]{3}|[A-Z]{2} \d{2} \d{3}"
    + r")(?![\w-])"
)
_PLATE_WITH_CONTEXT = re.compile(r"(?<![\w-])(?:[A-Z]{2}\d{5}|[A-Z]{3}-\d{3}|\d{3}-[A-Z]{3}|[A-Z]{2}\d{2}[A-Z]{3})(?![\w-])")
_PLATE_CONTEXT = re.compile(
    r"(?:kenteken|nummerplaat|nummerbord|nummerplade|registreringsnummer|reg\.?\s?nr|plate|registration|plaque)"
    r"\w*\W+(?:\w+\W+){0,2}$",
    re.IGNORECASE,
)


def _licence_plates(text: str) -> list[Finding]:
    findings = [Finding("licence_plate", m.start(), m.end()) for m in _PLATE.finditer(text)]
    for match in _PLATE_WITH_CONTEXT.finditer(text):
        if _PLATE_CONTEXT.search(text[max(0, match.start() - 40) : match.start()]):
            findings.append(Finding("licence_plate", match.start(), match.end()))
    return findings


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


# The number first: "nummer 14 aan de Beukenlaan", "huisnummer 27 in de Molenstraat",
# "number 8 on Mill Lane", "nr. 3 på Bakkevej".
_STREET_NAME = (
    rf"(?:{_WORD_START}(?:'s-)?[{_UPPER}][{_LETTER}'-]*(?:{_STRONG_SUFFIXES}|{_WEAK_SUFFIXES})"
    rf"|{_WORD_START}[{_LETTER}][{_LETTER}'-]+(?:{_STRONG_SUFFIXES})"
    rf"|{_NAME_WORD}\s+(?:{_SEPARATE_STREET_WORDS}))\b"
)
_NUMBER_THEN_STREET = re.compile(
    rf"(?i:\b(?:huis)?nummer|\bnr\.?|\bnumber|\bno\.)\s*\d{{1,4}}[A-Za-z]?\s+"
    rf"(?i:aan|op|in|on|at|of|på|i|ved)\s+(?:(?i:de|het|the)\s+)?{_STREET_NAME}"
)
# A street that is one bare word, after a word for "on/at": "på Torvet 1", "op de Markt 3".
_BARE_STREET = re.compile(
    rf"\b(?:op|aan|på|ved|on|at) (?P<address>(?:(?:de|het|the) )?(?:Torvet|Markt|Brink|Dam|Havnen|Stortorvet)"
    rf"\s+{_HOUSE_NUMBER})"
)
# Lower-case street words: "at 12 high street", "rue de la loi 16".
_LOWER_CASE_STREET = re.compile(
    r"\b(?:at|on|in|to|from|is) (?P<address>\d{1,4}[a-z]?\s+(?:[a-z]+\s+){1,2}"
    r"(?:street|road|avenue|lane|crescent|terrace|grove|gardens)\b)"
    r"|\b(?P<french>rue\s+(?:de\s+la\s+|de\s+l'|du\s+|des\s+|de\s+|d')?[a-zà-ÿ]+(?:[\s-][a-zà-ÿ]+)?\s+\d{1,4}\b)"
)


def _street_addresses(text: str) -> list[Finding]:
    patterns = (
        _STREET_THEN_NUMBER, _STREET_WORD_FIRST, _FRENCH_STREET, _ENGLISH_STREET, _NUMBER_THEN_STREET, _BARE_STREET,
        _LOWER_CASE_STREET,
    )  # fmt: skip
    return [Finding("street_address", *_address_span(m)) for pattern in patterns for m in pattern.finditer(text)]


def _address_span(match: re.Match[str]) -> tuple[int, int]:
    """The address itself, without the "at"/"på" a pattern needed to find it."""
    groups = match.groupdict()
    return next((match.span(name) for name in ("address", "french") if groups.get(name)), match.span())


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
