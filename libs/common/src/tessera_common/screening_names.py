"""Names of people in free text: the ``person_name`` kind of :mod:`tessera_common.screening`.

What people type most is other people: "mijn buurman Henk Jansen", "Fru Hansen fra
kommunen", "my manager, Tom Baker". A capitalised word is weak evidence on its own (every
sentence starts with one; places, streets, schools and shops are capitalised too), so a
name is reported only with one of three kinds of evidence:

1. **An introducing word** before it: kinship, neighbours, colleagues, roles and forms of
   address in Dutch, Danish and English (``buurman``, ``collega``, ``mevrouw``, ``nabo``,
   ``søn``, ``fru``, ``hr.``, ``manager``, ``Dr.``, ``my name is``...), optionally with a
   comma ("Onze teamleider, Marieke,"). Then any capitalised word is taken, with Dutch
   infixes and their capitalised forms (``Pieter van den Berg``, ``Van Dijk``,
   ``El Amrani``).
2. **A known given name followed by a surname**: a capitalised word after a name from
   the committed lists (``screening_data/``, curated from public name statistics, see
   its ``NAMES_SOURCES.md``), infixes allowed (``Sophie de Vries``).
3. **A known given name alone** in mid-sentence ("sender næsten altid Birgitte"), unless
   it starts a sentence, follows another capitalised word (part of a longer proper name),
   follows a number ("3 Jan"), follows a saint's or royal title ("Sankt Hans", "King
   Edward"), or is one of the names that are also common words or places
   (``_AMBIGUOUS_NAMES``).

Never a name, whatever the evidence: a run with a word that ends like a street, a
school or a church (``Jan van Goyenstraat``, ``Pieter Calandlaan``, ``Sint-Janschool``),
or followed by a street or institution word or a house number (``Jens Baggesens Vej``,
``Anne Frank Huis``, ``Johan de Witt College``, ``Niels Bohr Institutet``); a run that
holds a month, weekday, pronoun, role word or country (``Hr. Borgmester``, ``Dear Mr.
Mayor``); a handful of shops and breeds named after people (``Albert Heijn``,
``Jack Russell``).
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_LANGUAGES = ("nl", "da", "en")


@cache
def given_names() -> frozenset[str]:
    """The committed given-name lists, read once on first use (not at import)."""
    names: set[str] = set()
    for language in _LANGUAGES:
        data = files("tessera_common").joinpath("screening_data", f"given_names_{language}.txt")
        names.update(
            line.strip() for line in data.read_text(encoding="utf-8").splitlines() if line.strip()[:1] not in ("", "#")
        )
    return frozenset(names - _AMBIGUOUS_NAMES)


# In the lists, but also a word, a brand or a place when capitalised: only taken after
# an introducing word ("my daughter Amber"), never alone or as the start of a full name.
_AMBIGUOUS_NAMES = frozenset(
    {
        *("Amber", "Ruby", "Daisy", "Poppy", "Lily", "Jade", "Ray", "Rob", "Sue", "Bob", "Dick", "Max", "Job"),
        *("Ben", "Jack", "Harvey", "Frank", "Charlotte", "Louise", "Eugene", "Lawrence", "Lynn", "Kai", "Wil", "Floor"),
        *("Line", "Lone", "Else", "Lykke", "Thor", "Fleur", "Iris", "Luna", "Lieve", "Jet", "Ties", "Gry", "Mai"),
        *("Mona", "Otto", "Dan", "Roy", "Lee", "Nel", "Ole", "Tage"),
    }
)

# Words that introduce a person, lower case; matched whatever their case, before a
# capitalised word, with an optional "." and ",".
_INTRODUCERS = frozenset(
    {
        # Dutch
        *("buurman", "buurvrouw", "buurjongen", "buurmeisje", "collega", "man", "vrouw", "echtgenoot", "echtgenote"),
        *("partner", "vriend", "vriendin", "zoon", "dochter", "zus", "zuster", "broer", "vader", "moeder", "opa"),
        *("oma", "oom", "tante", "neef", "nicht", "schoonzoon", "schoondochter", "schoonmoeder", "schoonvader"),
        *("zwager", "schoonzus", "kleinzoon", "kleindochter", "stiefvader", "stiefmoeder", "mevrouw", "meneer"),
        *("mevr", "mw", "dhr", "heer", "juf", "juffrouw", "meester", "dokter", "huisarts", "wijkagent"),
        *("verpleegkundige", "wijkverpleegkundige", "mantelzorger", "begeleider", "begeleidster", "docent"),
        *("leraar", "lerares", "mentor", "teamleider", "leidinggevende", "baas", "directeur", "wethouder"),
        *("raadslid", "consulent", "klantmanager", "casemanager", "huisbaas", "verhuurder", "conciërge"),
        *("pastoor", "dominee", "heet"),
        # Danish
        *("nabo", "naboen", "genbo", "kollega", "kollegaen", "mand", "kone", "hustru", "kæreste", "søn", "sønnen"),
        *("datter", "datteren", "bror", "broren", "søster", "søsteren", "far", "faren", "mor", "moren", "farfar"),
        *("farmor", "morfar", "mormor", "onkel", "fætter", "kusine", "nevø", "niece", "svigermor", "svigerfar"),
        *("svigersøn", "svigerdatter", "svoger", "svigerinde", "barnebarn", "ven", "veninde", "fru", "frk", "hr"),
        *("herr", "læge", "lægen", "doktor", "sygeplejerske", "sygeplejersken", "hjemmehjælper", "hjemmehjælperen"),
        *("sagsbehandler", "sagsbehandleren", "pædagog", "pædagogen", "lærer", "læreren", "lærerinde", "leder"),
        *("lederen", "chef", "chefen", "formand", "formanden", "borgmester", "rådmand", "vicevært", "viceværten"),
        *("præst", "præsten", "hedder"),
        # English
        *("neighbour", "neighbor", "colleague", "coworker", "co-worker", "husband", "wife", "boyfriend"),
        *("girlfriend", "friend", "son", "daughter", "brother", "sister", "father", "mother", "dad", "mum", "mom"),
        *("grandson", "granddaughter", "grandmother", "grandfather", "grandma", "grandad", "granddad", "nan"),
        *("uncle", "aunt", "auntie", "nephew", "niece", "cousin", "stepson", "stepdaughter", "stepfather"),
        *("stepmother", "son-in-law", "daughter-in-law", "mother-in-law", "father-in-law", "mr", "mrs", "ms"),
        *("miss", "mx", "dr", "prof", "professor", "nurse", "doctor", "councillor", "councilor", "cllr", "officer"),
        *("constable", "sergeant", "inspector", "manager", "boss", "supervisor", "landlord", "landlady", "carer"),
        *("caregiver", "teacher", "headteacher", "coach", "caseworker", "lead"),
    }
)
# Introductions of two words: "my name is", "mijn naam is", "mit navn er".
_TWO_WORD_INTRODUCERS = frozenset({("name", "is"), ("naam", "is"), ("navn", "er"), ("called", "me")})

# Lower case and capitalised infixes of Dutch, Flemish, Danish and other surnames.
_INFIXES = frozenset(
    {"van", "de", "der", "den", "ter", "ten", "te", "het", "'t", "op", "von", "da", "di", "du", "le", "la", "el", "al"}
)

# Capitalised words that are never (part of) a person's name.
_NOT_A_NAME = frozenset(
    {
        *("The", "This", "That", "These", "Those", "He", "She", "We", "They", "It", "His", "Her", "My", "Our", "Your"),
        *("De", "Het", "Een", "Dit", "Dat", "Die", "Deze", "Ik", "Hij", "Zij", "Wij", "Mijn", "Onze", "Ons", "Hun"),
        *("Den", "Det", "Der", "En", "Et", "Jeg", "Han", "Hun", "Vi", "Min", "Mit", "Mine", "Vores", "Deres"),
        *("And", "Or", "But", "En", "Og", "Men", "Of", "In", "On", "At", "For", "With", "From", "To"),
        *("January", "February", "March", "April", "May", "June", "July", "August", "September", "October"),
        *("November", "December", "Januari", "Februari", "Maart", "Mei", "Juni", "Juli", "Augustus", "Oktober"),
        *("Januar", "Februar", "Marts", "Maj", "Juni", "Juli", "August", "Monday", "Tuesday", "Wednesday"),
        *("Thursday", "Friday", "Saturday", "Sunday", "Maandag", "Dinsdag", "Woensdag", "Donderdag", "Vrijdag"),
        *("Zaterdag", "Zondag", "Mandag", "Tirsdag", "Onsdag", "Torsdag", "Fredag", "Lørdag", "Søndag"),
        *("Mayor", "Burgemeester", "Borgmester", "Wethouder", "Councillor", "Council", "Gemeente", "Kommune"),
        *("Kommunen", "Manager", "Director", "Directeur", "Chairman", "Formand", "Minister", "Doctor", "Dokter"),
        *("Sir", "Madam", "Madame", "Mevrouw", "Meneer", "Heer", "Herr", "Fru", "Hr", "Mr", "Mrs", "Ms", "Dr"),
        *("Dutch", "Danish", "English", "British", "Belgian", "German", "Nederlands", "Nederlandse", "Engels"),
        *("Dansk", "Danske", "Engelsk", "Netherlands", "Nederland", "Holland", "Belgium", "België", "Danmark"),
        *("Denmark", "Germany", "Duitsland", "Tyskland", "England", "Frankrijk", "France", "Sverige", "Sweden"),
        *("Facebook", "Instagram", "Twitter", "LinkedIn", "WhatsApp", "Google", "Messenger", "Snapchat", "TikTok"),
        *("Help", "Hello", "Hallo", "Hej", "Hi", "Dear", "Beste", "Kære", "Geachte", "Thanks", "Bedankt", "Tak"),
    }
)

# Words after a name that make it the name of a street, a building or an institution.
_PLACE_WORDS = frozenset(
    {
        *("Street", "St", "Road", "Rd", "Avenue", "Lane", "Drive", "Close", "Way", "Place", "Square", "Crescent"),
        *("Terrace", "Gardens", "Court", "Grove", "Row", "Walk", "Bridge", "Park", "Station", "Airport"),
        *("Hospital", "School", "College", "Academy", "University", "Museum", "Church", "Chapel", "Centre"),
        *("Center", "Stadium", "Arena", "Library", "Hotel", "Theatre", "Theater", "Institute", "Foundation"),
        *("Trust", "Ltd", "Limited", "Inc", "Plc", "LLP", "Group", "Company", "Shop", "Store", "Café", "Cafe"),
        *("Vej", "Gade", "Allé", "Alle", "Boulevard", "Plads", "Torv", "Stræde", "Skole", "Skolen", "Gymnasium"),
        *("Museet", "Kirke", "Kirken", "Hospital", "Hospitalet", "Sygehus", "Station", "Stationen", "Institutet"),
        *("Instituttet", "Centret", "Centeret", "Huset", "Hus", "Park", "Parken", "Bro", "Broen", "ApS", "A/S"),
        *("Straat", "Laan", "Weg", "Plein", "Markt", "Kade", "Gracht", "Singel", "Huis", "Museum", "Kerk"),
        *("Ziekenhuis", "Stichting", "Lyceum", "Gymnasium", "Basisschool", "Brug", "Stadion", "Bibliotheek"),
        *("Theater", "Schouwburg", "Kliniek", "Apotheek", "Prijs", "Award", "Fonds", "Fund", "BV", "B.V", "NV"),
    }
)
# Endings of the last word that make a name a street, a school or a building.
_PLACE_ENDINGS = (
    "straat", "laan", "weg", "plein", "gracht", "kade", "singel", "dreef", "steeg", "markt", "park", "school",
    "college", "kerk", "gade", "vej", "vejen", "allé", "plads", "torv", "stræde", "skole", "skolen", "kirke",
    "street", "road", "avenue", "lane", "bridge", "museum", "museet", "ziekenhuis", "kliniek", "centrum", "sygehus",
    "hospital", "hospitalet",
)  # fmt: skip
# Titles after which a known name is a saint, a monarch or a place, not a person here.
_TITLES_OF_THE_DEAD_OR_FAMOUS = frozenset(
    {"sankt", "skt", "sint", "st", "saint", "san", "santa", "king", "queen", "koning", "koningin", "kong",
     "dronning", "prins", "prinses", "prince", "princess", "lake", "mount", "fort", "port", "cape", "hotel",
     "villa", "huize", "café", "restaurant", "camping"}
)  # fmt: skip
# Shops, brands and breeds named after people.
_EPONYMS = frozenset(
    {
        ("Albert", "Heijn"), ("Jan", "Linders"), ("Dirk", "van", "den", "Broek"), ("Jack", "Russell"),
        ("Jack", "Daniel's"), ("Tommy", "Hilfiger"), ("Calvin", "Klein"), ("Ralph", "Lauren"), ("Hugo", "Boss"),
        ("Peter", "Pan"), ("Anne", "Frank"),
    }
)  # fmt: skip

# Words (letters, inner apostrophes and hyphens: O'Connor, Anne-Marie, collega's),
# numbers, and single punctuation marks.
_TOKEN = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|\d+|[^\w\s]")
_SENTENCE_END = frozenset(".!?:;\"“”(—–-•*")


def person_names(text: str) -> list[tuple[int, int]]:
    """Character spans of people's names in ``text``, by the evidence described above."""
    tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    known = given_names()
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(tokens):
        word = tokens[i][0]
        if word.lower() in _INTRODUCERS or not (_capitalised(word) or word.lower() in _INFIXES):
            i += 1
            continue
        run_end = _name_run(tokens, i, text)
        if run_end == i:
            i += 1
            continue
        run = [t[0] for t in tokens[i:run_end]]
        names_in_run = [w for w in run if _capitalised(w) and w.lower() not in _INFIXES]
        if _is_place_or_brand(tokens, run_end, run, text):
            # Nor is any part of it a person ("Russell" of "Jack Russell terriers").
            i = run_end
            continue
        if _is_introduced(tokens, i):
            accepted = True
        elif run[0] in known and len(names_in_run) >= 2:
            accepted = not _after_title(tokens, i)
        elif len(run) == 1 and run[0] in known:
            accepted = _alone_is_a_name(tokens, i, text)
        else:
            accepted = False
        if accepted:
            spans.append((tokens[i][1], tokens[run_end - 1][2]))
            i = run_end
        else:
            # "Yesterday Tom Baker": the name may start inside a rejected run.
            i += 1
    return spans


