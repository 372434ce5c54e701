"""An opp code on paper: a QR code of its enrolment link and an A4 poster to print.

The QR code is segno's; the poster is laid out with fpdf2. Both are made in memory
from the code, the link and the organisation's name: nothing about a participant.
The poster's words come in the console's three languages. fpdf2's built-in Helvetica
covers Latin-1 (Dutch and Danish letters included); a character outside it in an
organisation's name is written without its accent, or as "?" when it has no Latin-1
form, rather than failing the poster (a Unicode font would have to ship with the
project).
"""

from __future__ import annotations

import io
import unicodedata

import segno

WORDS = {
    "en": {"title": "Join our dialogue", "how": "Scan the QR code with your phone's camera, or open",
           "code": "and type the code", "anonymous": "You take part anonymously: we never ask your name."},
    "nl": {"title": "Doe mee met onze dialoog", "how": "Scan de QR-code met de camera van je telefoon, of open",
           "code": "en typ de code", "anonymous": "Je doet anoniem mee: we vragen nooit je naam."},
    "da": {"title": "Deltag i vores dialog", "how": "Scan QR-koden med din telefons kamera, eller åbn",
           "code": "og skriv koden", "anonymous": "Du deltager anonymt: vi spørger aldrig om dit navn."},
}


def enrolment_link(base_url: str, code: str) -> str:
    """The participant app with the code filled in (it enrols when the person agrees)."""
    return f"{base_url.rstrip('/')}/app/?code={code}"


def qr_svg(link: str) -> bytes:
    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="svg", scale=8, border=2, title="QR code")
    return out.getvalue()


def _latin1(text: str) -> str:
    if all(ord(c) < 256 for c in text):
        return text
    stripped = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return stripped.encode("latin-1", "replace").decode("latin-1")


def poster_pdf(organisation: str, code_display: str, link: str, language: str = "en") -> bytes:
    # Imported here: fpdf2 takes a second to import, which every gateway process would
    # pay at start for the rare poster.
    from fpdf import FPDF

    words = WORDS.get(language, WORDS["en"])
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"{organisation}: {code_display}"))
    pdf.set_creator("Tessera")
    pdf.add_page()
    pdf.set_auto_page_break(False)
    width = pdf.w - 2 * pdf.l_margin
    pdf.set_font("Helvetica", "B", 30)
    pdf.set_y(28)
    pdf.multi_cell(width, 13, _latin1(words["title"]), align="C")
    pdf.set_font("Helvetica", "", 18)
    pdf.multi_cell(width, 9, _latin1(organisation), align="C")
    png = io.BytesIO()
    segno.make(link, error="m").save(png, kind="png", scale=12, border=2)
    png.seek(0)
    size = 110
    pdf.image(png, x=(pdf.w - size) / 2, y=pdf.get_y() + 10, w=size, h=size)
    pdf.set_y(pdf.get_y() + size + 20)
    pdf.set_font("Helvetica", "", 14)
    pdf.multi_cell(width, 7, _latin1(words["how"]), align="C")
    pdf.set_font("Courier", "", 13)
    pdf.multi_cell(width, 7, _latin1(link), align="C")
    pdf.set_font("Helvetica", "", 14)
    pdf.multi_cell(width, 7, _latin1(words["code"]), align="C")
    pdf.set_font("Courier", "B", 40)
    pdf.multi_cell(width, 20, code_display, align="C")
    pdf.set_font("Helvetica", "I", 12)
    pdf.set_y(pdf.h - 30)
    pdf.multi_cell(width, 6, _latin1(words["anonymous"]), align="C")
    return bytes(pdf.output())