def _capitalised(word: str) -> bool:
    return word[:1].isupper() and any(c.islower() for c in word) and word not in _NOT_A_NAME


def _name_run(tokens: list[tuple[str, int, int]], start: int, text: str) -> int:
    """The end (exclusive) of a run of capitalised words and infixes from ``start``,
    separated by single spaces, ending on a capitalised word; at most five words."""
    last_name = start - 1
    position = start
    while position < len(tokens) and position - start < 5:
        word, begin, _ = tokens[position]
        if position > start and text[tokens[position - 1][2] : begin] != " ":
            break
        if position > start and word.lower() in _INTRODUCERS:
            break
        if _capitalised(word) and word.lower() not in _INFIXES:
            last_name = position
        elif word.lower() not in _INFIXES:
            break
        position += 1
    end = last_name + 1
    return end if end > start else start


def _is_introduced(tokens: list[tuple[str, int, int]], i: int) -> bool:
    """An introducing word before token ``i``: "buurman", "Dr.", "leder,", "my name is"."""
    j = i - 1
    while j >= 0 and tokens[j][0] in (".", ","):
        j -= 1
    if j < 0:
        return False
    if tokens[j][0].lower() in _INTRODUCERS:
        return True
    return j >= 1 and (tokens[j - 1][0].lower(), tokens[j][0].lower()) in _TWO_WORD_INTRODUCERS


def _after_title(tokens: list[tuple[str, int, int]], i: int) -> bool:
    j = i - 1
    while j >= 0 and tokens[j][0] == ".":
        j -= 1
    return j >= 0 and tokens[j][0].lower() in _TITLES_OF_THE_DEAD_OR_FAMOUS


def _is_place_or_brand(tokens: list[tuple[str, int, int]], end: int, run: list[str], text: str) -> bool:
    if any(word.lower().endswith(_PLACE_ENDINGS) and word.lower() not in _PLACE_ENDINGS for word in run[1:]):
        return True
    if any(word in _PLACE_WORDS for word in run[1:]) or tuple(run[:4]) in _EPONYMS or tuple(run[:2]) in _EPONYMS:
        return True
    if end < len(tokens):
        following, begin, _ = tokens[end]
        gap = text[tokens[end - 1][2] : begin]
        # A street, building or institution word, a genitive one ("Baggesens Vej"), or a
        # house number right after the name.
        if gap.strip() == "" and (following in _PLACE_WORDS or following.isdigit()):
            return True
        if gap.strip() == "" and following.lower().endswith(_PLACE_ENDINGS) and following[:1].isupper():
            return True
    return False


def _alone_is_a_name(tokens: list[tuple[str, int, int]], i: int, text: str) -> bool:
    """A known given name on its own counts only in mid-sentence, after a lower-case word
    or a comma, never after a number or a title."""
    if i == 0:
        return False
    before = text[: tokens[i][1]].rstrip()
    if not before or before[-1] in _SENTENCE_END:
        return False
    previous = tokens[i - 1][0]
    if previous.isdigit() or previous.lower() in _TITLES_OF_THE_DEAD_OR_FAMOUS:
        return False
    # After another capitalised word that is not the start of a sentence, the name is
    # part of a longer proper name ("Hotel Anna", "Kongens Nytorv").
    if previous[:1].isupper():
        before_previous = text[: tokens[i - 1][1]].rstrip()
        if before_previous and before_previous[-1] not in _SENTENCE_END:
            return False
    return True
